"""The embedded store, log engine beside the sqlite engine, in one run.

Measures: write throughput per fsync policy (one put per flush, the fsync-bound
case, and 100 puts per flush, a group commit), random-read throughput,
compaction speed in MB/s of live data, start-up time of N keys (hint files for
the log engine) and memory per key of the open store.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc

from storage import ENGINES, open_store

VALUE = b"x" * 100


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def write_rate(directory: str, engine: str, fsync: str, batch: int, count: int) -> float:
    with open_store(directory, engine=engine, fsync=fsync) as db:
        def work():
            for i in range(count):
                db.put(b"key:%d" % i, VALUE)
                if i % batch == batch - 1:
                    db.flush()
            db.flush()
        return count / _timed(work)


def read_rate(directory: str, engine: str, keys: int, count: int) -> float:
    with open_store(directory, engine=engine, fsync="no") as db:
        for i in range(keys):
            db.put(b"key:%d" % i, VALUE)
        db.flush()
        rng = random.Random(1)
        wanted = [b"key:%d" % rng.randrange(keys) for _ in range(count)]

        def work():
            get = db.get
            for key in wanted:
                get(key)
        return count / _timed(work)


def compaction_rate(directory: str, engine: str, keys: int) -> dict:
    """Write every key 4 times and delete half, so ~85% of the data is garbage."""
    value = b"y" * 1000
    with open_store(directory, engine=engine, fsync="no") as db:
        for _ in range(4):
            for i in range(keys):
                db.put(b"key:%d" % i, value)
            db.flush()
        for i in range(0, keys, 2):
            db.delete(b"key:%d" % i)
        db.flush()
        live = db.stats().live_bytes
        result = db.compact()
    return {
        "live_mb": live / 1e6,
        "before_mb": result.bytes_before / 1e6,
        "after_mb": result.bytes_after / 1e6,
        "seconds": result.duration_s,
        "live_mb_per_s": live / 1e6 / result.duration_s,
    }


def startup_and_memory(directory: str, engine: str, keys: int, ttl: bool = False) -> dict:
    deadline = int(time.time() * 1000) + 86_400_000 if ttl else 0
    with open_store(directory, engine=engine, fsync="no") as db:
        for i in range(keys):
            db.put(b"key:%012d" % i, b"v" * 20, deadline)
            if i % 10000 == 9999:
                db.flush()
    gc.collect()
    started = time.perf_counter()
    with open_store(directory, engine=engine, fsync="no") as db:
        startup = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    db = open_store(directory, engine=engine, fsync="no")
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    key_bytes = sys.getsizeof(b"key:%012d" % 0) * keys  # the key objects themselves
    db.close()
    return {
        "keys": keys,
        "startup_s": startup,
        "bytes_per_key_beyond_key": max(0.0, (used - key_bytes) / keys),
    }


def run(quick: bool, keys: int | None) -> dict:
    keys = keys or (100_000 if quick else 1_000_000)
    writes_synced = 300 if quick else 2000
    writes_batched = 20_000 if quick else 200_000
    results: dict = {"write": {}, "read": {}, "compaction": {}, "startup": {}}
    root = tempfile.mkdtemp(prefix="kvd-bench-")
    try:
        def fresh(name: str) -> str:
            path = os.path.join(root, name)
            shutil.rmtree(path, ignore_errors=True)
            return path

        print("\n== storage: writes/s (100-byte values) ==")
        print(f"{'fsync':<9} {'puts/flush':>10} {'log':>12} {'sqlite':>12} {'log/sqlite':>11}")
        for fsync in ("always", "everysec", "no"):
            for batch in (1, 100):
                count = writes_synced if (batch == 1 and fsync == "always") else writes_batched
                row = {e: write_rate(fresh(f"w-{e}"), e, fsync, batch, count) for e in ENGINES}
                results["write"][f"{fsync}/{batch}"] = row
                print(f"{fsync:<9} {batch:>10} {row['log']:>12,.0f} {row['sqlite']:>12,.0f} "
                      f"{row['log'] / row['sqlite']:>10.2f}x")

        print("\n== storage: random reads/s ==")
        reads = 50_000 if quick else 500_000
        row = {e: read_rate(fresh(f"r-{e}"), e, min(keys, 200_000), reads) for e in ENGINES}
        results["read"] = row
        print(f"log {row['log']:,.0f}   sqlite {row['sqlite']:,.0f}   "
              f"log/sqlite {row['log'] / row['sqlite']:.2f}x")

        print("\n== storage: compaction (1 KB values, ~85% garbage) ==")
        ckeys = 20_000 if quick else 100_000
        for engine in ENGINES:
            c = compaction_rate(fresh(f"c-{engine}"), engine, ckeys)
            results["compaction"][engine] = c
            print(f"{engine:<7} {c['before_mb']:8.1f} MB -> {c['after_mb']:7.1f} MB in "
                  f"{c['seconds']:6.2f} s = {c['live_mb_per_s']:7.1f} MB/s of live data")

        print(f"\n== storage: start-up and memory, {keys:,} keys ==")
        for engine in ENGINES:
            for ttl in (False, True):
                s = startup_and_memory(fresh(f"s-{engine}"), engine, keys, ttl)
                results["startup"][engine + ("+ttl" if ttl else "")] = s
                print(f"{engine:<7} {'with a TTL' if ttl else 'no TTL':<10} start-up "
                      f"{s['startup_s']:6.2f} s   memory {s['bytes_per_key_beyond_key']:6.1f} "
                      "B/key beyond the key")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def markdown(results: dict, machine: str) -> str:
    lines = [
        f"Storage engines, measured by `./run bench` on {machine}.",
        "",
        "| workload | log | sqlite | log/sqlite |",
        "|---|---:|---:|---:|",
    ]
    for name, row in results["write"].items():
        fsync, batch = name.split("/")
        lines.append(f"| writes/s, fsync {fsync}, {batch} put(s) per flush | {row['log']:,.0f} | "
                     f"{row['sqlite']:,.0f} | {row['log'] / row['sqlite']:.2f} |")
    r = results["read"]
    lines.append(f"| random reads/s | {r['log']:,.0f} | {r['sqlite']:,.0f} | "
                 f"{r['log'] / r['sqlite']:.2f} |")
    c = results["compaction"]
    lines.append(f"| compaction, MB/s of live data | {c['log']['live_mb_per_s']:.1f} | "
                 f"{c['sqlite']['live_mb_per_s']:.1f} | "
                 f"{c['log']['live_mb_per_s'] / c['sqlite']['live_mb_per_s']:.2f} |")
    s = results["startup"]
    keys = s["log"]["keys"]
    lines.append(f"| start-up, {keys:,} keys (s) | {s['log']['startup_s']:.2f} | "
                 f"{s['sqlite']['startup_s']:.2f} (no index to load) | |")
    lines.append("| memory per key beyond the key (B) | "
                 f"{s['log']['bytes_per_key_beyond_key']:.0f} | "
                 f"{s['sqlite']['bytes_per_key_beyond_key']:.0f} (index on disk) | |")
    lines.append(f"| start-up with a TTL on every key (s) | {s['log+ttl']['startup_s']:.2f} | "
                 f"{s['sqlite+ttl']['startup_s']:.2f} | |")
    lines.append("| memory per key with a TTL (B) | "
                 f"{s['log+ttl']['bytes_per_key_beyond_key']:.0f} | "
                 f"{s['sqlite+ttl']['bytes_per_key_beyond_key']:.0f} (deadlines in memory) | |")
    return "\n".join(lines) + "\n"
