"""Hashes, kvd beside redis-server in one run (kvd fsync always, Redis AOF always):
redis-benchmark's HSET into one hash of 100 fields, HGET and HGETALL of it, HSET creating
many small hashes, and HSET/HGET of random fields of one large hash (element records in
kvd) -- requests/s and server CPU per request.

Then memory per field, each server loaded the same way (pipelined HSETs, no fsync): many
hashes of 10 small fields (kvd packs each whole) and one hash of many fields (element
records), kvd's RSS growth beside Redis's used_memory and RSS growth; and how long kvd
takes to open the large hash again (start-up reads hint files, not values).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.kvd_process import kvd_beside_redis

from .server_bench import benchmark, ensure_tools, kvd_and_redis

WORKLOADS = [
    ("HSET, 100-field hash", ["-c", "50", "-r", "100", "HSET", "myhash",
                              "element:__rand_int__", "value"]),
    ("HGET, 100-field hash", ["-c", "50", "-r", "100", "HGET", "myhash",
                              "element:__rand_int__"]),
    ("HGETALL, 100 fields", ["-c", "50", "HGETALL", "myhash"]),
    ("HSET, new small hashes", ["-c", "50", "-r", "100000", "HSET", "hash:__rand_int__",
                                "field", "value"]),
    ("HSET, large hash", ["-c", "50", "-r", "1000000", "HSET", "large",
                          "element:__rand_int__", "value"]),
    ("HGET, large hash", ["-c", "50", "-r", "1000000", "HGET", "large",
                          "element:__rand_int__"]),
]


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 5_000 if quick else 50_000
    results: dict = {"workloads": {}}
    with kvd_and_redis() as (kvd, reference):
        print("\n== hashes: kvd (fsync always) vs redis-server (appendfsync always), -c 50 ==")
        print(f"{'workload':<26} {'kvd req/s':>10} {'redis req/s':>11} {'kvd/redis':>9} "
              f"{'cpu us/req kvd/redis':>21}")
        for name, args in WORKLOADS:
            k = benchmark(kvd.port, kvd.pid, args, requests)
            r = benchmark(reference.port, reference.pid, args, requests)
            results["workloads"][name] = {"kvd": k, "redis": r, "ratio": k["rps"] / r["rps"]}
            print(f"{name:<26} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {k['rps'] / r['rps']:>9.2f} "
                  f"{k['cpu_us_per_request']:>10.1f}/{r['cpu_us_per_request']:.1f}")
    results["memory"] = memory(10_000 if quick else 1_000_000, 100_000 if quick else 1_000_000)
    return results


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for PID {pid}")


def load(client, commands, per_pipeline: int = 2000) -> float:
    """Send `commands` (argument tuples) pipelined; the seconds it took."""
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n, command in enumerate(commands, start=1):
        pipe.execute_command(*command)
        if n % per_pipeline == 0:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - started


def memory(small_hashes: int, large_fields: int) -> dict:
    """Bytes per field: `small_hashes` hashes of 10 fields, then one of `large_fields`."""
    small = [(b"HSET", b"hash:%d" % i, *[part for j in range(10)
                                         for part in (b"field%d" % j, b"value%d" % j)])
             for i in range(small_hashes)]
    large = [(b"HSET", b"large", b"element:%d" % i, b"value%d" % i) for i in range(large_fields)]
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="kvd-bench-") as tmp, \
            kvd_beside_redis(Path(tmp), ["--fsync", "no", "--no-auto-compact"], tcp=True) \
            as (kvd, reference):
        clients = {"kvd": kvd.tcp_client(), "redis": reference.client()}
        pids = {"kvd": kvd.pid, "redis": reference.pid}
        for name, client in clients.items():
            rows: dict = {}
            for label, commands, fields in (("small", small, small_hashes * 10),
                                            ("large", large, large_fields)):
                before = (rss(pids[name]), client.info("memory")["used_memory"])
                seconds = load(client, commands)
                after = (rss(pids[name]), client.info("memory")["used_memory"])
                rows[label] = {"rss_per_field": (after[0] - before[0]) / fields,
                               "used_per_field": (after[1] - before[1]) / fields,
                               "load_s": seconds}
            figures[name] = rows
        kvd.stop()
        started = time.perf_counter()
        kvd.start()
        figures["kvd_restart_s"] = time.perf_counter() - started
        assert kvd.tcp_client().hlen(b"large") == large_fields
    print(f"\n== memory per field (pipelined HSETs, no fsync): {small_hashes:,} hashes of 10 "
          f"fields, one hash of {large_fields:,} fields ==")
    print(f"{'data':<28} {'kvd RSS B/field':>15} {'redis used B/field':>18} "
          f"{'redis RSS B/field':>17} {'kvd/redis RSS':>13}")
    for label, title in (("small", f"{small_hashes:,} x 10 fields"),
                         ("large", f"1 x {large_fields:,} fields")):
        k, r = figures["kvd"][label], figures["redis"][label]
        print(f"{title:<28} {k['rss_per_field']:>15.1f} {r['used_per_field']:>18.1f} "
              f"{r['rss_per_field']:>17.1f} {k['rss_per_field'] / r['rss_per_field']:>13.2f}")
    print(f"kvd restart (`kvd start` until ready) with that data: "
          f"{figures['kvd_restart_s']:.2f} s")
    return figures


def markdown(results: dict) -> str:
    lines = ["| workload | kvd req/s | Redis req/s | kvd/Redis |", "|---|---:|---:|---:|"]
    for name, row in results["workloads"].items():
        lines.append(f"| {name} | {row['kvd']['rps']:,.0f} | {row['redis']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    memory = results["memory"]
    lines += ["", "| data | kvd RSS bytes/field | Redis used_memory bytes/field | "
              "Redis RSS bytes/field |", "|---|---:|---:|---:|"]
    for label, title in (("small", "hashes of 10 small fields"),
                         ("large", "one hash of many fields")):
        k, r = memory["kvd"][label], memory["redis"][label]
        lines.append(f"| {title} | {k['rss_per_field']:.0f} | {r['used_per_field']:.0f} | "
                     f"{r['rss_per_field']:.0f} |")
    lines.append(f"\nkvd restart with that data: {memory['kvd_restart_s']:.2f} s")
    return "\n".join(lines) + "\n"
