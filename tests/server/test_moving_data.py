"""DUMP / RESTORE / MIGRATE between kvd and a real redis-server, both ways: values of every
RDB string encoding Redis produces (integers, short, LZF-compressed, binary), with TTLs."""

from __future__ import annotations

import os
import sys

import pytest
import redis

from server import rdb
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
    reference.rpush(b"list", b"a")
    with pytest.raises(redis.ResponseError, match="strings only; this payload is a list"):
        kvd.restore(b"x", 0, reference.dump(b"list"))
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
    assert python_lines_run(lambda: rdb.load(payload)) < 100
    assert rdb.load(payload) == value
    with pytest.raises(rdb.PayloadError, match="checksum"):
        rdb.load(payload[:-1] + bytes([payload[-1] ^ 1]))
    for short in (b"", b"1", b"-12", b"123456", b"2147483647", b"12345678901", b"x" * 12):
        assert b"".join(rdb.dump_parts(short)) == rdb.dump(short)
        assert rdb.load(rdb.dump(short)) == short


def test_crc64_and_lzf_as_redis():
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # Redis's own test vector
    # "abcabcabc..." as liblzf writes it: a literal run, then one overlapping back reference
    assert rdb.lzf_decompress(b"\x02abc\xe0\x0c\x02", 3 + 21) == b"abc" * 8
    with pytest.raises(rdb.PayloadError):
        rdb.lzf_decompress(b"\x02abc\xe0\x0c\x09", 24)  # refers before the start
