"""Collections against redis-server: random sequences of hash, list, string, key and
database commands on the same few keys (WRONGTYPE both ways, overwrites, RENAME, MOVE,
SWAPDB...), with `hash-max-listpack-entries` at 4 on both servers so that most hashes
are split into element records on kvd (and are hashtables in Redis), compared after
every step -- the reply, then both databases whole.

A hashtable's order is Redis's own, so replies listing fields are compared as sets,
HSCAN by what a full iteration returns, HRANDFIELD by its size and membership.
"""

from __future__ import annotations

import shutil

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kvd_process import Daemon, RedisServer

pytestmark = pytest.mark.slow

KEYS = [b"h1", b"h2", b"s"]
KEY = st.sampled_from(KEYS)
FIELD = st.sampled_from([b"f%d" % i for i in range(10)] + [b""])
VALUE = st.sampled_from([b"1", b"-7", b"x", b"", b"v" * 70, b"12345678901234567890"])
SCORE = st.sampled_from([b"1", b"2.5", b"-3", b"0", b"1e3", b"inf", b"-inf", b"x", b"0.1"])
SCORE_BOUND = st.sampled_from([b"-inf", b"+inf", b"1", b"(1", b"2.5", b"(0", b"x"])
LEX_BOUND = st.sampled_from([b"-", b"+", b"[a", b"(a", b"[b", b"(1", b"x"])
MEMBER = st.sampled_from([b"1", b"2", b"10", b"-5", b"a", b"b", b"", b"01"])
INDEX = st.sampled_from([b"0", b"1", b"-1", b"-3", b"2", b"10", b"-10"])
SIDE = st.sampled_from([b"LEFT", b"RIGHT"])
SPLIT_AT = 4  # hash-max-listpack-entries on both servers

