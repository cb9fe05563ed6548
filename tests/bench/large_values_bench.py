"""Large values, kvd beside redis-server in one run (both fsync always).

* How long one command on a 60 MB value holds every other client: a separate
  process sends PINGs back to back, and the longest round trip while a DUMP,
  RESTORE, RESTORE with a bad checksum, SET or GET of the value runs is the
  stall the others see (measured from Python on the same machine, so both
  servers are measured the same way).
* What changing a few bytes of a large value writes: 20 SETBITs on a 16 MB
  value, the bytes the data directory (kvd) or the append-only file (Redis)
  grew by, and how long they took.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import redis

from .server_bench import ensure_tools, kvd_and_redis

PINGER = """
import sys, time, redis
client = redis.Redis(port=int(sys.argv[1]), socket_timeout=120)
out = open(sys.argv[2], "w", buffering=1)
while True:
    sent = time.time()
    client.ping()
    out.write(f"{sent} {time.time() - sent}\\n")
"""
OPERATIONS = ("DUMP", "RESTORE", "RESTORE bad CRC", "SET", "GET")


def stalls(port: int, size: int) -> dict:
    """The longest PING round trip during each operation on a value of `size` bytes."""
    client = redis.Redis(port=port, socket_timeout=120)
    value = os.urandom(size)
    client.set("big", value)
    payload = client.dump("big")
    assert isinstance(payload, bytes)
    damaged = payload[:-1] + bytes([payload[-1] ^ 1])
    calls = {
        "DUMP": lambda: client.dump("big"),
        "RESTORE": lambda: client.restore("copy", 0, payload, replace=True),
        "RESTORE bad CRC": lambda: client.restore("copy", 0, damaged, replace=True),
        "SET": lambda: client.set("other", value),
        "GET": lambda: client.get("other"),
    }
    with tempfile.NamedTemporaryFile("r", suffix=".pings") as log:
        pinger = subprocess.Popen([sys.executable, "-c", PINGER, str(port), log.name])
        try:
            while not log.read(1):  # the pinger is connected and answered
                log.seek(0)
                time.sleep(0.05)
            spans = []
            for name in OPERATIONS:
                started = time.time()
                try:
                    calls[name]()
                except redis.ResponseError:
                    pass  # the bad checksum
                spans.append((name, started, time.time()))
                time.sleep(0.3)  # the PING in flight at the end returns
        finally:
            pinger.kill()
            pinger.wait()
        log.seek(0)
        samples = [tuple(map(float, line.split())) for line in log.read().splitlines()
                   if line.count(" ") == 1]
    client.delete("big", "copy", "other")
    client.close()
    result = {}
    for name, started, ended in spans:
        during = [latency for sent, latency in samples if started - 0.05 <= sent <= ended]
        result[name] = {"op_ms": (ended - started) * 1000,
                        "worst_ping_ms": max(during, default=0.0) * 1000}
    return result


def setbits(port: int, grows: Callable[[], int]) -> dict:
    client = redis.Redis(port=port)
    client.set("bits", b"\0" * (16 << 20))
    before, started = grows(), time.time()
    for i in range(20):
        client.setbit("bits", i * 1000, 1)
    took = time.time() - started
    client.delete("bits")
    client.close()
    return {"bytes_written": grows() - before, "seconds": took}


def _directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def run(quick: bool) -> dict:
    ensure_tools()
    size = (16 if quick else 60) << 20
    results: dict = {"size": size}
    with kvd_and_redis() as (kvd, reference):
        redis_dir = os.path.join(os.path.dirname(kvd.dir), "redis")
        measured = {"kvd": (kvd.port, lambda: _directory_bytes(kvd.data_dir)),
                    "redis": (reference.port, lambda: _directory_bytes(redis_dir))}
        print(f"\n== large values: the longest PING while one command handles {size >> 20} MB ==")
        print(f"{'operation':<16} {'kvd ms':>8} {'redis ms':>9} {'kvd/redis':>10}")
        for name, (port, _) in measured.items():
            results[f"stalls/{name}"] = stalls(port, size)
        for op in OPERATIONS:
            k = results["stalls/kvd"][op]["worst_ping_ms"]
            r = results["stalls/redis"][op]["worst_ping_ms"]
            print(f"{op:<16} {k:>8.0f} {r:>9.0f} {k / max(r, 1e-3):>10.1f}")
        print("\n== large values: 20 SETBITs on a 16 MB value ==")
        print(f"{'server':<8} {'MB written':>11} {'seconds':>8}")
        for name, (port, grows) in measured.items():
            bits = results[f"setbit/{name}"] = setbits(port, grows)
            print(f"{name:<8} {bits['bytes_written'] / 1e6:>11.1f} {bits['seconds']:>8.2f}")
    return results


def markdown(results: dict) -> str:
    lines = [f"| longest PING while one command handles {results['size'] >> 20} MB (ms) | kvd | "
             "Redis |", "|---|---:|---:|"]
    for op in OPERATIONS:
        lines.append(f"| {op} | {results['stalls/kvd'][op]['worst_ping_ms']:.0f} | "
                     f"{results['stalls/redis'][op]['worst_ping_ms']:.0f} |")
    k, r = results["setbit/kvd"], results["setbit/redis"]
    lines.append(f"| 20 SETBITs on a 16 MB value: MB written / seconds | "
                 f"{k['bytes_written'] / 1e6:.1f} / {k['seconds']:.2f} | "
                 f"{r['bytes_written'] / 1e6:.1f} / {r['seconds']:.2f} |")
    return "\n".join(lines) + "\n"
