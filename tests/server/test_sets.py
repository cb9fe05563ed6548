"""Sets against real daemons: redis-py's set calls, their encodings as Redis reports them,
a large set's one-record writes, and that sets survive SIGKILL, restart and compaction
on both engines. (Replies compared with Redis's, mixed with the other types, are in
tests/torture/test_types_differential.py.)"""

from __future__ import annotations

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from server.commands.hashes import all_integers
from server.protocol import parse_strict_int
from tests.kvd_process import check_through_kill_compaction_and_restart


def test_redis_py_set_calls(kvd):
    client = kvd.client(decode_responses=True)
    assert client.sadd("tags", "a", "b", "c") == 3 and client.sadd("tags", "a") == 0
    assert client.smembers("tags") == {"a", "b", "c"} and client.scard("tags") == 3
    assert client.sismember("tags", "a") and client.smismember("tags", ["a", "z"]) == [1, 0]
    client.sadd("other", "b", "c", "d")
    assert client.sinter("tags", "other") == {"b", "c"}
    assert client.sunion("tags", "other") == {"a", "b", "c", "d"}
    assert client.sdiff("tags", "other") == {"a"}
    assert client.sinterstore("both", ["tags", "other"]) == 2
    assert client.sintercard(2, ["tags", "other"], limit=1) == 1
    assert client.smove("tags", "other", "a") and client.smembers("other") == {"a", "b", "c", "d"}
    assert client.srem("tags", "b", "c") == 2 and client.exists("tags") == 0  # emptied: gone
    assert client.spop("both") in {"b", "c"} and client.srandmember("other") in "abcd"
    assert sorted(client.sscan_iter("other")) == ["a", "b", "c", "d"]
    client.set("s", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.sadd("s", "x")
    assert list(client.scan_iter(_type="set")) != []


def test_encodings_as_redis_reports_them(kvd):
    client = kvd.client(protocol=2)
    client.sadd("ints", *range(512))
    assert client.object("encoding", "ints") == b"intset"
    assert client.smembers("ints") == {b"%d" % i for i in range(512)}
    client.sadd("ints", 512)  # one past set-max-intset-entries
    assert client.object("encoding", "ints") == b"hashtable"
    client.sadd("mixed", 1, "x")
    assert client.object("encoding", "mixed") == b"hashtable"


def test_one_member_of_a_large_set_is_one_small_write(kvd):
    client = kvd.client(protocol=2)
    client.sadd("big", *[b"member:%06d" % i for i in range(20_000)])
    for write in (lambda: client.sadd("big", "one more"), lambda: client.srem("big", "one more"),
                  lambda: client.smove("big", "elsewhere", b"member:000001")):
        before = client.info("persistence")["total_bytes"]
        write()
        assert client.info("persistence")["total_bytes"] - before < 250
    assert client.scard("big") == 19_999 and client.sismember("elsewhere", b"member:000001")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_sets_survive_sigkill_restart_and_compaction(make_daemon, engine):
    server = make_daemon("--engine", engine)
    client = server.client(protocol=2)
    client.sadd("big", *[b"m%d" % i for i in range(3000)])
    client.srem("big", *[b"m%d" % i for i in range(0, 3000, 3)])
    client.sadd("small", 3, 1, 2)
    client.sadd("gone", *[b"old%d" % i for i in range(1000)])
    client.delete("gone")
    client.sadd("gone", "new")
    client.expire("small", 3600)
    expected = client.smembers("big")

    def check(client: redis.Redis) -> None:
        assert client.smembers("big") == expected and len(expected) == 2000
        assert client.smembers("small") == {b"1", b"2", b"3"} and client.ttl("small") > 0
        assert client.object("encoding", "small") == b"intset"
        assert client.smembers("gone") == {b"new"}

    check_through_kill_compaction_and_restart(server, check)


def is_integer(member: bytes) -> bool:
    """The model: Redis's string2ll round trip -- a 64-bit integer that prints back as
    the same bytes."""
    number = parse_strict_int(member) if len(member) <= 20 else None
    return number is not None and b"%d" % number == member


EDGES = [b"0", b"-0", b"00", b"01", b"+1", b" 1", b"1 ", b"", b"-", b"1\n2", b"\n",
         b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
         b"-9223372036854775809", b"12345678901234567890", "\u0661".encode()]
MEMBERS = st.one_of(st.sampled_from(EDGES), st.integers(-(1 << 64), 1 << 64).map(
    lambda n: b"%d" % n), st.binary(max_size=21))


@settings(max_examples=500, deadline=None)
@given(st.lists(MEMBERS, max_size=6))
def test_the_intset_check_of_a_whole_set_agrees_with_the_check_of_each_member(members):
    """all_integers (one regular expression over the members joined by newlines) says
    what is_integer (Redis's string2ll round trip, member by member) says of them all."""
    assert all_integers(members) == all(map(is_integer, members))