COMMANDS = st.one_of(
    st.builds(lambda k, pairs: (b"HSET", k, *[p for pair in pairs for p in pair]), KEY,
              st.lists(st.tuples(FIELD, VALUE), min_size=1, max_size=8)),
    st.builds(lambda k, fields: (b"HDEL", k, *fields), KEY, st.lists(FIELD, min_size=1,
                                                                      max_size=5)),
    st.tuples(st.just(b"HSETNX"), KEY, FIELD, VALUE),
    st.tuples(st.just(b"HINCRBY"), KEY, FIELD, st.sampled_from([b"1", b"-5", b"x"])),
    st.tuples(st.just(b"HINCRBYFLOAT"), KEY, FIELD, st.sampled_from([b"1.5", b"-0.25"])),
    st.tuples(st.sampled_from([b"HGET", b"HEXISTS", b"HSTRLEN"]), KEY, FIELD),
    st.builds(lambda k, fields: (b"HMGET", k, *fields), KEY, st.lists(FIELD, min_size=1,
                                                                       max_size=4)),
    st.tuples(st.sampled_from([b"HGETALL", b"HKEYS", b"HVALS", b"HLEN", b"TYPE", b"GET",
                               b"HSCAN", b"DEL", b"PERSIST", b"TTL"]), KEY),
    st.tuples(st.just(b"HRANDFIELD"), KEY, st.sampled_from([b"3", b"-3", b"20"])),
    st.tuples(st.just(b"SET"), KEY, VALUE),
    st.tuples(st.just(b"EXPIRE"), KEY, st.just(b"1000")),
    st.tuples(st.sampled_from([b"RENAME", b"RENAMENX"]), KEY, KEY),
    st.builds(lambda a, b, replace: (b"COPY", a, b, *replace), KEY, KEY,
              st.sampled_from([(), (b"REPLACE",), (b"DB", b"1"), (b"DB", b"1", b"REPLACE")])),
    st.tuples(st.just(b"MOVE"), KEY, st.just(b"1")),
    st.just((b"SWAPDB", b"0", b"1")),
    st.just((b"FLUSHDB",)),
    # Lists
    st.builds(lambda c, k, values: (c, k, *values),
              st.sampled_from([b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX"]), KEY,
              st.lists(VALUE, min_size=1, max_size=5)),
    st.builds(lambda c, k, n: (c, k, *n), st.sampled_from([b"LPOP", b"RPOP"]), KEY,
              st.sampled_from([(), (b"0",), (b"2",), (b"10",), (b"-1",), (b"x",)])),
    st.tuples(st.sampled_from([b"LLEN", b"TYPE"]), KEY),
    st.tuples(st.just(b"LINDEX"), KEY, INDEX),
    st.tuples(st.just(b"LSET"), KEY, INDEX, VALUE),
    st.tuples(st.sampled_from([b"LRANGE", b"LTRIM"]), KEY, INDEX, INDEX),
    st.tuples(st.just(b"LINSERT"), KEY, st.sampled_from([b"BEFORE", b"AFTER", b"x"]), VALUE,
              VALUE),
    st.tuples(st.just(b"LREM"), KEY, st.sampled_from([b"0", b"1", b"-2"]), VALUE),
    st.builds(lambda k, v, o: (b"LPOS", k, v, *o), KEY, VALUE,
              st.sampled_from([(), (b"RANK", b"-1"), (b"COUNT", b"0"), (b"RANK", b"2", b"COUNT",
                                                                       b"2"), (b"MAXLEN", b"2"),
                               (b"RANK", b"0"), (b"COUNT", b"-1")])),
    st.tuples(st.just(b"LMOVE"), KEY, KEY, SIDE, SIDE),
    # Sets (members from the hash fields' names: integers and not)
    st.builds(lambda c, k, members: (c, k, *members), st.sampled_from([b"SADD", b"SREM"]), KEY,
              st.lists(MEMBER, min_size=1, max_size=6)),
    st.tuples(st.sampled_from([b"SCARD", b"SMEMBERS", b"SRANDMEMBER"]), KEY),
    st.tuples(st.sampled_from([b"SISMEMBER", b"SMISMEMBER"]), KEY, MEMBER),
    st.tuples(st.just(b"SRANDMEMBER"), KEY, st.sampled_from([b"0", b"2", b"10", b"-3", b"x"])),
    # (SPOP only where it is not random: all of a set of at most 8 members, or refused)
    st.tuples(st.just(b"SPOP"), KEY, st.sampled_from([b"0", b"10", b"-1", b"x"])),
    st.builds(lambda c, keys: (c, *keys),
              st.sampled_from([b"SINTER", b"SUNION", b"SDIFF", b"SINTERSTORE", b"SUNIONSTORE",
                               b"SDIFFSTORE"]), st.lists(KEY, min_size=2, max_size=3)),
    st.tuples(st.just(b"SMOVE"), KEY, KEY, MEMBER),
    st.builds(lambda keys, limit: (b"SINTERCARD", b"%d" % len(keys), *keys, *limit),
              st.lists(KEY, min_size=1, max_size=3),
              st.sampled_from([(), (b"LIMIT", b"1"), (b"LIMIT", b"-1")])),
    st.tuples(st.just(b"SSCAN"), KEY, st.just(b"0")),
    # Sorted sets (members shared with the sets')
    st.builds(lambda k, flags, pairs: (b"ZADD", k, *flags, *[p for pair in pairs for p in pair]),
              KEY, st.sampled_from([(), (b"NX",), (b"XX",), (b"GT", b"CH"), (b"LT",),
                                    (b"INCR",), (b"NX", b"XX")]),
              st.lists(st.tuples(SCORE, MEMBER), min_size=1, max_size=5)),
    st.tuples(st.just(b"ZINCRBY"), KEY, SCORE, MEMBER),
    st.builds(lambda k, members: (b"ZREM", k, *members), KEY, st.lists(MEMBER, min_size=1,
                                                                       max_size=3)),
    st.tuples(st.sampled_from([b"ZCARD", b"ZPOPMIN", b"ZPOPMAX"]), KEY),
    st.tuples(st.sampled_from([b"ZSCORE", b"ZRANK", b"ZREVRANK", b"ZMSCORE"]), KEY, MEMBER),
    st.tuples(st.sampled_from([b"ZPOPMIN", b"ZPOPMAX"]), KEY, st.sampled_from([b"0", b"2",
                                                                            b"-1"])),
    st.builds(lambda c, k, a, b, o: (c, k, a, b, *o),
              st.sampled_from([b"ZRANGE", b"ZREVRANGE"]), KEY, INDEX, INDEX,
              st.sampled_from([(), (b"WITHSCORES",), (b"REV",), (b"REV", b"WITHSCORES")])),
    st.builds(lambda c, k, a, b, o: (c, k, a, b, *o),
              st.sampled_from([b"ZRANGEBYSCORE", b"ZREVRANGEBYSCORE", b"ZCOUNT",
                               b"ZREMRANGEBYSCORE"]), KEY, SCORE_BOUND, SCORE_BOUND,
              st.sampled_from([(), (b"WITHSCORES",), (b"LIMIT", b"1", b"2")])),
    st.builds(lambda k, a, b, o: (b"ZRANGE", k, a, b, *o), KEY, SCORE_BOUND, SCORE_BOUND,
              st.sampled_from([(b"BYSCORE",), (b"BYSCORE", b"REV", b"LIMIT", b"0", b"1"),
                               (b"BYSCORE", b"WITHSCORES")])),
    st.builds(lambda c, k, a, b: (c, k, a, b),
              st.sampled_from([b"ZRANGEBYLEX", b"ZREVRANGEBYLEX", b"ZLEXCOUNT",
                               b"ZREMRANGEBYLEX"]), KEY, LEX_BOUND, LEX_BOUND),
    st.tuples(st.just(b"ZREMRANGEBYRANK"), KEY, INDEX, INDEX),
    st.builds(lambda c, keys, o: (c, b"%d" % len(keys), *keys, *o),
              st.sampled_from([b"ZUNION", b"ZINTER", b"ZDIFF"]), st.lists(KEY, min_size=1,
                                                                         max_size=3),
              st.sampled_from([(), (b"WITHSCORES",), (b"AGGREGATE", b"MAX", b"WITHSCORES")])),
    st.builds(lambda c, d, keys: (c, d, b"%d" % len(keys), *keys),
              st.sampled_from([b"ZUNIONSTORE", b"ZINTERSTORE", b"ZDIFFSTORE"]), KEY,
              st.lists(KEY, min_size=1, max_size=3)),
    st.tuples(st.just(b"ZRANGESTORE"), KEY, KEY, INDEX, INDEX),
    st.builds(lambda keys, o: (b"ZINTERCARD", b"%d" % len(keys), *keys, *o),
              st.lists(KEY, min_size=1, max_size=3),
              st.sampled_from([(), (b"LIMIT", b"1"), (b"LIMIT", b"-1"), (b"WEIGHTS", b"1")])),
    st.builds(lambda keys, o: (b"ZMPOP", b"%d" % len(keys), *keys, *o),
              st.lists(KEY, min_size=1, max_size=2),
              st.sampled_from([(b"MIN",), (b"MAX", b"COUNT", b"2")])),
    st.tuples(st.just(b"ZRANDMEMBER"), KEY, st.sampled_from([b"2", b"-3"])),
    st.tuples(st.just(b"ZSCAN"), KEY, st.just(b"0")),
    st.tuples(st.just(b"RPOPLPUSH"), KEY, KEY),
    st.builds(lambda keys, where, count: (b"LMPOP", b"%d" % len(keys), *keys, where, *count),
              st.lists(KEY, min_size=1, max_size=3), SIDE,
              st.sampled_from([(), (b"COUNT", b"2"), (b"COUNT", b"0")])),
)
# Replies naming fields or members in a hashtable's own order: compared as sets.
UNORDERED = {b"HKEYS", b"HVALS", b"SMEMBERS", b"SINTER", b"SUNION", b"SDIFF"}
# Replies picked at random: compared by how many, and that they are members.
RANDOM = {b"SPOP", b"SRANDMEMBER", b"HRANDFIELD", b"ZRANDMEMBER"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    kvd = Daemon(tmp_path_factory.mktemp("kvd"), [], tcp=False)
    kvd.start()
    if shutil.which("redis-server"):
        reference = RedisServer(tmp_path_factory.mktemp("redis"))
        clients = [kvd.client(protocol=2), reference.client()]
    else:  # fakeredis keeps no encodings; the replies compared here are the same
        import fakeredis

        reference = None
        clients = [kvd.client(protocol=2), fakeredis.FakeRedis(protocol=2)]
    for client in clients:
        client.config_set("hash-max-listpack-entries", SPLIT_AT)
        client.config_set("set-max-intset-entries", SPLIT_AT)
        client.config_set("zset-max-listpack-entries", SPLIT_AT)
    yield clients
    kvd.cleanup()
    if reference is not None:
        reference.stop()


def lookups(client: redis.Redis) -> tuple[int, int]:
    """INFO's keyspace hits and misses (INFO itself counts neither)."""
    stats = client.info("stats")
    return stats.get("keyspace_hits", 0), stats.get("keyspace_misses", 0)


def counted(client: redis.Redis, command: tuple) -> tuple[object, tuple[int, int]]:
    """The reply to `command` (as `reply` compares it), and the keyspace hits and misses
    the command itself counted (Redis counts reads, not the lookups of writes)."""
    before = lookups(client)
    try:
        result = client.execute_command(*command, NEVER_DECODE=True)
    except redis.ResponseError as exc:
        result = exc
    after = lookups(client)
    return reply(client, command, result), (after[0] - before[0], after[1] - before[1])


def reply(client: redis.Redis, command: tuple, result: object) -> object:
    """The reply in a form both servers must agree on."""
    if isinstance(result, redis.ResponseError):
        return ("error", str(result))
    name = command[0]
    if name == b"HGETALL":
        pairs = result.items() if isinstance(result, dict) else zip(result[::2], result[1::2])
        return sorted(pairs)
    if name in UNORDERED:
        return sorted(result)
    if name == b"HSCAN":
        return sorted(scanned(client, command[1]).items())
    if name == b"SSCAN":
        return sorted(client.sscan_iter(command[1], count=2))
    if name == b"ZSCAN":
        return sorted(client.zscan_iter(command[1], count=2))
    if name in RANDOM:
        if isinstance(result, (bytes, type(None))):
            return type(result)
        return len(result)
    if name == b"TTL":
        return result > 0 if result >= 0 else result
    return result


def scanned(client: redis.Redis, key: bytes) -> dict:
    """A full HSCAN iteration, COUNT 2 so that a split hash takes several steps."""
    found: dict = {}
    cursor = 0
    while True:
        cursor, items = client.hscan(key, cursor, count=2)
        found.update(items)
        if cursor == 0:
            return found


def snapshot(client: redis.Redis) -> list:
    """Both databases, key by key: type, contents, whether it expires."""
    state = []
    for db in (0, 1):
        client.execute_command("SELECT", db)
        for key in KEYS:
            kind = client.type(key)
            if kind == b"hash":
                contents: object = sorted(client.hgetall(key).items())
            elif kind == b"string":
                contents = client.get(key)
            elif kind == b"list":
                contents = client.lrange(key, 0, -1)
            elif kind == b"set":
                contents = sorted(client.smembers(key))
            elif kind == b"zset":
                contents = client.zrange(key, 0, -1, withscores=True)
            else:
                contents = None
            state.append((db, key, kind, contents, client.ttl(key) > 0))
    client.execute_command("SELECT", 0)
    return state


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(COMMANDS, min_size=1, max_size=30))
def test_collections_answer_like_redis(servers, commands):
    for client in servers:
        client.flushall()
    exact = shutil.which("redis-server") is not None  # (fakeredis keeps no INFO stats)
    for command in commands:
        (kvd, kvd_lookups), (expected, expected_lookups) = (counted(client, command)
                                                            for client in servers)
        assert kvd == expected, f"{command!r}: kvd {kvd!r:.300} vs Redis {expected!r:.300}"
        if exact:  # the same reads count as keyspace hits and misses
            assert kvd_lookups == expected_lookups, (command, kvd_lookups, expected_lookups)
        kvd_state, expected_state = (snapshot(client) for client in servers)
        assert kvd_state == expected_state, command


def test_a_transaction_of_hash_writes_is_applied_whole(servers):
    kvd, reference = servers
    for client in servers:
        client.flushall()
        pipe = client.pipeline(transaction=True)
        pipe.hset(b"h1", mapping={b"f%d" % i: b"%d" % i for i in range(10)})
        pipe.hdel(b"h1", b"f1", b"f2")
        pipe.rename(b"h1", b"h2")
        pipe.hincrby(b"h2", b"f3", 10)
        pipe.copy(b"h2", b"h1")
        pipe.hset(b"h1", b"new", b"x")
        pipe.execute()
    assert snapshot(kvd) == snapshot(reference)
    assert kvd.object("encoding", b"h1") == b"hashtable"
