"""Concurrent clients across compactions and a graceful drain, some of their operations in
transactions: every completed operation is linearizable; operations cut off by the drain were
applied and answered, or cleanly refused."""

from __future__ import annotations

import math
import random
import signal
import threading
import time

import pytest
import redis

from tests.kvd_process import wait_for

from .linearizability import Op, linearizable

KEYS = [b"reg:%d" % i for i in range(6)]


def test_the_checker_accepts_linearizable_and_rejects_other_histories():
    k = b"k"
    ok = [Op(k, "write", b"1", 0, 2), Op(k, "read", b"1", 1, 3), Op(k, "read", None, 0.5, 1.5)]
    assert linearizable(ok)
    stale = [Op(k, "write", b"1", 0, 1), Op(k, "read", None, 2, 3)]  # read after the write ended
    assert not linearizable(stale)
    flip = [Op(k, "write", b"1", 0, 1), Op(k, "write", b"2", 2, 3),
            Op(k, "read", b"2", 4, 5), Op(k, "read", b"1", 6, 7)]  # goes back in time
    assert not linearizable(flip)
    unanswered = [Op(k, "write", b"1", 0), Op(k, "read", None, 1, 2), Op(k, "read", b"1", 3, 4)]
    assert linearizable(unanswered)  # took effect between the reads
    lost = [Op(k, "write", b"1", 0, 1), Op(k, "read", b"1", 2, 3), Op(k, "read", None, 4, 5)]
    assert not linearizable(lost)  # an acknowledged write must not vanish


class Client(threading.Thread):
    def __init__(self, server, seed: int, history: list, lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.server, self.rng, self.history, self.lock = server, random.Random(seed), history, lock
        self.seed = seed
        self.refused = 0
        self.transactions = 0

    def run(self) -> None:
        client = self.server.client(socket_timeout=30)
        clock = time.monotonic
        n = 0
        while True:
            # One to three operations on distinct keys; more than one is a transaction
            # (MULTI ... EXEC): each of its operations takes effect at the same instant.
            keys = self.rng.sample(KEYS, self.rng.choice([1, 1, 1, 2, 3]))
            ops = [(key, b"%d:%d" % (self.seed, n + i) if self.rng.random() < 0.5 else None)
                   for i, key in enumerate(keys)]
            n += len(ops)
            invoked = clock()
            try:
                if len(ops) == 1:
                    key, value = ops[0]
                    results = [client.set(key, value) if value else client.get(key)]
                else:
                    pipe = client.pipeline(transaction=True)
                    for key, value in ops:
                        pipe.set(key, value) if value else pipe.get(key)
                    results = pipe.execute()
            except redis.ResponseError as exc:
                assert "shutting down" in str(exc), exc
                self.refused += 1  # cleanly refused: not applied (checked at the end)
                with self.lock:
                    self.history += [("refused", key, value) for key, value in ops if value]
                continue
            except (redis.ConnectionError, redis.TimeoutError):
                with self.lock:  # cut off: its writes may or may not have been applied
                    self.history += [Op(key, "write", value, invoked) for key, value in ops
                                     if value]
                return
            returned = clock()
            self.transactions += len(ops) > 1
            with self.lock:
                for (key, value), result in zip(ops, results):
                    self.history.append(Op(key, "write" if value else "read",
                                           value if value else result, invoked, returned))


@pytest.mark.slow
def test_concurrent_histories_across_compactions_and_a_drain_are_linearizable(make_foreground,
                                                                              make_daemon):
    server = make_foreground("--segment-size=32768", "--drain-timeout", "5")
    history: list = []
    lock = threading.Lock()
    clients = [Client(server, seed, history, lock) for seed in range(4)]
    for c in clients:
        c.start()
    for _ in range(6):  # compactions while the clients run (the sleeps pace them)
        time.sleep(0.15)
        server.signal(signal.SIGUSR1)
    # On a loaded machine the compactions may still be running: the drain must come after
    # one finished, or the history would not span a compaction.
    wait_for(lambda: info_compactions(server) >= 1, 60, what="a finished compaction")
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
    for c in clients:
        c.join(30)
        assert not c.is_alive()
    ops = [op for op in history if isinstance(op, Op)]
    refused = [entry for entry in history if not isinstance(entry, Op)]
    after = make_daemon(subdir="fg")  # the same data, read back after the restart
    final = time.monotonic()
    client = after.client()
    for key in KEYS:
        ops.append(Op(key, "read", client.get(key), final, final + 1))
    completed = sum(op.returned != math.inf for op in ops)
    assert completed > 200, f"only {completed} operations completed"
    assert linearizable(ops), "the history of some key has no linearization"
    assert sum(c.transactions for c in clients) > 20, "too few transactions completed"
    # A refused write was never applied: no read anywhere saw its unique value.
    seen = {op.value for op in ops if op.kind == "read"}
    assert not any(value in seen for _, _, value in refused)


def info_compactions(server) -> int:
    return server.log().count("compaction done in")
