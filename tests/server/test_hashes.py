"""Hashes against real daemons: what redis-py's hash calls get, and that a hash -- its
fields, its type, its TTL, its encoding -- survives SIGKILL, restart and compaction,
and moves with RENAME, MOVE and COPY. (Every reply, byte for byte against Redis 7.0, is
in tests/torture/test_differential.py's "hashes" sequence.)"""

from __future__ import annotations

import signal

import pytest
import redis

from tests.kvd_process import run_kvctl


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
    server.signal(signal.SIGKILL)  # everything above was acknowledged
    server.wait_exit()
    server.start()

    def check(client: redis.Redis) -> None:
        assert client.hlen("session") == 200 and client.hget("session", "f7") == b"v7"
        assert 0 < client.ttl("session") <= 3600
        assert client.object("encoding", "session") == b"hashtable"
        assert client.object("encoding", "small") == b"listpack"
        assert client.type("gone") == b"none" and client.get("was-hash") == b"string now"

    check(server.client(protocol=2))
    done = run_kvctl(["compact", "--wait"], server.dir)
    assert done.returncode == 0, done.stderr
    check(server.client(protocol=2))
    server.stop()
    server.start()
    check(server.client(protocol=2))


def test_rename_move_and_copy_keep_a_hash_a_hash(kvd):
    client = kvd.client(protocol=2)
    client.hset("h", mapping={"a": "1"})
    client.rename("h", "renamed")
    assert client.copy("renamed", "copied")
    assert client.move("copied", 3)
    other = kvd.client(protocol=2, db=3)
    for c, key in ((client, "renamed"), (other, "copied")):
        assert c.type(key) == b"hash" and c.hgetall(key) == {b"a": b"1"}


def test_kvctl_export_counts_hashes_it_cannot_export_yet(kvd, tmp_path):
    client = kvd.client(protocol=2)
    client.set("s", "v")
    client.hset("h", "a", "1")
    result = run_kvctl(["export", str(tmp_path / "out.resp")], kvd.dir)
    assert result.returncode == 0, result.stderr
    assert b"exported 1 keys" in result.stderr and b"skipped 1 keys that are not strings" \
        in result.stderr
