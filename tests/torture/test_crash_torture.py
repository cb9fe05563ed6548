"""Crash torture: writers record every acknowledged write; the daemon is SIGKILLed at random
moments (mid-write, mid-flush, mid-compaction in the parent or the child, during a drain),
restarted, and checked against the acknowledged history every time.

`./run test` runs a bounded number of kills; `./run torture --minutes N` keeps going for N
minutes (KVD_TORTURE_MINUTES).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
import redis

from tests.kvd_process import Daemon, wait_gone

pytestmark = pytest.mark.slow

KILLS_IN_TEST = 50
KEYS = 400


class Write:
    """One write: its value (None: a delete) and, for a key given a TTL (`px` ms), when it
    was sent and acknowledged -- the server's deadline lies between the two plus `px`."""

    __slots__ = ("value", "px", "sent", "acked")

    def __init__(self, value: bytes | None, px: int, sent: float) -> None:
        self.value, self.px, self.sent, self.acked = value, px, sent, None

    def visible(self, start: float, end: float) -> set:
        """What a read made between `start` and `end` may return."""
        if self.value is None or not self.px:
            return {self.value}
        earliest = self.sent + self.px / 1000
        latest = (self.acked or end) + self.px / 1000
        if end < earliest:
            return {self.value}
        if start > latest:
            return {None}
        return {self.value, None}


class Model:
    """What each key may hold: its acknowledged write, plus the in-flight writes whose
    outcome a kill left unknown (either is correct until the next read settles it), each
    seen through its TTL."""

    def __init__(self) -> None:
        self.acked: dict[bytes, Write] = {}
        self.maybe: dict[bytes, list[Write]] = {}
        self.lock = threading.Lock()
        self.ttl_keys_checked = 0

    def ack(self, key: bytes, write: Write) -> None:
        write.acked = time.time()
        with self.lock:
            self.acked[key] = write
            self.maybe.pop(key, None)

    def unknown(self, key: bytes, write: Write) -> None:
        with self.lock:
            self.maybe.setdefault(key, []).append(write)

    def check_and_settle(self, client: redis.Redis) -> None:
        keys = sorted(set(self.acked) | set(self.maybe))
        if not keys:
            return
        start = time.time()
        actual = dict(zip(keys, client.mget(keys)))
        end = time.time()
        for key in keys:
            before = self.acked.get(key) or Write(None, 0, start)  # never written: absent
            writes = self.maybe.get(key, []) + [before]
            allowed = set().union(*(w.visible(start, end) for w in writes))
            assert actual[key] in allowed, (
                f"{key!r} holds {actual[key]!r:.60}; acknowledged "
                f"{self.acked[key].value if key in self.acked else None!r:.60}, "
                f"in flight {len(self.maybe.get(key, ()))}"
            )
            self.ttl_keys_checked += any(w.px for w in writes)
            settled = next((w for w in writes if w.value == actual[key]), None)
            if settled is None or actual[key] is None:
                settled = Write(None, 0, end)
            settled.acked = settled.acked or end
            self.acked[key] = settled
        self.maybe.clear()


def writer(server: Daemon, model: Model, seed: int, pipelined: bool, stop: threading.Event) -> None:
    """Each writer owns its keys (the pipelined one "p:", the other "s:"), so the order of
    its acknowledgements is the order the server applied its writes to them. Some writes
    carry a TTL: an hour (the key must survive every kill) or under half a second (it
    expires during the run, around kills and restarts)."""
    rng = random.Random(seed)
    prefix = b"p:" if pipelined else b"s:"
    client = server.client(socket_timeout=10)
    n = 0
    while not stop.is_set():
        batch = []
        for _ in range(rng.randrange(1, 20) if pipelined else 1):
            key = prefix + b"k%d" % rng.randrange(KEYS)
            value = (None if rng.random() < 0.2
                     else b"%d:%d:" % (seed, n) + b"x" * rng.randrange(300))
            roll = rng.random()
            if roll < 0.7 or value is None:
                px = 0
            else:
                px = 3_600_000 if roll < 0.85 else rng.randrange(50, 500)
            batch.append((key, Write(value, px, time.time())))
            n += 1
        for key, write in batch:
            model.unknown(key, write)
        try:
            if pipelined:
                pipe = client.pipeline(transaction=False)
                for key, write in batch:
                    if write.value is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, write.value, px=write.px or None)
                pipe.execute()
            else:
                key, write = batch[0]
                if write.value is None:
                    client.delete(key)
                else:
                    client.set(key, write.value, px=write.px or None)
        except (redis.ConnectionError, redis.TimeoutError):
            return  # killed: the batch stays "in flight"
        except redis.ResponseError as exc:
            assert "shutting down" in str(exc), exc
            return  # refused by the drain (a pipeline may be partly applied): "in flight"
        for key, write in batch:
            model.ack(key, write)


