"""Clients during a compaction versus without one, in the same run.

`KVD_BENCH_FSYNC=everysec` runs it under another fsync policy (default: always).

A data directory of segments that are mostly garbage is built with the
storage API (fast), a real kvd daemon is started on it, and client processes
run a 50/50 GET/SET load, timestamping every request. A SIGUSR1 starts the
compaction part-way through; a monitor polls INFO to learn when it ran.
Requests issued while it ran are compared with those before and after it:
latency p50/p99/max and throughput, as ratios (the goal: p99 during <= 2x,
throughput during >= 0.8x).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import redis

from storage import open_store
from tests.kvd_process import Daemon

VALUE = 1000


def build(data_dir: str, live_keys: int, garbage_ratio: float) -> int:
    """Write `live_keys` keys, overwriting them until ~garbage_ratio of the bytes is dead."""
    rounds = max(1, round(1 / (1 - garbage_ratio)))
    with open_store(data_dir, fsync="no") as db:
        for r in range(rounds):
            for i in range(live_keys):
                db.put(b"key:%09d" % i, b"%d" % r + b"v" * (VALUE - 1))
                if i % 20_000 == 0:
                    db.flush()
        stats = db.stats()
    return stats.total_bytes


def _client(socket_path: str, keys: int, stop, seed: int, out) -> None:
    client = redis.Redis(unix_socket_path=socket_path, protocol=2)
    rng = random.Random(seed)
    value = b"n" * VALUE
    starts, latencies = [], []
    clock = time.perf_counter
    n = 0
    while not stop.is_set():
        key = b"key:%09d" % rng.randrange(keys)
        started = clock()
        if n & 1:
            client.set(key, value)
        else:
            client.get(key)
        latencies.append(clock() - started)
        starts.append(started)
        n += 1
    out.put((starts, latencies))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _summary(starts: list[float], latencies: list[float], window: float) -> dict:
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / window if window > 0 else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1e3,
        "p99_ms": _percentile(latencies, 0.99) * 1e3,
        "max_ms": max(latencies) * 1e3 if latencies else 0.0,
    }


def run(quick: bool) -> dict:
    live_keys = 60_000 if quick else 320_000  # x ~1 KB x 3.3 rounds: ~200 MB or ~1.05 GB
    clients = 4
    with tempfile.TemporaryDirectory(prefix="kvd-bench-") as tmp:
        fsync = os.environ.get("KVD_BENCH_FSYNC", "always")
        server = Daemon(Path(tmp), ["--no-auto-compact", "--fsync", fsync], tcp=False)
        print(f"\n== compaction under load: building {live_keys:,} keys, ~70% garbage ==")
        total = build(server.data_dir, live_keys, 0.70)
        print(f"data: {total / 1e6:,.0f} MB of segments")
        server.start()
        try:
            return _measure(server, live_keys, clients, total, quick)
        finally:
            server.cleanup()


def _measure(server: Daemon, keys: int, clients: int, total: int, quick: bool) -> dict:
    steady = 2.0 if quick else 4.0
    monitor = redis.Redis(unix_socket_path=server.socket, protocol=2)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_client, args=(server.socket, keys, stop, n, queue))
             for n in range(clients)]
    load_started = time.perf_counter()
    for p in procs:
        p.start()
    time.sleep(steady)  # a baseline stretch before the compaction (a measurement window)
    started = time.perf_counter()
    server.signal(signal.SIGUSR1)
    while monitor.info("persistence")["compactions_completed"] == 0:
        time.sleep(0.01)
    ended = time.perf_counter()
    time.sleep(steady)  # and one after it
    stop.set()
    stop_at = time.perf_counter()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    info = monitor.info("persistence")
    return _report(results, load_started, started, ended, stop_at, info, total)


def _report(results, load_started, started, ended, stop_at, info, total) -> dict:
    during_s, during_l, base_s, base_l = [], [], [], []
    for starts, latencies in results:
        for s, lat in zip(starts, latencies):
            if s > stop_at:
                continue
            if started <= s <= ended:
                during_s.append(s)
                during_l.append(lat)
            else:
                base_s.append(s)
                base_l.append(lat)
    duration = ended - started
    baseline_window = (stop_at - load_started) - duration
    base = _summary(base_s, base_l, baseline_window)
    during = _summary(during_s, during_l, duration)
    live = info["live_bytes"]
    result = {
        "fsync": os.environ.get("KVD_BENCH_FSYNC", "always"),
        "bytes_before": total,
        "bytes_after": info["total_bytes"],
        "compaction_s": float(info["last_compaction_duration_s"]),
        "live_mb_per_s": live / 1e6 / float(info["last_compaction_duration_s"]),
        "baseline": base,
        "during": during,
        "p99_ratio": during["p99_ms"] / base["p99_ms"] if base["p99_ms"] else 0.0,
        "throughput_ratio": (during["throughput"] / base["throughput"]
                             if base["throughput"] else 0.0),
    }
    print(f"compaction: {result['compaction_s']:.2f} s, {total / 1e6:,.0f} MB -> "
          f"{result['bytes_after'] / 1e6:,.0f} MB, {result['live_mb_per_s']:.1f} MB/s of live data")
    for name, s in (("without", base), ("during", during)):
        print(f"{name:>8}: {s['throughput']:9,.0f} req/s  p50 {s['p50_ms']:6.2f} ms  "
              f"p99 {s['p99_ms']:6.2f} ms  max {s['max_ms']:7.2f} ms  ({s['requests']:,} requests)")
    print(f"   ratio: p99 during/without {result['p99_ratio']:.2f} (goal <= 2), "
          f"throughput {result['throughput_ratio']:.2f} (goal >= 0.8)")
    return result


def markdown(r: dict) -> str:
    b, d = r["baseline"], r["during"]
    return "\n".join([
        f"Compaction under a 50/50 GET/SET load (4 client processes, 1 KB values, "
        f"fsync {r.get('fsync', 'always')}): "
        f"{r['bytes_before'] / 1e6:,.0f} MB of segments -> {r['bytes_after'] / 1e6:,.0f} MB in "
        f"{r['compaction_s']:.2f} s ({r['live_mb_per_s']:.1f} MB/s of live data).",
        "",
        "| clients | req/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
        f"| without compaction | {b['throughput']:,.0f} | {b['p50_ms']:.2f} | "
        f"{b['p99_ms']:.2f} | {b['max_ms']:.1f} |",
        f"| during compaction | {d['throughput']:,.0f} | {d['p50_ms']:.2f} | "
        f"{d['p99_ms']:.2f} | {d['max_ms']:.1f} |",
        f"| ratio during/without | {r['throughput_ratio']:.2f} | | {r['p99_ratio']:.2f} | |",
        "",
    ])
