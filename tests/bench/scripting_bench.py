"""EVALSHA of a one-line script against the command it wraps, kvd beside redis-server.

`EVALSHA <sha> 1 key` where the script is `return redis.call('GET', KEYS[1])`,
against a plain `GET key`, by redis-benchmark (50 clients, one request at a
time, then 16 per pipeline), fsync always on both servers. The figure that
matters is the cost of going through Lua: EVALSHA / GET on each server.
"""

from __future__ import annotations

import redis

from .server_bench import benchmark, ensure_tools, kvd_and_redis

SCRIPT = "return redis.call('GET', KEYS[1])"


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 20_000 if quick else 100_000
    results: dict = {}
    with kvd_and_redis() as (kvd, reference):
        print("\n== scripts: EVALSHA of redis.call('GET', KEYS[1]) vs GET, fsync always ==")
        print(f"{'server':<7} {'pipeline':>8} {'GET/s':>10} {'EVALSHA/s':>10} {'EVALSHA/GET':>12} "
              f"{'CPU us GET':>11} {'CPU us EVALSHA':>15}")
        for name, server in (("kvd", kvd), ("redis", reference)):
            client = redis.Redis(port=server.port)
            client.set("key", "x" * 100)
            sha = client.script_load(SCRIPT)
            client.close()
            for pipeline in (1, 16):
                common = ["-c", "50", "-P", str(pipeline)]
                get = benchmark(server.port, server.pid, [*common, "GET", "key"], requests)
                evalsha = benchmark(server.port, server.pid,
                                    [*common, "EVALSHA", sha, "1", "key"], requests)
                row = {"get": get, "evalsha": evalsha, "ratio": evalsha["rps"] / get["rps"]}
                results[f"{name} -P {pipeline}"] = row
                print(f"{name:<7} {pipeline:>8} {get['rps']:>10,.0f} {evalsha['rps']:>10,.0f} "
                      f"{row['ratio']:>12.2f} {get['cpu_us_per_request']:>11.1f} "
                      f"{evalsha['cpu_us_per_request']:>15.1f}")
    return results


def markdown(results: dict) -> str:
    lines = ["| server, pipeline | GET/s | EVALSHA/s | EVALSHA / GET | CPU µs per GET | "
             "CPU µs per EVALSHA |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['get']['rps']:,.0f} | {row['evalsha']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} | {row['get']['cpu_us_per_request']:.1f} | "
                     f"{row['evalsha']['cpu_us_per_request']:.1f} |")
    return "\n".join(lines) + "\n"