GROUPS, GROUP_SIZE = 20, 10
# Writes every key of a group, with work between the writes so that kills land inside it.
GROUP_SCRIPT = """
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1])
  local x = 0
  for j = 1, 3000 do x = x + j end
end
return #KEYS
"""


class Groups:
    """What the script writer was told: per group, the last acknowledged version. A
    script writes one version to all of a group's keys: after any crash they must hold
    one version (whole or absent, never half), no older than the acknowledged one."""

    def __init__(self) -> None:
        self.acked: dict[int, int] = {}
        self.checked = 0

    def check(self, client: redis.Redis) -> None:
        for group in range(GROUPS):
            values = client.mget([b"g:%d:%d" % (group, i) for i in range(GROUP_SIZE)])
            assert len(set(values)) == 1, f"group {group} holds half a script: {values}"
            acked = self.acked.get(group)
            if acked is not None:
                assert values[0] is not None and int(values[0]) >= acked, (group, values, acked)
            self.checked += 1


def script_writer(server: Daemon, groups: Groups, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    client = server.client(socket_timeout=10)
    write_group = client.register_script(GROUP_SCRIPT)
    version = seed * 1_000_000
    while not stop.is_set():
        group, version = rng.randrange(GROUPS), version + 1
        try:
            write_group(keys=[b"g:%d:%d" % (group, i) for i in range(GROUP_SIZE)],
                        args=[version])
        except (redis.ConnectionError, redis.TimeoutError):
            return
        except redis.ResponseError as exc:
            assert "shutting down" in str(exc), exc
            return
        groups.acked[group] = version


HASHES, HASH_FIELDS = 3, 300  # large hashes (element records past 128 fields)


class Hashes:
    """What the hash writer was told. Each hash is (re)created whole under a new
    generation (DEL + HSET of every field, in one MULTI), then changed a field at a time;
    every value is b"<generation>:<n>", n growing across writers. After any crash a hash
    holds fields of one generation only (an old field back from a deleted hash is a
    resurrection), no older than the acknowledged one, and in that generation every
    acknowledged field at least as new as acknowledged."""

    def __init__(self) -> None:
        self.generation: dict[bytes, int] = {}
        self.fields: dict[bytes, dict[bytes, int]] = {}
        self.checked = 0
        self.n = 0  # the last n written

    def check_and_settle(self, client: redis.Redis) -> None:
        for key in list(self.generation):
            held = {field: tuple(map(int, value.split(b":")))
                    for field, value in client.hgetall(key).items()}
            generations = {generation for generation, _ in held.values()}
            assert len(generations) == 1, f"{key!r} mixes generations {generations}"
            (generation,) = generations
            assert generation >= self.generation[key], (key, generation, self.generation[key])
            if generation == self.generation[key]:
                for field, n in self.fields[key].items():
                    assert field in held and held[field][1] >= n, (key, field, held.get(field), n)
            self.generation[key] = generation
            self.fields[key] = {field: n for field, (_, n) in held.items()}
            self.checked += 1


def hash_writer(server: Daemon, hashes: Hashes, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    client = server.client(socket_timeout=10)
    generation = seed * 1_000_000
    while not stop.is_set():
        key = b"hash:%d" % rng.randrange(HASHES)
        hashes.n += 1
        n = hashes.n
        try:
            if key not in hashes.generation or rng.random() < 0.03:
                generation += 1
                fields = {b"f%d" % i: b"%d:%d" % (generation, n) for i in range(HASH_FIELDS)}
                pipe = client.pipeline(transaction=True)
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                pipe.execute()
                hashes.generation[key] = generation
                hashes.fields[key] = dict.fromkeys(fields, n)
            else:
                field = b"f%d" % rng.randrange(HASH_FIELDS)
                client.hset(key, field, b"%d:%d" % (hashes.generation[key], n))
                hashes.fields[key][field] = n
        except (redis.ConnectionError, redis.TimeoutError):
            return
        except redis.ResponseError as exc:
            assert "shutting down" in str(exc), exc
            return


ZSETS, ZSET_MEMBERS = 4, 150  # sorted sets written whole by one ZADD (split past 128)


class Zsets:
    """Multi-member writes are one batch: each ZADD gives every member of a sorted set
    the same new score (a generation), and a ZUNIONSTORE copies it. After any crash a
    set and its copy each hold one generation (never members of two), the set one no
    older than acknowledged."""

    def __init__(self) -> None:
        self.acked: dict[int, int] = {}
        self.checked = 0

    def check(self, client: redis.Redis) -> None:
        for i in range(ZSETS):
            for key in (b"zset:%d" % i, b"zcopy:%d" % i):
                scores = {score for _, score in client.zrange(key, 0, -1, withscores=True)}
                assert len(scores) <= 1, f"{key!r} holds half a write: {sorted(scores)[:5]}"
                if key.startswith(b"zset") and i in self.acked:
                    assert scores and scores.pop() >= self.acked[i], (key, self.acked[i])
                self.checked += 1


def zset_writer(server: Daemon, zsets: Zsets, seed: int, stop: threading.Event) -> None:
    rng = random.Random(seed)
    client = server.client(socket_timeout=10)
    generation = seed * 1_000_000
    while not stop.is_set():
        i = rng.randrange(ZSETS)
        generation += 1
        try:
            client.zadd(b"zset:%d" % i, {b"m%d" % m: generation for m in range(ZSET_MEMBERS)})
            zsets.acked[i] = generation
            client.zunionstore(b"zcopy:%d" % i, [b"zset:%d" % i])
        except (redis.ConnectionError, redis.TimeoutError):
            return
        except redis.ResponseError as exc:
            assert "shutting down" in str(exc), exc
            return


def torture(tmp_path, kills: int | None, minutes: float | None) -> tuple[int, int]:
    # Compactions come from SIGUSR1 only, so that right after a restart nothing but
    # recovery has touched the directory and any leftover file is a real one.
    server = Daemon(tmp_path / "srv", ["--segment-size=65536", "--no-auto-compact"], tcp=False)
    rng = random.Random(20261123)
    model = Model()
    groups = Groups()
    hashes = Hashes()
    zsets = Zsets()
    deadline = time.monotonic() + minutes * 60 if minutes else None
    done = 0
    try:
        while (deadline is None and done < kills) or (deadline and time.monotonic() < deadline):
            server.start()
            client = server.client()
            model.check_and_settle(client)
            groups.check(client)
            hashes.check_and_settle(client)
            zsets.check(client)
            leftovers = [n for n in os.listdir(server.data_dir)
                         if n.endswith(".tmp") or n == "compaction"]
            assert not leftovers, f"kill {done}: stray files after restart: {leftovers}"
            stop = threading.Event()
            threads = [threading.Thread(target=writer, args=(server, model, done * 10 + i,
                                                             i == 0, stop), daemon=True)
                       for i in range(2)]
            threads.append(threading.Thread(target=script_writer,
                                            args=(server, groups, done + 1, stop), daemon=True))
            threads.append(threading.Thread(target=hash_writer,
                                            args=(server, hashes, done + 1, stop), daemon=True))
            threads.append(threading.Thread(target=zset_writer,
                                            args=(server, zsets, done + 1, stop), daemon=True))
            for t in threads:
                t.start()
            if rng.random() < 0.7:
                time.sleep(rng.uniform(0, 0.05))  # a random moment, not a synchronisation
                server.signal(signal.SIGUSR1)
            time.sleep(rng.uniform(0.02, 0.25))
            child = 0
            if rng.random() < 0.3:
                child = server.info("persistence")["compaction_child_pid"]
            if rng.random() < 0.25:  # kill it during a graceful drain
                server.signal(signal.SIGTERM)
                time.sleep(rng.uniform(0, 0.02))
            server.kill()  # SIGKILL (if the drain has not finished first)
            stop.set()
            for t in threads:
                t.join(10)
            if child:
                assert wait_gone(child, 5), "a compaction child outlived its server"
            server.close_clients()
            done += 1
        server.start()
        model.check_and_settle(server.client())
        groups.check(server.client())
        hashes.check_and_settle(server.client())
        zsets.check(server.client())
        assert len(model.acked) > KEYS // 2, "the writers barely wrote anything"
        assert len(zsets.acked) == ZSETS, "the sorted set writer barely wrote anything"
        assert len(hashes.generation) == HASHES and hashes.checked > HASHES
        assert all(client.object("encoding", key) == b"hashtable" for key in hashes.generation)
        assert len(groups.acked) > GROUPS // 2, "the script writer barely wrote anything"
    finally:
        server.cleanup()
    print(f"crash torture: {groups.checked} checks of groups written by scripts, "
          f"{len(groups.acked)} groups acknowledged, {hashes.checked} checks of large hashes, "
          f"{zsets.checked} of sorted sets written whole")
    return done, model.ttl_keys_checked


def test_crash_torture(tmp_path):
    minutes = float(os.environ.get("KVD_TORTURE_MINUTES", "0") or 0)
    done, ttl_checks = torture(tmp_path, KILLS_IN_TEST, minutes or None)
    print(f"crash torture: {done} SIGKILLs, every restart checked "
          f"({ttl_checks} checks of keys written with a TTL)")
    assert ttl_checks > 0
    assert done >= (KILLS_IN_TEST if not minutes else 1)
