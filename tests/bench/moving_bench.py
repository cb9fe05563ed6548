"""Moving a Redis dataset in and out, kvd beside redis-server: 200,000 keys of every type
(strings, hashes, lists, sets, sorted sets; a fifth with TTLs) in three databases, plus a
100,000-element list and a 100,000-field hash, go Redis -> dump.rdb -> `kvctl import` ->
kvd -> `kvctl export --rdb` -> a fresh redis-server started on that file; every key,
type, value and TTL is compared at both ends (the bench fails if one differs). Printed:
the import's rate (keys/s, MB/s of the RDB file), the export's, and the longest PING
another client waited for while kvd ran one large RESTORE.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis

from tests.kvd_process import KVCTL, RedisServer

from .server_bench import ensure_tools, kvd_and_redis

DATABASES = {0: 120_000, 1: 50_000, 2: 30_000}


def fill(port: int, quick: bool) -> int:
    """The dataset, in Redis; how many keys."""
    rng = random.Random(7)
    total = 0
    for db, count in DATABASES.items():
        count = count // 20 if quick else count
        client = redis.Redis(port=port, db=db)
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            key, kind = b"key:%d" % i, i % 10
            members = [b"m%d" % rng.randrange(1000) for _ in range(10)]
            if kind < 5:
                pipe.set(key, rng.randbytes(100))
            elif kind < 7:
                pipe.hset(key, mapping={m: rng.randbytes(20) for m in members})
            elif kind == 7:
                pipe.rpush(key, *members)
            elif kind == 8:
                pipe.sadd(key, *members)
            else:
                pipe.zadd(key, {m: rng.random() * 1000 for m in members})
            if i % 5 == 0:
                pipe.pexpire(key, 3_600_000 + i)
            if len(pipe) >= 5000:
                pipe.execute()
        pipe.execute()
        total += count
        client.close()
    big = redis.Redis(port=port)
    size = 10_000 if quick else 100_000
    for start in range(0, size, 10_000):
        big.rpush(b"big:list", *(b"element-%d" % i for i in range(start, start + 10_000)))
        big.hset(b"big:hash", mapping={b"field-%d" % i: b"v%d" % i
                                       for i in range(start, start + 10_000)})
    big.close()
    return total + 2


def snapshot(port: int) -> dict:
    """Every key of each database: (type, contents, has a TTL). (Read in chunks: a client
    that pipelines more than a server's output cap without reading blocks on kvd.)"""
    seen = {}
    for db in DATABASES:
        client = redis.Redis(port=port, db=db)
        keys = list(client.scan_iter(count=5000))
        for start in range(0, len(keys), 2000):
            chunk = keys[start:start + 2000]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.type(key)
            types = pipe.execute()
            for key, kind in zip(chunk, types):
                read = {b"string": pipe.get, b"hash": pipe.hgetall,
                        b"list": lambda k: pipe.lrange(k, 0, -1), b"set": pipe.smembers,
                        b"zset": lambda k: pipe.zrange(k, 0, -1, withscores=True)}[kind]
                read(key)
                pipe.pttl(key)
            replies = pipe.execute()
            for i, key in enumerate(chunk):
                seen[(db, key)] = (types[i], replies[2 * i], replies[2 * i + 1] > 0)
        client.close()
    return seen


def ping_latency_during(port: int, action) -> float:
    """The longest a PING waited (ms) while `action()` ran on another connection."""
    client = redis.Redis(port=port)
    client.ping()
    waits: list[float] = []
    stop = threading.Event()

    def pinger() -> None:
        while not stop.is_set():
            began = time.perf_counter()
            client.ping()
            waits.append((time.perf_counter() - began) * 1000)
            time.sleep(0.001)

    thread = threading.Thread(target=pinger)
    thread.start()
    try:
        action()
    finally:
        stop.set()
        thread.join()
        client.close()
    return max(waits) if waits else 0.0


def run(quick: bool) -> dict:
    ensure_tools()
    results: dict = {}
    with kvd_and_redis() as (kvd, reference), tempfile.TemporaryDirectory() as tmp:
        print("\n== moving data: Redis -> dump.rdb -> kvctl import -> kvd -> kvctl export "
              "--rdb -> Redis ==")
        keys = fill(reference.port, quick)
        source = redis.Redis(port=reference.port)
        source.save()
        dump = Path(reference.dir) / "dump.rdb"
        size = dump.stat().st_size
        began = time.perf_counter()
        done = subprocess.run([KVCTL, "import", str(dump)], cwd=kvd.dir, capture_output=True,
                              text=True, timeout=3600)
        seconds = time.perf_counter() - began
        assert done.returncode == 0, done.stderr
        expected = snapshot(reference.port)
        assert len(expected) == keys
        assert snapshot(kvd.port) == expected, "kvd's keys differ from Redis's"
        results["import"] = {"keys": keys, "rdb_bytes": size, "seconds": seconds,
                             "keys_per_s": keys / seconds, "mb_per_s": size / 1e6 / seconds}
        print(f"import: {keys:,} keys, RDB {size / 1e6:.1f} MB, {seconds:.1f} s: "
              f"{keys / seconds:,.0f} keys/s, {size / 1e6 / seconds:.1f} MB/s")

        back = Path(tmp) / "back" / "dump.rdb"
        back.parent.mkdir()
        began = time.perf_counter()
        done = subprocess.run([KVCTL, "export", "--rdb", str(back)], cwd=kvd.dir,
                              capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - began
        assert done.returncode == 0, done.stderr
        results["export"] = {"seconds": seconds, "keys_per_s": keys / seconds}
        print(f"export --rdb: {seconds:.1f} s, {keys / seconds:,.0f} keys/s")
        loaded = RedisServer(back.parent, ["--dbfilename", "dump.rdb"])
        try:
            assert snapshot(loaded.port) == expected, "the Redis loaded from kvd's file differs"
        finally:
            loaded.stop()
        print("every key, type, value and TTL equal at both ends")

        payload = source.dump(b"big:hash")
        kvd_client = redis.Redis(port=kvd.port)
        kvd_latency = ping_latency_during(kvd.port, lambda: kvd_client.restore(
            b"restored", 0, payload, replace=True))
        redis_latency = ping_latency_during(reference.port, lambda: source.restore(
            b"restored", 0, payload, replace=True))
        results["restore_latency_ms"] = {"kvd": kvd_latency, "redis": redis_latency,
                                         "fields": source.hlen(b"big:hash")}
        print(f"longest PING during a RESTORE of a {source.hlen(b'big:hash'):,}-field hash: "
              f"kvd {kvd_latency:.0f} ms, Redis {redis_latency:.0f} ms")
        kvd_client.close()
        source.close()
    return results


def markdown(results: dict) -> str:
    imported, exported = results["import"], results["export"]
    latency = results["restore_latency_ms"]
    return (f"| step | figure |\n|---|---|\n"
            f"| import ({imported['keys']:,} keys, {imported['rdb_bytes'] / 1e6:.1f} MB RDB) "
            f"| {imported['keys_per_s']:,.0f} keys/s, {imported['mb_per_s']:.1f} MB/s |\n"
            f"| export --rdb | {exported['keys_per_s']:,.0f} keys/s |\n"
            f"| longest PING during a {latency['fields']:,}-field RESTORE | kvd "
            f"{latency['kvd']:.0f} ms, Redis {latency['redis']:.0f} ms |\n")

