"""Lists against real daemons: redis-py's list calls, what a push or a pop costs on disk,
and that a list -- its elements, in order, its TTL -- survives SIGKILL, restart and
compaction on both engines. (Replies compared with Redis's, and mixed with the other
types, are in tests/torture/test_types_differential.py.)"""

from __future__ import annotations

import pytest
import redis

from tests.kvd_process import check_through_kill_compaction_and_restart


def test_redis_py_list_calls(kvd):
    client = kvd.client(decode_responses=True)
    assert client.rpush("jobs", "a", "b", "c") == 3
    assert client.lpush("jobs", "z") == 4
    assert client.lrange("jobs", 0, -1) == ["z", "a", "b", "c"]
    assert client.lindex("jobs", -1) == "c" and client.llen("jobs") == 4
    assert client.lmove("jobs", "doing", "LEFT", "RIGHT") == "z"
    assert client.rpoplpush("jobs", "doing") == "c"
    assert client.lrange("doing", 0, -1) == ["c", "z"]
    assert client.lrem("doing", 1, "z") == 1
    assert client.lpop("jobs", 5) == ["a", "b"]
    assert client.exists("jobs") == 0  # an emptied list is gone
    assert client.lmpop(2, "jobs", "doing", direction="LEFT") == ["doing", ["c"]]
    assert client.type("doing") == "none"
    client.rpush("l", *"abcabc")
    assert client.lpos("l", "b", rank=-1) == 4 and client.lpos("l", "c", count=0) == [2, 5]
    assert client.linsert("l", "BEFORE", "c", "X") == 7
    assert client.ltrim("l", 1, 3) and client.lrange("l", 0, -1) == ["b", "X", "c"]
    client.set("s", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.lpush("s", "x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.get("l")
    assert client.object("encoding", "l") == "quicklist"
    assert list(client.scan_iter(_type="list")) == ["l"]


def test_a_push_or_a_pop_is_one_small_write(kvd):
    """A queue of 20,000 jobs: pushing one more or popping one appends one record of the
    element, not the list; LINDEX far inside reads one record."""
    client = kvd.client(protocol=2)
    client.rpush("queue", *[b"job:%06d" % i + b"x" * 100 for i in range(20_000)])
    for write in (lambda: client.rpush("queue", "one more"), lambda: client.lpop("queue"),
                  lambda: client.rpop("queue"), lambda: client.lset("queue", 10_000, "x"),
                  lambda: client.lmove("queue", "queue", "LEFT", "RIGHT")):
        before = client.info("persistence")["total_bytes"]
        write()
        assert client.info("persistence")["total_bytes"] - before < 300
    assert client.lindex("queue", 9_999) == b"x" and client.llen("queue") == 19_999
    assert client.lindex("queue", -1) == b"job:000001" + b"x" * 100


def test_watch_sees_a_push(kvd):
    client, other = kvd.client(protocol=2), kvd.client(protocol=2)
    client.rpush("l", "a")
    with client.pipeline() as pipe:
        pipe.watch("l")
        other.rpush("l", "b")
        pipe.multi()
        pipe.lpop("l")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.lrange("l", 0, -1) == [b"a", b"b"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_lists_survive_sigkill_restart_and_compaction(make_daemon, engine):
    server = make_daemon("--engine", engine)
    client = server.client(protocol=2)
    client.rpush("q", *[b"%d" % i for i in range(3000)])
    client.lpush("q", b"first")
    for _ in range(500):
        client.lmove("q", "q", "LEFT", "RIGHT")  # rotate: positions move on
    client.ltrim("q", 10, -10)
    client.expire("q", 3600)
    client.rpush("gone", *[b"old" for _ in range(1000)])
    client.delete("gone")
    client.rpush("gone", "new")
    client.rpush("middle", "a", "b", "c")
    client.linsert("middle", "AFTER", "a", "inserted")
    expected = client.lrange("q", 0, -1)
    def check(client: redis.Redis) -> None:
        assert client.lrange("q", 0, -1) == expected and 0 < client.ttl("q") <= 3600
        assert client.lindex("q", 0) == expected[0] and client.lindex("q", -1) == expected[-1]
        assert client.lrange("gone", 0, -1) == [b"new"]
        assert client.lrange("middle", 0, -1) == [b"a", b"inserted", b"b", b"c"]

    check_through_kill_compaction_and_restart(server, check)
    client = server.client(protocol=2)
    client.lpush("q", "after restart")  # the ends are known again after a restart
    assert client.lpop("q") == b"after restart" and client.rpop("q") == expected[-1]
