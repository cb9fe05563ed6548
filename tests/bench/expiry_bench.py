"""Key expiry, kvd beside redis-server in one run.

* What a TTL costs a write: `SET k v EX 100` against a plain `SET k v`
  (redis-benchmark, -c 50), requests/s and server CPU per request.
* That changing a TTL does not rewrite the value: EXPIRE on a key holding
  1 MiB against one holding 10 bytes.
* An expiry storm: N keys all given the same deadline a few seconds ahead,
  while one client keeps sending GETs; the p99 and the longest of its
  latencies in the seconds around the deadline, against the same client's
  before it (latencies a client sees, measured from Python on the same
  machine, so the absolute figures include the client's own noise; both
  servers are measured the same way).
"""

from __future__ import annotations

import statistics
import threading
import time

import redis

from .server_bench import benchmark, ensure_tools, kvd_and_redis

VALUE = "x" * 100


def ttl_cost(port: int, pid: int, requests: int) -> dict:
    plain = benchmark(port, pid, ["-c", "50", "-r", "100000", "SET", "key:__rand_int__", VALUE],
                      requests)
    with_ttl = benchmark(port, pid, ["-c", "50", "-r", "100000", "SET", "key:__rand_int__",
                                     VALUE, "EX", "100"], requests)
    return {"plain": plain, "ex": with_ttl, "ratio": with_ttl["rps"] / plain["rps"]}


def expire_cost(port: int, pid: int, requests: int) -> dict:
    """EXPIRE on a key with a 1 MiB value against one with a 10-byte value: changing a
    TTL must not rewrite the value."""
    client = redis.Redis(port=port)
    client.set("big", b"x" * (1 << 20))
    client.set("small", b"x" * 10)
    client.close()
    big = benchmark(port, pid, ["-c", "50", "EXPIRE", "big", "1000"], requests)
    small = benchmark(port, pid, ["-c", "50", "EXPIRE", "small", "1000"], requests)
    return {"big": big, "small": small, "ratio": big["rps"] / small["rps"]}


def storm(port: int, keys: int) -> dict:
    """Load `keys` keys expiring at one instant, then time GETs before and across it."""
    client = redis.Redis(port=port)
    client.flushall()
    started = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(keys):  # first a load to learn how long it takes
        pipe.set(f"probe:{i}", "v")
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    load_s = time.time() - started
    client.flushall()
    deadline = time.time() + load_s * 1.5 + 3
    pxat = int(deadline * 1000)
    for i in range(keys):
        pipe.set(f"storm:{i}", "v", pxat=pxat)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    client.set("hot", "v")
    samples: list[tuple[float, float]] = []  # (when sent, latency)
    stop = threading.Event()

    def load() -> None:
        probe = redis.Redis(port=port)
        while not stop.is_set():
            sent = time.time()
            probe.get("hot")
            samples.append((sent, time.time() - sent))
        probe.close()

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    while time.time() < deadline + 4:
        time.sleep(0.1)  # the storm happens on its own clock; this only waits it out
    stop.set()
    thread.join(10)
    left = client.dbsize()
    client.close()
    before = [lat for sent, lat in samples if deadline - 2 <= sent < deadline - 0.2]
    during = [lat for sent, lat in samples if deadline - 0.2 <= sent < deadline + 3]
    return {
        "keys": keys,
        "keys_left_after_3s": left - 1,
        "p99_before_ms": _p99(before) * 1000,
        "p99_during_ms": _p99(during) * 1000,
        "max_during_ms": max(during) * 1000 if during else 0.0,
        "ratio": _p99(during) / max(_p99(before), 1e-9),
    }


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values or [0])


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 20_000 if quick else 100_000
    keys = 100_000 if quick else 1_000_000
    results: dict = {}
    with kvd_and_redis() as (kvd, reference):
        print("\n== expiry: SET with a TTL against a plain SET (-c 50, fsync always) ==")
        print(f"{'server':<8} {'SET req/s':>10} {'SET EX req/s':>13} {'EX/plain':>9} "
              f"{'cpu us/req SET / SET EX':>24}")
        for name, server in (("kvd", kvd), ("redis", reference)):
            cost = ttl_cost(server.port, server.pid, requests)
            results[f"ttl_cost/{name}"] = cost
            print(f"{name:<8} {cost['plain']['rps']:>10,.0f} {cost['ex']['rps']:>13,.0f} "
                  f"{cost['ratio']:>9.2f} {cost['plain']['cpu_us_per_request']:>11.1f} / "
                  f"{cost['ex']['cpu_us_per_request']:.1f}")
        print("\n== expiry: EXPIRE on a 1 MiB value against a 10-byte one (-c 50) ==")
        print(f"{'server':<8} {'10 B req/s':>11} {'1 MiB req/s':>12} {'1 MiB/10 B':>11}")
        for name, server in (("kvd", kvd), ("redis", reference)):
            cost = expire_cost(server.port, server.pid, requests)
            results[f"expire_cost/{name}"] = cost
            print(f"{name:<8} {cost['small']['rps']:>11,.0f} {cost['big']['rps']:>12,.0f} "
                  f"{cost['ratio']:>11.2f}")
        print(f"\n== expiry: {keys:,} keys expiring at once while a client sends GETs ==")
        print(f"{'server':<8} {'p99 before ms':>14} {'p99 during ms':>14} {'during/before':>14} "
              f"{'max during ms':>14} {'left after 3 s':>15}")
        for name, server in (("kvd", kvd), ("redis", reference)):
            s = storm(server.port, keys)
            results[f"storm/{name}"] = s
            print(f"{name:<8} {s['p99_before_ms']:>14.2f} {s['p99_during_ms']:>14.2f} "
                  f"{s['ratio']:>14.2f} {s['max_during_ms']:>14.1f} "
                  f"{s['keys_left_after_3s']:>15,}")
    return results


def markdown(results: dict) -> str:
    lines = ["| measure | kvd | Redis |", "|---|---:|---:|"]
    k, r = results["ttl_cost/kvd"], results["ttl_cost/redis"]
    lines.append(f"| SET EX 100 / plain SET, req/s | {k['ratio']:.2f} | {r['ratio']:.2f} |")
    lines.append(f"| server CPU µs per SET / SET EX | {k['plain']['cpu_us_per_request']:.1f} / "
                 f"{k['ex']['cpu_us_per_request']:.1f} | {r['plain']['cpu_us_per_request']:.1f} / "
                 f"{r['ex']['cpu_us_per_request']:.1f} |")
    k, r = results["expire_cost/kvd"], results["expire_cost/redis"]
    lines.append(f"| EXPIRE on a 1 MiB value / on a 10-byte value, req/s | {k['ratio']:.2f} | "
                 f"{r['ratio']:.2f} |")
    k, r = results["storm/kvd"], results["storm/redis"]
    lines.append(f"| expiry storm of {k['keys']:,} keys: GET p99 before / during (ms) | "
                 f"{k['p99_before_ms']:.2f} / {k['p99_during_ms']:.2f} | "
                 f"{r['p99_before_ms']:.2f} / {r['p99_during_ms']:.2f} |")
    lines.append(f"| ... longest GET during it (ms) | {k['max_during_ms']:.1f} | "
                 f"{r['max_during_ms']:.1f} |")
    lines.append(f"| ... keys left 3 s after the deadline | {k['keys_left_after_3s']:,} | "
                 f"{r['keys_left_after_3s']:,} |")
    return "\n".join(lines) + "\n"
