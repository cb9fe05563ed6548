"""Lists, kvd beside redis-server in one run (kvd fsync always, Redis AOF always):
redis-benchmark's list tests (LPUSH, RPUSH, LPOP, RPOP, LRANGE of 100 and 600 elements)
-- requests/s and server CPU per request (for LRANGE, with the LPUSHes redis-benchmark
fills the list with) -- and the latency of a BLPOP wake-up: a client
blocked in BLPOP, another pushes, the time from the push sent to the element received.
"""

from __future__ import annotations

import statistics
import threading
import time

from .server_bench import benchmark, ensure_tools, kvd_and_redis

TESTS = ["lpush", "rpush", "lpop", "rpop", "lrange_100", "lrange_600"]


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 5_000 if quick else 50_000
    results: dict = {"workloads": {}}
    with kvd_and_redis() as (kvd, reference):
        print("\n== lists: kvd (fsync always) vs redis-server (appendfsync always), -c 50 ==")
        print(f"{'test':<14} {'kvd req/s':>10} {'redis req/s':>11} {'kvd/redis':>9} "
              f"{'cpu us/req kvd/redis':>21}")
        for test in TESTS:
            # LRANGE answers many elements: fewer requests
            n = requests // 5 if test.startswith("lrange") else requests
            k = benchmark(kvd.port, kvd.pid, ["-c", "50", "-t", test], n, test.upper())
            r = benchmark(reference.port, reference.pid, ["-c", "50", "-t", test], n,
                          test.upper())
            results["workloads"][test] = {"kvd": k, "redis": r, "ratio": k["rps"] / r["rps"]}
            print(f"{test:<14} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {k['rps'] / r['rps']:>9.2f} "
                  f"{k['cpu_us_per_request']:>10.1f}/{r['cpu_us_per_request']:.1f}")
        rounds = 50 if quick else 300
        wakeups = {"kvd": wake_up_ms(kvd.tcp_client(), kvd.tcp_client(), rounds),
                   "redis": wake_up_ms(reference.client(), reference.client(), rounds)}
    results["wake_up_ms"] = wakeups
    print(f"\nBLPOP wake-up (push sent -> element received), {rounds} rounds, median / p99 ms: "
          f"kvd {wakeups['kvd']['p50']:.2f} / {wakeups['kvd']['p99']:.2f}, "
          f"redis {wakeups['redis']['p50']:.2f} / {wakeups['redis']['p99']:.2f}")
    return results


def wake_up_ms(waiter, pusher, rounds: int) -> dict:
    """`waiter` blocks in BLPOP, `pusher` pushes once it is counted as blocked; the time
    from the push being sent to the waiter holding the element."""
    samples = []
    for i in range(rounds):
        got: list = []
        thread = threading.Thread(target=lambda: got.append((waiter.blpop("wake", 10),
                                                             time.perf_counter())))
        thread.start()
        while pusher.info("clients")["blocked_clients"] < 1:
            time.sleep(0.0005)
        sent = time.perf_counter()
        pusher.rpush("wake", b"%d" % i)
        thread.join()
        assert got[0][0] == (b"wake", b"%d" % i)
        samples.append((got[0][1] - sent) * 1000)
    samples.sort()
    return {"p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1]}


def markdown(results: dict) -> str:
    lines = ["| test | kvd req/s | Redis req/s | kvd/Redis |", "|---|---:|---:|---:|"]
    for name, row in results["workloads"].items():
        lines.append(f"| {name} | {row['kvd']['rps']:,.0f} | {row['redis']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    wake = results["wake_up_ms"]
    lines.append(f"\nBLPOP wake-up, median / p99: kvd {wake['kvd']['p50']:.2f} / "
                 f"{wake['kvd']['p99']:.2f} ms, Redis {wake['redis']['p50']:.2f} / "
                 f"{wake['redis']['p99']:.2f} ms")
    return "\n".join(lines) + "\n"
