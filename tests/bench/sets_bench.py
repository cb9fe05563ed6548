"""Sets and sorted sets, kvd beside redis-server in one run (kvd fsync always, Redis AOF
always): redis-benchmark's SADD, SPOP, ZADD and ZPOPMIN -- requests/s and server CPU per
request -- then, each server loaded the same way (pipelined ZADDs, no fsync), one sorted
set of many members: RAM per member (kvd's RSS growth beside Redis's used_memory and RSS
growth) and ZRANGEBYSCORE from a random score, LIMIT 0 10, on it (its cost must not grow with the
set: an ordered index), requests/s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.kvd_process import kvd_beside_redis

from .hashes_bench import load, rss
from .server_bench import benchmark, ensure_tools, kvd_and_redis

TESTS = ["sadd", "spop", "zadd", "zpopmin"]


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 5_000 if quick else 50_000
    results: dict = {"workloads": {}}
    with kvd_and_redis() as (kvd, reference):
        print("\n== sets: kvd (fsync always) vs redis-server (appendfsync always), -c 50 ==")
        print(f"{'test':<14} {'kvd req/s':>10} {'redis req/s':>11} {'kvd/redis':>9} "
              f"{'cpu us/req kvd/redis':>21}")
        for test in TESTS:
            # (ZPOPMIN pops what ZADD added: run in this order, on the same keys)
            k = benchmark(kvd.port, kvd.pid, ["-c", "50", "-t", test], requests, test.upper())
            r = benchmark(reference.port, reference.pid, ["-c", "50", "-t", test], requests,
                          test.upper())
            results["workloads"][test] = {"kvd": k, "redis": r, "ratio": k["rps"] / r["rps"]}
            print(f"{test:<14} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {k['rps'] / r['rps']:>9.2f} "
                  f"{k['cpu_us_per_request']:>10.1f}/{r['cpu_us_per_request']:.1f}")
    results["large"] = large_sorted_set(100_000 if quick else 1_000_000, 2_000 if quick
                                        else 20_000)
    return results


def large_sorted_set(members: int, queries: int) -> dict:
    figures: dict = {"members": members}
    commands = [(b"ZADD", b"big", b"%d" % i, b"member:%d" % i) for i in range(members)]
    with tempfile.TemporaryDirectory(prefix="kvd-bench-") as tmp, \
            kvd_beside_redis(Path(tmp), ["--fsync", "no", "--no-auto-compact"], tcp=True) \
            as (kvd, reference):
        for name, client, pid, port in (("kvd", kvd.tcp_client(), kvd.pid, kvd.port),
                                        ("redis", reference.client(), reference.pid,
                                         reference.port)):
            before = (rss(pid), client.info("memory")["used_memory"])
            seconds = load(client, commands, per_pipeline=5000)
            # (kvd builds its order index on the first read in order: RAM counted after)
            client.zrangebyscore(b"big", 10, 20)
            after = (rss(pid), client.info("memory")["used_memory"])
            ranged = benchmark(port, pid, ["-c", "50", "-r", str(members),
                                           "ZRANGEBYSCORE", "big", "__rand_int__", "+inf",
                                           "LIMIT", "0", "10"], queries)
            figures[name] = {"rss_per_member": (after[0] - before[0]) / members,
                             "used_per_member": (after[1] - before[1]) / members,
                             "load_s": seconds, "zrangebyscore": ranged}
    k, r = figures["kvd"], figures["redis"]
    print(f"\n== one sorted set of {members:,} members (pipelined ZADDs, no fsync) ==")
    print(f"RAM per member: kvd {k['rss_per_member']:.0f} B (RSS), Redis "
          f"{r['used_per_member']:.0f} B used_memory, {r['rss_per_member']:.0f} B RSS: "
          f"{k['rss_per_member'] / r['rss_per_member']:.2f}x")
    print(f"ZRANGEBYSCORE random-score +inf LIMIT 0 10, -c 50: kvd "
          f"{k['zrangebyscore']['rps']:,.0f} req/s, Redis {r['zrangebyscore']['rps']:,.0f}: "
          f"{k['zrangebyscore']['rps'] / r['zrangebyscore']['rps']:.2f}")
    figures["at"] = time.time()
    return figures


def markdown(results: dict) -> str:
    lines = ["| test | kvd req/s | Redis req/s | kvd/Redis |", "|---|---:|---:|---:|"]
    for name, row in results["workloads"].items():
        lines.append(f"| {name} | {row['kvd']['rps']:,.0f} | {row['redis']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    large = results["large"]
    k, r = large["kvd"], large["redis"]
    lines.append(f"\nOne sorted set of {large['members']:,} members: RAM per member kvd "
                 f"{k['rss_per_member']:.0f} B, Redis {r['used_per_member']:.0f} B "
                 f"(used_memory) / {r['rss_per_member']:.0f} B (RSS); ZRANGEBYSCORE from a "
                 f"random score LIMIT 0 10 kvd {k['zrangebyscore']['rps']:,.0f} req/s, Redis "
                 f"{r['zrangebyscore']['rps']:,.0f}")
    return "\n".join(lines) + "\n"
