"""kvctl export / import against real servers: every key with its TTL, binary data, a file
redis-cli --pipe loads into redis-server, and kvctl import of a Redis server's export."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.kvd_process import kvd_beside_redis, require_tool, run_kvctl

pytestmark = pytest.mark.slow

DEADLINE_MS = 4_000_000_000_000


def kvctl(server, *args, input: bytes | None = None):
    return run_kvctl(list(args), cwd=server.dir, input=input)


def fill(client) -> dict[bytes, bytes]:
    data = {b"k%05d" % i: os.urandom(i % 200) for i in range(12_000)}
    data.update({b"\x00bin\r\n": b"\r\n\x00\xff", b"": b"empty key", b"big": os.urandom(1 << 20)})
    pipe = client.pipeline(transaction=False)
    for key, value in data.items():
        pipe.set(key, value)
    pipe.execute()
    for key in list(data)[::3]:
        client.pexpireat(key, DEADLINE_MS)
    return data


def same_keyspace(client, data: dict[bytes, bytes]) -> None:
    assert client.dbsize() == len(data)
    keys = list(data)
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        assert client.mget(chunk) == [data[k] for k in chunk]
    for i, key in enumerate(keys):
        assert client.pexpiretime(key) == (DEADLINE_MS if i % 3 == 0 else -1), key


def test_export_then_import_into_kvd_and_into_redis(tmp_path):
    require_tool("redis-cli", "redis-tools")
    with kvd_beside_redis(tmp_path, tcp=True) as (kvd, redis_server):
        client = kvd.client(protocol=2)
        data = fill(client)
        dump = tmp_path / "backup.resp"
        exported = kvctl(kvd, "export", str(dump))
        assert exported.returncode == 0, exported.stderr
        assert b"exported %d keys (db0: %d; %d with a TTL)" % (
            len(data), len(data), len(range(0, len(data), 3))) in exported.stderr
        client.flushall()
        imported = kvctl(kvd, "import", str(dump))
        assert imported.returncode == 0, imported.stderr
        commands = len(data) + 1  # (and the SELECT of database 0)
        assert b"imported %d of %d commands" % (commands, commands) in imported.stderr
        same_keyspace(client, data)

        # The same file is what redis-cli --pipe sends: Redis loads it as it is.
        with open(dump, "rb") as f:
            piped = subprocess.run(["redis-cli", "-p", str(redis_server.port), "--pipe"],
                                   stdin=f, capture_output=True, timeout=120)
        assert piped.returncode == 0 and b"errors: 0, replies: %d" % commands in piped.stdout
        reference = redis_server.client()
        same_keyspace(reference, data)

        # And kvctl exports a Redis server (leaving out what kvd has not) for kvd to load.
        reference.rpush(b"a-list", b"x", b"y")
        reference.xadd(b"a-stream", {b"f": b"v"})
        reference.xgroup_create(b"a-stream", b"workers")
        from_redis = tmp_path / "from-redis.resp"
        result = run_kvctl(["--port", str(redis_server.port), "--host", "127.0.0.1", "export",
                            str(from_redis)], cwd=kvd.dir)
        assert result.returncode == 0 and b"left out 1 x stream with consumer groups" \
            in result.stderr
        client.flushall()
        assert kvctl(kvd, "import", "-", input=from_redis.read_bytes()).returncode == 0
        assert client.lrange(b"a-list", 0, -1) == [b"x", b"y"]
        client.delete(b"a-list")
        same_keyspace(client, data)
        reference.close()


def test_import_refusals_and_malformed_files(kvd, tmp_path):
    bad = tmp_path / "bad.resp"
    bad.write_bytes(b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n")
    result = kvctl(kvd, "import", str(bad))
    assert result.returncode == 4
    assert b"imported 1 of 2 commands" in result.stderr
    assert b"wrong number of arguments for 'set' command" in result.stderr
    truncated = tmp_path / "truncated.resp"
    truncated.write_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab")
    result = kvctl(kvd, "import", str(truncated))
    assert result.returncode == 2 and b"ends in the middle of a command" in result.stderr
    assert kvctl(kvd, "import", str(tmp_path / "missing")).returncode == 2
    # A failed export leaves no file behind.
    result = kvctl(kvd, "export", str(tmp_path / "no-such-dir" / "out.resp"))
    assert result.returncode == 2 and not (tmp_path / "no-such-dir").exists()
    assert kvctl(kvd, "export", "-").stdout == b""  # an empty keyspace, an empty file


def test_import_reads_inline_lines_as_the_server_does(kvd, tmp_path):
    text = tmp_path / "by-hand.txt"
    text.write_bytes(b'SET greeting "hello world"\n\nset n 41\r\nINCR n\n'
                     b"SET quoted 'it\\'s' \nSET bytes \"\\x00\\xff\\n\"\n")
    result = kvctl(kvd, "import", str(text))
    assert result.returncode == 0, result.stderr
    assert b"imported 5 of 5 commands" in result.stderr  # (the empty line is none)
    client = kvd.client()
    assert client.mget("greeting", "n", "quoted", "bytes") == [
        b"hello world", b"42", b"it's", b"\x00\xff\n"]
    unbalanced = tmp_path / "unbalanced.txt"
    unbalanced.write_bytes(b'SET a "b\n')
    result = kvctl(kvd, "import", str(unbalanced))
    assert result.returncode == 2 and b"unbalanced quotes in request" in result.stderr


def test_import_runs_data_commands_only_unless_allowed(kvd, tmp_path):
    client = kvd.client()
    client.set("precious", "data")
    hostile = tmp_path / "hostile.resp"
    hostile.write_bytes(b"SET a 1\nDEL precious-copy\nFLUSHALL\nSET b 2\n")
    result = kvctl(kvd, "import", str(hostile))
    assert result.returncode == 2
    assert (b"command 3 is FLUSHALL, which is not a data command; the 2 before it were sent"
            in result.stderr)
    assert client.get("precious") == b"data" and client.get("a") == b"1"
    assert client.get("b") is None  # nothing after it either
    for line in (b"CONFIG SET requirepass x", b"EVAL \"return 1\" 0", b"SHUTDOWN NOSAVE",
                 b"BLPOP q 0", b"DEBUG SLEEP 0"):
        hostile.write_bytes(line + b"\n")
        assert kvctl(kvd, "import", str(hostile)).returncode == 2, line
    assert client.ping() is True and client.config_get("requirepass")["requirepass"] == ""
    hostile.write_bytes(b"SELECT 0\nMULTI\nSET c 3\nEXEC\nFLUSHALL\n")
    allowed = kvctl(kvd, "import", "--allow-any", str(hostile))
    assert allowed.returncode == 0, allowed.stderr
    assert client.dbsize() == 0


def test_export_fails_naming_a_key_it_cannot_read_unless_told_to_skip_it(make_daemon):
    from tests.storage.test_damaged_records import damage_value

    kvd = make_daemon("--segment-size", "4096")
    client = kvd.client()
    for i in range(300):
        client.set(b"key-%03d" % i, b"value-%03d-" % i * 4)
    damage_value(kvd.data_dir, b"value-042-" * 4)
    target = os.path.join(kvd.dir, "backup.resp")
    failed = kvctl(kvd, "export", target)
    assert failed.returncode == 4 and b"key-042" in failed.stderr
    assert b"1 keys could not be read" in failed.stderr and not os.path.exists(target)
    skipped = kvctl(kvd, "export", "--skip-corrupt", target)
    assert skipped.returncode == 0 and b"SKIPPED 1 keys" in skipped.stderr
    assert b"key-042" in skipped.stderr and b"exported 299 keys" in skipped.stderr
    assert kvd.info("persistence")["kvd_corrupt_records"] == 1  # two reads, one record
    assert kvd.log().count("corrupt record in") == 1
