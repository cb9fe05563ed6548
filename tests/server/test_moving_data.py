"""DUMP / RESTORE / MIGRATE between kvd and a real redis-server, both ways: values of every
RDB string encoding Redis produces (integers, short, LZF-compressed, binary), with TTLs."""

from __future__ import annotations

import os
import sys

import pytest
import redis

from server import rdb
from server.rdb_objects import load_payload
from tests.kvd_process import free_port, kvd_beside_redis

OK = (True, b"OK", "OK")  # redis-py parses some replies to True, passes others through

VALUES = {
    b"small-int": b"7", b"negative": b"-200", b"int32": b"70000", b"int64": b"12345678901",
    b"leading-zero": b"007", b"minus-zero": b"-0", b"text": b"hello",
    b"empty": b"", b"binary": bytes(range(256)), b"compressible": b"abc" * 5000,
    b"random": os.urandom(100_000), b"\x00key\r\n": b"\xff\x00\r\n",
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with kvd_beside_redis(tmp_path_factory.mktemp("moving"), tcp=True) as (kvd, reference):
        kvd_client, redis_client = kvd.tcp_client(protocol=2), reference.client()
        yield kvd, reference, kvd_client, redis_client
        redis_client.close()


@pytest.fixture(autouse=True)
def empty(servers):
    for client in servers[2:]:
        client.flushall()


def test_redis_payloads_restore_into_kvd_and_back(servers):
    _, _, kvd, reference = servers
    for key, value in VALUES.items():
        reference.set(key, value, px=500_000)
        payload = reference.dump(key)
        assert kvd.restore(key, 500_000, payload) in OK
        assert kvd.get(key) == value
        assert 490_000 < kvd.pttl(key) <= 500_000
        ours = kvd.dump(key)
        if len(value) <= 20:  # Redis compresses longer values; kvd never does
            assert ours == payload, key
        assert reference.restore(key + b"-back", 0, ours) in OK
        assert reference.get(key + b"-back") == value
    assert any(reference.dump(key)[1] == 0xC3 for key in VALUES), "no LZF payload was tried"


def test_restore_options_and_refusals(servers):
    _, _, kvd, reference = servers
    reference.set(b"k", b"v")
    payload = reference.dump(b"k")
    kvd.set(b"k", b"old")
    with pytest.raises(redis.ResponseError, match="^BUSYKEY Target key name already exists"):
        kvd.restore(b"k", 0, payload)
    assert kvd.restore(b"k", 0, payload, replace=True, idletime=5) in OK
    assert kvd.get(b"k") == b"v" and kvd.ttl(b"k") == -1
    assert kvd.restore(b"abs", 4_000_000_000_000, payload, absttl=True, frequency=3) in OK
    assert kvd.pexpiretime(b"abs") == 4_000_000_000_000
    assert kvd.restore(b"gone", 1, payload, absttl=True) in OK  # expired: not created
    assert kvd.exists(b"gone") == 0
    damaged = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(redis.ResponseError, match="DUMP payload version or checksum are wrong"):
        kvd.restore(b"x", 0, damaged)
    reference.rpush(b"list", b"a", b"1", b"b")
    assert kvd.restore(b"list", 0, reference.dump(b"list")) in OK
    assert kvd.lrange(b"list", 0, -1) == [b"a", b"1", b"b"]
    reference.xadd(b"stream", {b"f": b"v"})
    reference.xgroup_create(b"stream", b"workers")
    with pytest.raises(redis.ResponseError, match="no stream consumer groups yet"):
        kvd.restore(b"x", 0, reference.dump(b"stream"))
    with pytest.raises(redis.ResponseError, match="Invalid TTL value"):
        kvd.restore(b"x", -1, payload)
    assert kvd.exists(b"x") == 0


def test_migrate_from_redis_into_kvd(servers):
    kvd_daemon, _, kvd, reference = servers
    for key, value in VALUES.items():
        reference.set(key, value, px=600_000 if len(value) % 2 else None)
    reply = reference.migrate("127.0.0.1", kvd_daemon.port, list(VALUES), 0, 5000)
    assert reply in OK
    assert reference.dbsize() == 0
    for key, value in VALUES.items():
        assert kvd.get(key) == value
        assert (kvd.pttl(key) > 590_000) if len(value) % 2 else kvd.pttl(key) == -1
    # COPY keeps the source; REPLACE overwrites the target
    reference.set(b"text", b"newer")
    reference.migrate("127.0.0.1", kvd_daemon.port, [b"text"], 0, 5000, copy=True, replace=True)
    assert reference.get(b"text") == b"newer" and kvd.get(b"text") == b"newer"
    with pytest.raises(redis.ResponseError, match="BUSYKEY"):
        reference.migrate("127.0.0.1", kvd_daemon.port, [b"text"], 0, 5000)


def test_migrate_from_kvd_into_redis(servers):
    _, redis_server, kvd, reference = servers
    for key, value in VALUES.items():
        kvd.set(key, value, px=600_000 if len(value) % 2 else None)
    assert kvd.migrate("127.0.0.1", redis_server.port, list(VALUES), 0, 5000) in OK
    assert kvd.dbsize() == 0
    for key, value in VALUES.items():
        assert reference.get(key) == value
        assert (reference.pttl(key) > 590_000) if len(value) % 2 else reference.pttl(key) == -1
    assert kvd.execute_command("MIGRATE", "127.0.0.1", redis_server.port, "missing", 0,
                               1000) in (b"NOKEY", "NOKEY")
    kvd.set(b"text", b"x")
    with pytest.raises(redis.ResponseError, match="^Target instance replied with error: BUSYKEY"):
        kvd.migrate("127.0.0.1", redis_server.port, [b"text"], 0, 5000)
    assert kvd.get(b"text") == b"x"  # a refused key stays
    kvd.migrate("127.0.0.1", redis_server.port, [b"text"], 0, 5000, copy=True, replace=True)
    assert kvd.get(b"text") == b"x" and reference.get(b"text") == b"x"
    with pytest.raises(redis.ResponseError, match="IOERR error or timeout writing to target"):
        kvd.migrate("127.0.0.1", free_port(), [b"text"], 0, 1000)


def test_migrate_with_a_password(tmp_path):
    with kvd_beside_redis(tmp_path, tcp=True, password="s3cret") as (kvd_daemon, redis_server):
        kvd = kvd_daemon.tcp_client(protocol=2, password="s3cret")
        reference = redis_server.client()
        reference.set(b"k", b"v", ex=100)
        assert reference.migrate("127.0.0.1", kvd_daemon.port, [b"k"], 0, 5000, auth="s3cret")
        assert kvd.get(b"k") == b"v" and 0 < kvd.ttl(b"k") <= 100
        with pytest.raises(redis.ResponseError, match="WRONGPASS"):
            kvd.migrate("127.0.0.1", redis_server.port, [b"k"], 0, 5000, auth="wrong")
        assert kvd.migrate("127.0.0.1", redis_server.port, [b"k"], 0, 5000, auth="s3cret")
        assert reference.get(b"k") == b"v"
        reference.close()


def python_lines_run(work) -> int:
    """How many lines of Python `work()` runs (a loop over a value's bytes runs millions)."""
    lines = 0

    def tracer(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return tracer

    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(None)
    return lines


def test_dump_and_restore_of_a_large_value_run_no_python_loop_over_it():
    """A 60 MB DUMP or RESTORE held every client 6-7 s while Python computed the CRC-64
    eight bytes at a time; a C CRC (anycrc) and one join leave a few dozen lines."""
    value = os.urandom(8 << 20)
    payload = rdb.dump(value)
    assert python_lines_run(lambda: rdb.dump_parts(value)) < 100
    assert python_lines_run(lambda: load_payload(payload)) < 100
    assert load_payload(payload).data == value
    with pytest.raises(rdb.PayloadError, match="checksum"):
        load_payload(payload[:-1] + bytes([payload[-1] ^ 1]))
    for short in (b"", b"1", b"-12", b"123456", b"2147483647", b"12345678901", b"x" * 12):
        assert b"".join(rdb.dump_parts(short)) == rdb.dump(short)
        assert load_payload(rdb.dump(short)).data == short


def test_crc64_and_lzf_as_redis():
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # Redis's own test vector
    # "abcabcabc..." as liblzf writes it: a literal run, then one overlapping back reference
    assert rdb.lzf_decompress(b"\x02abc\xe0\x0c\x02", 3 + 21) == b"abc" * 8
    with pytest.raises(rdb.PayloadError):
        rdb.lzf_decompress(b"\x02abc\xe0\x0c\x09", 24)  # refers before the start


def fill_every_encoding(client: redis.Redis) -> dict:
    """Keys of every type in each encoding Redis 7.0 keeps them in (listpack, intset,
    quicklist, hashtable, skiplist), binary and integer members included; name -> kind."""
    big = [b"member-%d" % i for i in range(300)] + [b"\x00\xff\r\n", b"-5", b"12345678901"]
    client.hset(b"hash-small", mapping={b"f": b"v", b"n": b"42", b"\x00": b"\xff"})
    client.hset(b"hash-big", mapping={m: m * 3 for m in big})
    client.hset(b"hash-long-value", mapping={b"f": b"x" * 100})  # past the listpack value
    client.rpush(b"list-small", b"a", b"1", b"-100000", b"\r\n")
    client.rpush(b"list-big", *big, b"y" * 10_000)  # a quicklist of several nodes
    client.sadd(b"set-ints", 3, -1, 70000, 12345678901)
    client.sadd(b"set-small", b"a", b"b", b"1")
    client.sadd(b"set-big", *big)
    client.zadd(b"zset-small", {b"a": 1.5, b"b": -2, b"c": 1e300, b"i": 7})
    client.zadd(b"zset-big", {m: i * 0.25 for i, m in enumerate(big)})
    client.zadd(b"zset-inf", {b"lo": float("-inf"), b"hi": float("inf")})
    for i in range(1, 251):  # three nodes of entries, most with the first one's fields
        fields = {b"f": b"%d" % i, b"g": b"x"} if i % 7 else {b"other": b"\x00\r\n"}
        client.xadd(b"stream", fields, id=b"%d-%d" % (1000 + i // 3, i % 3))
    client.xdel(b"stream", b"1083-1", b"1050-0")  # the last entry among them
    return {b"stream": "stream", b"hash-small": "hash", b"hash-big": "hash",
            b"hash-long-value": "hash",
            b"list-small": "list", b"list-big": "list", b"set-ints": "set",
            b"set-small": "set", b"set-big": "set", b"zset-small": "zset", b"zset-big": "zset",
            b"zset-inf": "zset"}


def contents(client: redis.Redis, key: bytes) -> object:
    kind = client.type(key)
    if kind == b"hash":
        return kind, client.hgetall(key)
    if kind == b"list":
        return kind, client.lrange(key, 0, -1)
    if kind == b"set":
        return kind, client.smembers(key)
    if kind == b"zset":
        return kind, client.zrange(key, 0, -1, withscores=True)
    if kind == b"stream":  # its entries, and the last ID it gave (an XADD below it fails)
        entries = client.xrange(key)
        try:
            client.xadd(key, {b"probe": b"1"}, id=b"1083-0", maxlen=None)
            below_last = False
        except redis.ResponseError:
            below_last = True
        return kind, entries, below_last
    return kind, client.get(key)


def test_collections_dump_and_restore_both_ways(servers):
    """Every type and encoding: Redis's DUMP restores in kvd, and kvd's in Redis, with
    the same contents, type and TTL; kvd's own DUMP restores in kvd."""
    _, _, kvd, reference = servers
    names = fill_every_encoding(reference)
    encodings = {reference.object("encoding", key) for key in names}
    assert {b"listpack", b"hashtable", b"quicklist", b"intset", b"skiplist",
            b"stream"} <= encodings
    for key in names:
        reference.pexpire(key, 900_000)
        assert kvd.restore(key, 900_000, reference.dump(key)) in OK
        assert contents(kvd, key) == contents(reference, key), key
        assert 890_000 < kvd.pttl(key) <= 900_000
        ours = kvd.dump(key)
        assert reference.restore(key + b"-back", 0, ours) in OK
        assert contents(reference, key + b"-back") == contents(reference, key), key
        assert kvd.restore(key + b"-again", 0, ours) in OK
        assert contents(kvd, key + b"-again") == contents(kvd, key), key
    # REPLACE over a key of another type, and the refusals of a malformed collection
    kvd.set(b"hash-small", b"a string")
    assert kvd.restore(b"hash-small", 0, reference.dump(b"hash-small"), replace=True) in OK
    assert kvd.type(b"hash-small") == b"hash"


def test_migrate_moves_collections_both_ways(servers):
    kvd_server, redis_server, kvd, reference = servers
    names = fill_every_encoding(reference)
    assert reference.migrate("127.0.0.1", kvd_server.port, list(names), 0, 5000) in OK
    assert reference.dbsize() == 0
    snapshot = {key: contents(kvd, key) for key in names}
    assert all(seen[0].decode() == names[key] for key, seen in snapshot.items())
    assert kvd.migrate("127.0.0.1", redis_server.port, list(names), 3, 5000, copy=True) in OK
    moved = redis.Redis(port=redis_server.port, db=3)
    try:
        assert {key: contents(moved, key) for key in names} == snapshot
    finally:
        moved.flushdb()
        moved.close()
