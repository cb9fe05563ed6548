"""Sorted sets against real daemons: a leaderboard and `limits`' rate limiters through
redis-py on its defaults, what a score change costs on disk, the blocking pops, and that
sorted sets survive SIGKILL, restart and compaction on both engines. (Replies compared
with Redis's, mixed with the other types, are in tests/torture/test_types_differential.py.)
"""

from __future__ import annotations

import threading

import pytest
import redis
from limits import parse, storage, strategies

from tests.kvd_process import check_through_kill_compaction_and_restart, wait_for


def test_a_leaderboard(kvd):
    client = kvd.client(decode_responses=True)
    client.zadd("board", {"ada": 10, "bob": 7, "cy": 12})
    assert client.zincrby("board", 5, "bob") == 12.0
    assert client.zrevrange("board", 0, 1, withscores=True) == [("cy", 12.0), ("bob", 12.0)]
    assert client.zrank("board", "ada") == 0 and client.zrevrank("board", "ada") == 2
    assert client.zscore("board", "ada") == 10.0 and client.zcard("board") == 3
    assert client.zrangebyscore("board", 11, "+inf") == ["bob", "cy"]
    assert client.zcount("board", "(10", 12) == 2
    assert client.zpopmin("board") == [("ada", 10.0)]
    assert client.zadd("board", {"bob": 1}, gt=True) == 0 and client.zscore("board", "bob") == 12
    assert client.object("encoding", "board") == "listpack"
    client.set("s", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.zadd("s", {"x": 1})


def test_limits_rate_limiters(kvd):
    """The `limits` library's strategies, on a kvd URL with a database number."""
    limiter_storage = storage.RedisStorage(f"unix://{kvd.socket}?db=2")
    five = parse("5/minute")
    for strategy in (strategies.MovingWindowRateLimiter, strategies.FixedWindowRateLimiter,
                     strategies.SlidingWindowCounterRateLimiter):
        limiter = strategy(limiter_storage)
        name = strategy.__name__
        assert [limiter.hit(five, name) for _ in range(7)] == [True] * 5 + [False] * 2, name
        assert limiter.get_window_stats(five, name).remaining == 0


def test_a_score_change_in_a_large_sorted_set_is_one_small_write(kvd):
    client = kvd.client(protocol=2)
    client.zadd("big", {b"member:%06d" % i: i for i in range(20_000)})
    assert client.object("encoding", "big") == b"skiplist"
    for write in (lambda: client.zincrby("big", 0.5, b"member:000100"),
                  lambda: client.zadd("big", {"new": -1}), lambda: client.zrem("big", "new"),
                  lambda: client.zpopmax("big")):
        before = client.info("persistence")["total_bytes"]
        write()
        assert client.info("persistence")["total_bytes"] - before < 250
    assert client.zrangebyscore("big", 100, 101, withscores=True) == [
        (b"member:000100", 100.5), (b"member:000101", 101.0)]
    assert client.zrank("big", b"member:000100") == 100 and client.zcard("big") == 19_999


def test_bzpopmin_waits_and_is_served(kvd):
    waiter, other = kvd.client(protocol=2), kvd.client(protocol=2)
    got: list = []
    thread = threading.Thread(target=lambda: got.append(waiter.bzpopmin(["z1", "z2"], 10)))
    thread.start()
    wait_for(lambda: other.info("clients")["blocked_clients"] == 1, 10, "BZPOPMIN to block")
    other.zadd("z2", {"low": 1, "high": 2})
    thread.join(10)
    assert got == [(b"z2", b"low", 1.0)] and other.zrange("z2", 0, -1) == [b"high"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_sorted_sets_survive_sigkill_restart_and_compaction(make_daemon, engine):
    server = make_daemon("--engine", engine)
    client = server.client(protocol=2)
    client.zadd("big", {b"m%d" % i: i % 97 for i in range(3000)})
    client.zincrby("big", 1000, "m5")
    client.zremrangebyscore("big", 10, 20)
    client.zadd("small", {"a": 1.5, "b": -2})
    client.zadd("gone", {b"old%d" % i: i for i in range(1000)})
    client.delete("gone")
    client.zadd("gone", {"new": 1})
    expected = client.zrange("big", 0, -1, withscores=True)

    def check(client: redis.Redis) -> None:
        assert client.zrange("big", 0, -1, withscores=True) == expected
        assert client.zrevrange("big", 0, 0) == [b"m5"] and client.zrank("big", "m5") == \
            len(expected) - 1
        assert client.zrange("small", 0, -1, withscores=True) == [(b"b", -2.0), (b"a", 1.5)]
        assert client.zrange("gone", 0, -1) == [b"new"]

    check_through_kill_compaction_and_restart(server, check)
