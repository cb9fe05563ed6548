"""Differential testing: the same random command sequences to kvd and to a reference Redis
(`redis-server` when installed, else fakeredis), replies and errors compared one by one."""

from __future__ import annotations

import shutil

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kvd_process import Daemon, RedisServer

VALUES = st.sampled_from([
    b"", b"0", b"1", b"-1", b" 1", b"1 ", b"+1", b"01", b"-0", b"1.5", b"1e3",
    b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808",
    b"\x00\xff\r\n", b"x" * 10_000,
]) | st.binary(max_size=40)
KEYS = st.sampled_from([b"a", b"b", b"c", b"", b"\x00\r\n", b"key:1", b"key:2", b"k?y", b"[k]"])
INTS = st.sampled_from([b"1", b"-1", b"0", b"100", b" 1", b"x", b"9223372036854775807",
                        b"-9223372036854775808", b"9223372036854775808"])
PATTERNS = st.sampled_from([b"*", b"key:*", b"?", b"k[?]y", b"\\[k\\]", b"[^a]", b"*:[12]"])

COMMANDS = st.one_of(
    st.tuples(st.just(b"SET"), KEYS, VALUES),
    st.tuples(st.just(b"SET"), KEYS, VALUES, st.sampled_from([b"NX", b"XX", b"GET", b"KEEPTTL"])),
    st.tuples(st.just(b"SET"), KEYS, VALUES, st.just(b"NX"), st.just(b"XX")),
    st.tuples(st.just(b"GET"), KEYS),
    st.tuples(st.just(b"DEL"), KEYS, KEYS),
    st.tuples(st.just(b"EXISTS"), KEYS, KEYS),
    st.tuples(st.just(b"MGET"), KEYS, KEYS, KEYS),
    st.tuples(st.just(b"MSET"), KEYS, VALUES, KEYS, VALUES),
    st.tuples(st.just(b"MSET"), KEYS, VALUES, KEYS),
    st.tuples(st.sampled_from([b"INCR", b"DECR"]), KEYS),
    st.tuples(st.sampled_from([b"INCRBY", b"DECRBY"]), KEYS, INTS),
    st.tuples(st.just(b"APPEND"), KEYS, VALUES),
    st.tuples(st.just(b"STRLEN"), KEYS),
    st.tuples(st.sampled_from([b"GETSET", b"GETDEL"]), KEYS, *([VALUES] * 0)),
    st.tuples(st.just(b"GETSET"), KEYS, VALUES),
    st.tuples(st.just(b"DBSIZE")),
    st.tuples(st.just(b"KEYS"), PATTERNS),
    st.tuples(st.just(b"ECHO"), VALUES),
    st.tuples(st.just(b"PING")),
    st.tuples(st.just(b"PING"), VALUES),
    st.tuples(st.sampled_from([b"TYPE", b"TTL", b"PTTL"]), KEYS),
    st.tuples(st.just(b"UNLINK"), KEYS, KEYS),
    st.tuples(st.just(b"GETDEL"), KEYS),
    st.tuples(st.sampled_from([b"FLUSHDB", b"FLUSHALL"]), st.sampled_from([b"ASYNC", b"SYNC"])),
    st.tuples(st.just(b"SET"), KEYS, VALUES, st.just(b"GET"), st.sampled_from([b"NX", b"XX"])),
    st.tuples(st.just(b"ECHO")),
    st.tuples(st.just(b"EXISTS"), KEYS, KEYS, KEYS),
    st.tuples(st.just(b"SELECT"), st.sampled_from([b"0", b"-1", b"x"])),  # kvd has db 0 only
    st.tuples(st.just(b"NOSUCHCOMMAND"), KEYS),
    st.tuples(st.just(b"GET")),
    st.tuples(st.just(b"GET"), KEYS, KEYS),
    st.tuples(st.just(b"DEBUG"), st.sampled_from([b"SLEEP", b"nope"]), st.just(b"0")),  # off in both
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if shutil.which("redis-server"):
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        client = server.client()
        yield client, True
        client.close()
        server.stop()
    else:  # fakeredis's error texts differ from Redis's: compare only that it is an error
        import fakeredis

        yield fakeredis.FakeRedis(protocol=2), False


@pytest.fixture(scope="module")
def kvd_client(tmp_path_factory):
    server = Daemon(tmp_path_factory.mktemp("kvd"), [], tcp=False)
    server.start()
    yield server.client()
    server.cleanup()


def outcome(client: redis.Redis, command: tuple, exact: bool = True) -> object:
    try:
        result = client.execute_command(*command, NEVER_DECODE=True)
    except redis.ResponseError as exc:
        result = exc
    return comparable(command, result, exact)


def comparable(command: tuple, result: object, exact: bool) -> object:
    """A reply as the two servers must agree on it: errors by text (or only as errors,
    against fakeredis), KEYS in any order."""
    if isinstance(result, redis.ResponseError):
        return ("error", str(result) if exact else "")
    if command[0] == b"KEYS":
        return sorted(result)
    return result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(COMMANDS, min_size=1, max_size=25))
def test_kvd_answers_like_redis(kvd_client, reference, commands):
    reference, exact = reference
    for client in (kvd_client, reference):
        client.flushall()
        client.config_resetstat()
    for command in commands:
        expected = outcome(reference, command, exact)
        actual = outcome(kvd_client, command, exact)
        assert actual == expected, f"{command!r:.200}: kvd {actual!r:.200} vs Redis {expected!r:.200}"
    if exact:  # and the same reads count as keyspace hits and misses
        assert lookups(kvd_client) == lookups(reference), commands


def lookups(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("stats")
    return stats["keyspace_hits"], stats["keyspace_misses"]


def pipelined(client: redis.Redis, commands: list[tuple], exact: bool = True) -> list:
    """The commands sent as one pipeline (so the server reads them in one batch)."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command, NEVER_DECODE=True)
    return [comparable(command, result, exact)
            for command, result in zip(commands, pipe.execute(raise_on_error=False))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(COMMANDS, min_size=1, max_size=40))
def test_kvd_answers_pipelines_like_redis(kvd_client, reference, commands):
    reference, exact = reference
    kvd_client.flushall()
    reference.flushall()
    expected = pipelined(reference, commands, exact)
    actual = pipelined(kvd_client, commands, exact)
    assert actual == expected, f"{commands!r:.300}: kvd {actual!r:.300} vs Redis {expected!r:.300}"
