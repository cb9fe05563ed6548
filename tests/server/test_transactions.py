"""MULTI/EXEC/WATCH through redis-py's defaults against a real daemon: transactional
pipelines, optimistic locking with retries, aborts, isolation, and the drain."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from tests.kvd_process import wait_for


@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_the_default_pipeline_is_a_transaction(make_daemon, engine):
    kvd = make_daemon("--engine", engine)
    r = kvd.client()
    pipe = r.pipeline()  # transaction=True: MULTI ... EXEC
    pipe.set("a", "1").incr("a").get("a").set("b", "x", ex=100).ttl("b")
    assert pipe.execute() == [True, 2, b"2", True, 100]
    with pytest.raises(redis.ResponseError, match="value is not an integer"):
        r.pipeline().set("s", "text").incr("s").execute()  # a runtime error: the rest ran
    assert r.get("s") == b"text"


def test_an_error_while_queueing_aborts_the_whole_transaction(kvd):
    r = kvd.client()
    with kvd.raw() as sock:
        sock.sendall(b"MULTI\r\nSET k v\r\nNOPE\r\nGET\r\nEXEC\r\nEXISTS k\r\n")
        replies = b""
        while not replies.endswith(b":0\r\n"):
            replies += sock.recv(65536)
    assert replies == (b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOPE', with args beginning "
                       b"with: \r\n-ERR wrong number of arguments for 'get' command\r\n"
                       b"-EXECABORT Transaction discarded because of previous errors.\r\n:0\r\n")
    assert r.exists("k") == 0


def test_watch_makes_exec_fail_after_any_modification(kvd):
    r, other = kvd.client(), kvd.client()
    r.set("balance", 10)

    def spend(pipe: redis.client.Pipeline) -> None:
        balance = int(pipe.get("balance"))
        if not hasattr(spend, "raced"):  # the first attempt races another client
            spend.raced = True
            other.incr("balance")
        pipe.multi()
        pipe.set("balance", balance - 3)

    assert r.transaction(spend, "balance") == [True]
    assert r.get("balance") == b"8"  # 10 + 1 by the other client, then - 3 on the retry
    for modify in (lambda: other.delete("w"), lambda: other.expire("w", 100),
                   lambda: other.flushall(), lambda: other.set("w", "same"),
                   lambda: _pipelined_sets(other, ["a", "w", "b"])):
        r.set("w", "v")
        pipe = r.pipeline()
        pipe.watch("w")
        modify()
        pipe.multi()
        pipe.set("w", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    r.set("w", "v")
    pipe = r.pipeline()
    pipe.watch("w")
    other.get("w")  # reading is no modification, nor is a compaction
    other.execute_command("COMPACT")
    pipe.multi()
    pipe.set("w", "mine")
    assert pipe.execute() == [True]


def _pipelined_sets(client: redis.Redis, keys: list[str]) -> None:
    """Plain SETs in one pipeline: the gate writes them as one run."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "piped")
    assert pipe.execute() == [True] * len(keys)


def test_a_watched_key_expiring_fails_the_exec(kvd):
    r = kvd.client()
    r.set("lease", "v", px=100)
    pipe = r.pipeline()
    pipe.watch("lease")
    deadline = r.pexpiretime("lease") / 1000
    wait_for(lambda: time.time() > deadline + 0.01, 5, "the wall clock to pass the deadline")
    pipe.multi()
    pipe.set("other", "x")
    with pytest.raises(redis.WatchError):
        pipe.execute()


def test_nothing_of_another_client_runs_inside_an_exec(kvd):
    """Concurrent INCRs by transactions and plain clients: every transaction sees its own
    two increments adjacent, and none is lost."""
    r = kvd.client()
    r.set("n", 0)
    results: list = []

    def transactions() -> None:
        client = kvd.client()
        for _ in range(200):
            results.append(client.pipeline().incr("n").incr("n").execute())

    def plain() -> None:
        client = kvd.client()
        for _ in range(400):
            client.incr("n")

    threads = [threading.Thread(target=transactions) for _ in range(2)] + [
        threading.Thread(target=plain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert int(r.get("n")) == 2 * 200 * 2 + 2 * 400
    assert all(second == first + 1 for first, second in results)


def test_transaction_errors_and_limits(make_daemon):
    kvd = make_daemon("--max-transaction-size", "1000")
    r = kvd.client()
    for command, text in ((("EXEC",), "EXEC without MULTI"),
                          (("DISCARD",), "DISCARD without MULTI")):
        with pytest.raises(redis.ResponseError, match=text):
            r.execute_command(*command)
    with kvd.raw() as sock:
        sock.sendall(b"MULTI\r\nMULTI\r\nWATCH k\r\nSHUTDOWN\r\nSET k " + b"x" * 2000
                     + b"\r\nEXEC\r\n")
        replies = b""
        while not replies.endswith(b"errors.\r\n"):
            replies += sock.recv(65536)
    assert replies == (
        b"+OK\r\n-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n"
        b"-ERR Command not allowed inside a transaction\r\n-ERR transaction too large (2004 "
        b"bytes queued; --max-transaction-size is 1000)\r\n"
        b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    assert r.ping() is True  # the server is fine, and so is this connection


def test_a_transaction_queued_when_the_drain_begins_is_refused_whole(make_daemon):
    kvd = make_daemon("--drain-timeout", "30")
    with kvd.raw() as sock:
        sock.sendall(b"MULTI\r\nSET t 1\r\n")
        assert sock.recv(100) == b"+OK\r\n+QUEUED\r\n"
        kvd.signal(signal.SIGTERM)  # the drain begins while the transaction is open
        wait_for(lambda: not os.path.exists(kvd.socket), 10, "the drain to begin")
        sock.sendall(b"EXEC\r\n")
        assert sock.recv(100) == b"-ERR server is shutting down\r\n"
    kvd.wait_exit()
    kvd.start()
    assert kvd.client().exists("t") == 0
