"""A job queue under SIGKILL: producers RPUSH numbered jobs, consumers BLMOVE them to a
processing list and LREM them when done (the reliable-queue pattern RQ and others use),
and the daemon is killed at random moments and restarted, many times.

After every restart each job must be in exactly one place: never lost (a job whose push
was acknowledged is in the queue, in processing, or was removed by a consumer), never
duplicated, never back in the queue once a consumer was handed it, never back at all
once its removal was acknowledged.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest
import redis

from tests.kvd_process import Daemon

pytestmark = pytest.mark.slow

KILLS = 20
QUEUE, PROCESSING = b"jobs", b"processing"


class Ledger:
    """What the clients were told, and what they sent without an answer (in flight)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pushed: set[bytes] = set()  # acknowledged pushes
        self.pushing: set[bytes] = set()  # sent, not acknowledged
        self.handed: set[bytes] = set()  # BLMOVE replies received
        self.removed: set[bytes] = set()  # acknowledged LREMs
        self.removing: set[bytes] = set()  # sent, not acknowledged
        self.checks = 0

    def check(self, client: redis.Redis) -> None:
        queue, processing = client.lrange(QUEUE, 0, -1), client.lrange(PROCESSING, 0, -1)
        held = queue + processing
        assert len(held) == len(set(held)), "a job is in two places (or twice in one)"
        with self.lock:
            unknown = set(held) - self.pushed - self.pushing
            assert not unknown, f"jobs nobody pushed: {sorted(unknown)[:5]}"
            lost = self.pushed - set(held) - self.removed - self.removing
            assert not lost, f"acknowledged jobs lost: {sorted(lost)[:5]}"
            back = self.handed & set(queue)
            assert not back, f"jobs handed out are back in the queue: {sorted(back)[:5]}"
            resurrected = self.removed & set(held)
            assert not resurrected, f"removed jobs came back: {sorted(resurrected)[:5]}"
            # settle what was in flight: the store says how it ended
            self.pushed |= self.pushing & set(held)
            self.pushing.clear()
            self.removed |= self.removing - set(held)
            self.removing.clear()
            self.checks += 1


def producer(server: Daemon, ledger: Ledger, name: bytes, stop: threading.Event) -> None:
    client = server.client(socket_timeout=10)
    n = 0
    while not stop.is_set():
        job = b"%s:%d" % (name, n)
        n += 1
        with ledger.lock:
            ledger.pushing.add(job)
        try:
            client.rpush(QUEUE, job)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return
        with ledger.lock:
            ledger.pushing.discard(job)
            ledger.pushed.add(job)


def consumer(server: Daemon, ledger: Ledger, stop: threading.Event) -> None:
    client = server.client(socket_timeout=10)
    while not stop.is_set():
        try:
            job = client.blmove(QUEUE, PROCESSING, 0.2, "LEFT", "RIGHT")
            if job is None:
                continue
            with ledger.lock:
                ledger.handed.add(job)
                ledger.removing.add(job)
            removed = client.lrem(PROCESSING, 1, job)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return
        assert removed == 1, f"{job!r} handed out but not in processing"
        with ledger.lock:
            ledger.removing.discard(job)
            ledger.removed.add(job)


def test_a_job_queue_survives_sigkill_without_losing_or_repeating_a_job(tmp_path):
    server = Daemon(tmp_path / "srv", ["--segment-size=65536"], tcp=False)
    rng = random.Random(20261202)
    ledger = Ledger()
    try:
        for kill in range(KILLS):
            server.start()
            ledger.check(server.client())
            stop = threading.Event()
            threads = [threading.Thread(target=producer, daemon=True,
                                        args=(server, ledger, b"p%d.%d" % (i, kill), stop))
                       for i in range(2)]
            threads += [threading.Thread(target=consumer, args=(server, ledger, stop),
                                         daemon=True) for _ in range(2)]
            for thread in threads:
                thread.start()
            if rng.random() < 0.3:
                server.signal(signal.SIGUSR1)  # a compaction too, now and then
            time.sleep(rng.uniform(0.05, 0.4))  # a random moment, not a synchronisation
            server.kill()
            stop.set()
            for thread in threads:
                thread.join(15)
            server.close_clients()
        server.start()
        ledger.check(server.client())
    finally:
        server.cleanup()
    print(f"queue torture: {KILLS} SIGKILLs, {len(ledger.pushed)} jobs pushed, "
          f"{len(ledger.removed)} done, {ledger.checks} checks")
    assert len(ledger.removed) > 100 and len(ledger.pushed) > 200
