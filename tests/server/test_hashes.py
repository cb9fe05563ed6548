"""Hashes against real daemons: what redis-py's hash calls get, and that a hash -- its
fields, its type, its TTL, its encoding -- survives SIGKILL, restart and compaction,
and moves with RENAME, MOVE and COPY. (Every reply, byte for byte against Redis 7.0, is
in tests/torture/test_differential.py's "hashes" sequence.)"""

from __future__ import annotations

import pytest
import redis

from tests.kvd_process import check_through_kill_compaction_and_restart, run_kvctl, wait_for


def test_redis_py_hash_calls(kvd):
    client = kvd.client(decode_responses=True)
    assert client.hset("user:1", mapping={"name": "ada", "visits": 1}) == 2
    assert client.hincrby("user:1", "visits", 2) == 3
    assert client.hgetall("user:1") == {"name": "ada", "visits": "3"}
    assert client.hget("user:1", "name") == "ada" and client.hlen("user:1") == 2
    assert client.hmget("user:1", ["name", "nope"]) == ["ada", None]
    assert client.hdel("user:1", "name", "nope") == 1 and client.hkeys("user:1") == ["visits"]
    assert client.type("user:1") == "hash"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.get("user:1")
    client.set("plain", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        client.hset("plain", "f", "v")
    assert dict(client.hscan_iter("user:1")) == {"visits": "3"}
    assert client.hrandfield("user:1") == "visits"
    assert list(client.scan_iter(_type="hash")) == ["user:1"]


@pytest.mark.slow
def test_a_hash_survives_sigkill_restart_and_compaction(make_daemon):
    server = make_daemon()
    client = server.client(protocol=2)
    client.hset("session", mapping={f"f{i}": f"v{i}" for i in range(200)})  # hashtable
    client.expire("session", 3600)
    client.hset("small", "a", "1")
    client.hset("gone", "a", "1")
    client.delete("gone")
    client.hset("was-hash", "a", "1")
    client.set("was-hash", "string now")
    def check(client: redis.Redis) -> None:
        assert client.hlen("session") == 200 and client.hget("session", "f7") == b"v7"
        assert 0 < client.ttl("session") <= 3600
        assert client.object("encoding", "session") == b"hashtable"
        assert client.object("encoding", "small") == b"listpack"
        assert client.type("gone") == b"none" and client.get("was-hash") == b"string now"

    check_through_kill_compaction_and_restart(server, check)


def test_rename_move_and_copy_keep_a_hash_a_hash(kvd):
    client = kvd.client(protocol=2)
    client.hset("h", mapping={"a": "1"})
    client.rename("h", "renamed")
    assert client.copy("renamed", "copied")
    assert client.move("copied", 3)
    other = kvd.client(protocol=2, db=3)
    for c, key in ((client, "renamed"), (other, "copied")):
        assert c.type(key) == b"hash" and c.hgetall(key) == {b"a": b"1"}


def test_kvctl_export_writes_hashes_as_hset(kvd, tmp_path):
    client = kvd.client(protocol=2)
    client.set("s", "v")
    client.hset("h", mapping={"a": "1", "b": "2"})
    result = run_kvctl(["export", str(tmp_path / "out.resp")], kvd.dir)
    assert result.returncode == 0, result.stderr
    assert b"exported 2 keys" in result.stderr
    assert b"$4\r\nHSET\r\n$1\r\nh\r\n" in (tmp_path / "out.resp").read_bytes()


# -- hashes of element records (past hash-max-listpack-entries: docs/data-model.md) -----

@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_a_large_hash_deleted_and_recreated_shows_no_old_field(make_daemon, engine):
    """Through SIGKILL, restart and compaction, on both engines: the fields of a deleted
    (or expired, or overwritten) large hash never come back under its name."""
    server = make_daemon("--engine", engine)
    client = server.client(protocol=2)
    client.hset("h", mapping={b"old%d" % i: b"x" * 20 for i in range(5000)})
    client.delete("h")
    client.hset("h", mapping={b"new%d" % i: b"y" for i in range(300)})
    client.hset("h", "old7", "back as a new field")
    client.hset("overwritten", mapping={b"f%d" % i: b"z" for i in range(300)})
    client.set("overwritten", "a string")
    client.hset("expired", mapping={b"f%d" % i: b"z" for i in range(300)})
    client.pexpire("expired", 20)
    wait_for(lambda: not client.exists("expired"), 10, "the large hash to expire")
    client.hset("expired", "late", "1")  # a new, small hash under the name
    def check(client: redis.Redis) -> None:
        fields = client.hgetall("h")
        assert len(fields) == 301 and fields[b"old7"] == b"back as a new field"
        assert not [f for f in fields if f.startswith(b"old") and f != b"old7"]
        assert client.object("encoding", "h") == b"hashtable"
        assert client.get("overwritten") == b"a string"
        assert client.hgetall("expired") == {b"late": b"1"}

    check_through_kill_compaction_and_restart(server, check)


def test_one_field_of_a_large_hash_is_one_small_write(kvd):
    client = kvd.client(protocol=2)
    client.hset("big", mapping={b"f%d" % i: b"v" * 100 for i in range(20_000)})
    before = client.info("persistence")["total_bytes"]
    client.hset("big", "f123", "changed")
    assert client.info("persistence")["total_bytes"] - before < 100  # not the 2 MB hash
    before = client.info("persistence")["total_bytes"]
    client.delete("big")
    assert client.info("persistence")["total_bytes"] - before < 100


def test_packed_until_redis_would_convert(kvd):
    """OBJECT ENCODING as Redis 7.0 with its default limits: 128 fields of 64-byte names
    and values are still a listpack (kvd keeps them packed); one more field or a longer
    value makes a hashtable."""
    client = kvd.client(protocol=2)
    fields = {b"%063d" % i + b"f": b"v" * 64 for i in range(128)}
    client.hset("full", mapping=fields)
    assert client.object("encoding", "full") == b"listpack"
    client.hset("full", "one more", "x")
    assert client.object("encoding", "full") == b"hashtable" and client.hlen("full") == 129
    client.config_set("hash-max-listpack-entries", 2)
    client.hset("tiny-limit", mapping={"a": "1", "b": "2", "c": "3"})
    assert client.object("encoding", "tiny-limit") == b"hashtable"
    assert client.hgetall("tiny-limit") == {b"a": b"1", b"b": b"2", b"c": b"3"}


def test_hscan_of_a_large_hash_returns_every_field_present_throughout(kvd):
    """A split hash is scanned a step at a time; fields added or removed during the scan
    may or may not be returned, but every field present throughout is, once."""
    client = kvd.client(protocol=2)
    client.hset("big", mapping={b"f%d" % i: b"%d" % i for i in range(1000)})
    seen: list[bytes] = []
    cursor, steps = 0, 0
    while True:
        cursor, items = client.hscan("big", cursor, count=100)
        seen += items
        steps += 1
        client.hset("big", b"added%d" % steps, b"1")
        client.hdel("big", b"f%d" % (999 - steps))  # not yet returned, maybe
        if cursor == 0:
            break
    assert steps > 5
    stable = {b"f%d" % i for i in range(1000 - steps - 1)}
    assert stable <= set(seen) and len(seen) == len(set(seen))
    assert dict(client.hscan_iter("big", match="f1?")) == {b"f%d" % i: b"%d" % i
                                                          for i in range(10, 20)}


def test_watch_sees_one_field_of_a_large_hash_change(kvd):
    client, other = kvd.client(protocol=2), kvd.client(protocol=2)
    client.hset("big", mapping={b"f%d" % i: b"v" for i in range(200)})
    with client.pipeline() as pipe:
        pipe.watch("big")
        other.hset("big", "f5", "changed elsewhere")
        pipe.multi()
        pipe.hset("big", "f6", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.hget("big", "f6") == b"v"
