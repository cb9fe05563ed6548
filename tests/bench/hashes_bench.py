"""Hashes, kvd beside redis-server in one run (kvd fsync always, Redis AOF always):
redis-benchmark's HSET into one hash of 100 fields, HGET and HGETALL of it, and HSET
creating many small hashes -- requests/s and server CPU per request."""

from __future__ import annotations

from .server_bench import benchmark, ensure_tools, kvd_and_redis

WORKLOADS = [
    ("HSET, 100-field hash", ["-c", "50", "-r", "100", "HSET", "myhash",
                              "element:__rand_int__", "value"]),
    ("HGET, 100-field hash", ["-c", "50", "-r", "100", "HGET", "myhash",
                              "element:__rand_int__"]),
    ("HGETALL, 100 fields", ["-c", "50", "HGETALL", "myhash"]),
    ("HSET, new small hashes", ["-c", "50", "-r", "100000", "HSET", "hash:__rand_int__",
                                "field", "value"]),
]


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 5_000 if quick else 50_000
    results: dict = {}
    with kvd_and_redis() as (kvd, reference):
        print("\n== hashes: kvd (fsync always) vs redis-server (appendfsync always), -c 50 ==")
        print(f"{'workload':<26} {'kvd req/s':>10} {'redis req/s':>11} {'kvd/redis':>9} "
              f"{'cpu us/req kvd/redis':>21}")
        for name, args in WORKLOADS:
            k = benchmark(kvd.port, kvd.pid, args, requests)
            r = benchmark(reference.port, reference.pid, args, requests)
            results[name] = {"kvd": k, "redis": r, "ratio": k["rps"] / r["rps"]}
            print(f"{name:<26} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {k['rps'] / r['rps']:>9.2f} "
                  f"{k['cpu_us_per_request']:>10.1f}/{r['cpu_us_per_request']:.1f}")
    return results


def markdown(results: dict) -> str:
    lines = ["| workload | kvd req/s | Redis req/s | kvd/Redis |", "|---|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['kvd']['rps']:,.0f} | {row['redis']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    return "\n".join(lines) + "\n"
