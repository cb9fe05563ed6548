"""`kvctl import dump.rdb` against real servers: a dump a real redis-server SAVEd (every
type and encoding Redis 7.0 writes, three databases, TTLs, a stream left out, function
libraries) and the files of older encodings from Redis's own test suite (loaded by
redis-server beside kvd to compare), each key compared with the source; a damaged file
is refused before anything is sent."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import redis

from server.rdb import crc64
from tests.kvd_process import RedisServer, kvd_beside_redis, run_kvctl
from tests.server.test_moving_data import contents, fill_every_encoding

ASSETS = Path(__file__).parent.parent / "assets"
LIBRARY = "#!lua name=lib\nredis.register_function('hello', function() return 'hi' end)"


def kvctl(server, *args: str):
    """kvctl's run, its stderr as text."""
    result = run_kvctl(list(args), cwd=server.dir)
    result.stderr = result.stderr.decode()
    return result


def keyspace(client: redis.Redis) -> dict:
    """Every key's type and contents, and whether it has a TTL."""
    return {key: (contents(client, key), client.pttl(key) > 0) for key in client.keys()}


def test_a_redis_dump_imports_with_every_key_type_and_ttl(tmp_path):
    with kvd_beside_redis(tmp_path, tcp=True) as (kvd, reference):
        source = reference.client()
        fill_every_encoding(source)
        source.set(b"with-ttl", b"v", px=3_600_000)
        source.hset(b"hash-ttl", b"f", b"v")
        source.expire(b"hash-ttl", 7200)
        source.function_load(LIBRARY)
        for db in (1, 5):
            other = redis.Redis(port=reference.port, db=db)
            other.set(b"in-%d" % db, b"%d" % db)
            other.rpush(b"list-%d" % db, b"a", b"b")
            other.close()
        source.xadd(b"grouped", {b"f": b"v"})  # (left out, and counted)
        source.xgroup_create(b"grouped", b"workers")
        source.save()
        dump = tmp_path / "redis" / "dump.rdb"
        result = kvctl(kvd, "import", str(dump))
        assert result.returncode == 0, result.stderr
        assert "left out: 1 x stream with consumer groups" in result.stderr
        assert "and 1 function libraries" in result.stderr
        source.delete(b"grouped")
        for db in (0, 1, 5):
            theirs = redis.Redis(port=reference.port, db=db)
            ours = kvd.client(protocol=2, db=db)
            assert keyspace(ours) == keyspace(theirs), db
            theirs.close()
        ours = kvd.client(protocol=2)
        assert 3_500_000 < ours.pttl(b"with-ttl") <= 3_600_000
        assert ours.fcall("hello", 0) == b"hi"
        again = kvctl(kvd, "import", str(dump))  # existing keys: replaced
        assert again.returncode == 0, again.stderr
        assert ours.dbsize() == source.dbsize()


@pytest.mark.slow
def test_older_encodings_import_as_redis_loads_them(tmp_path):
    """Redis's own test files of zipmaps, ziplists, intsets and v1 quicklists: what
    redis-server loads from each is what kvctl imports from it."""
    for number, name in enumerate(("redis-encodings.rdb", "redis-hash-zipmap.rdb")):
        directory = tmp_path / str(number)  # (short: kvd's socket path must fit in 107 bytes)
        (directory / "redis").mkdir(parents=True)
        shutil.copy(ASSETS / name, directory / "redis" / "dump.rdb")
        reference = RedisServer(directory / "redis", ["--dbfilename", "dump.rdb"])
        try:
            with kvd_beside_redis(directory / "pair") as (kvd, _):
                result = kvctl(kvd, "import", str(ASSETS / name))
                assert result.returncode == 0, result.stderr
                theirs = keyspace(reference.client())
                assert theirs, f"redis-server loaded nothing from {name}"
                assert keyspace(kvd.client(protocol=2)) == theirs
        finally:
            reference.stop()


def test_a_damaged_or_foreign_file_is_refused_before_anything_is_sent(kvd, tmp_path):
    result = kvctl(kvd, "import", str(ASSETS / "redis-corrupt-ziplist.rdb"))
    assert result.returncode == 2 and "cannot read it" in result.stderr
    assert kvd.client().dbsize() == 0
    body = b"REDIS0010\xfe\x00\x00\x01k\x05value\xff"  # SELECTDB 0, "k" -> "value", EOF
    good = body + struct.pack("<Q", crc64(body))
    damaged = tmp_path / "damaged.rdb"
    damaged.write_bytes(good.replace(b"value", b"valuf"))
    result = kvctl(kvd, "import", str(damaged))
    assert result.returncode == 2 and "checksum is wrong" in result.stderr
    truncated = tmp_path / "truncated.rdb"
    truncated.write_bytes(body[:-3])
    result = kvctl(kvd, "import", str(truncated))
    assert result.returncode == 2 and "damaged or truncated" in result.stderr
    assert kvd.client().dbsize() == 0
    (tmp_path / "good.rdb").write_bytes(good)
    assert kvctl(kvd, "import", str(tmp_path / "good.rdb")).returncode == 0
    assert kvd.client().get("k") == b"value"


@pytest.mark.slow
def test_every_type_goes_back_to_redis_as_commands_and_as_an_rdb_file(tmp_path):
    """kvd -> `kvctl export` -> redis-cli --pipe, and kvd -> `kvctl export --rdb` ->
    redis-server loading it at start-up: every key, type, value and TTL, in each
    database, and the function libraries with the RDB file."""
    with kvd_beside_redis(tmp_path / "pair", tcp=True) as (kvd, piped_into):
        for db in (0, 2):
            client = kvd.client(protocol=2, db=db)
            fill_every_encoding(client)
            client.set(b"ttl", b"v", px=3_600_000)
            client.expire(b"hash-big", 7200)
        kvd.client(protocol=2).function_load(LIBRARY)
        expected = {db: keyspace(kvd.client(protocol=2, db=db)) for db in (0, 2)}

        resp_file = tmp_path / "backup.resp"
        result = kvctl(kvd, "export", str(resp_file))
        assert result.returncode == 0, result.stderr
        with open(resp_file, "rb") as f:
            piped = subprocess.run(["redis-cli", "-p", str(piped_into.port), "--pipe"],
                                   stdin=f, capture_output=True, timeout=120)
        assert piped.returncode == 0 and b"errors: 0" in piped.stdout, piped.stdout
        for db in (0, 2):
            assert keyspace(redis.Redis(port=piped_into.port, db=db)) == expected[db], db

        rdb_file = tmp_path / "loaded" / "dump.rdb"
        rdb_file.parent.mkdir()
        result = kvctl(kvd, "export", "--rdb", str(rdb_file))
        assert result.returncode == 0, result.stderr
    loaded = RedisServer(rdb_file.parent, ["--dbfilename", "dump.rdb"])
    try:
        for db in (0, 2):
            assert keyspace(redis.Redis(port=loaded.port, db=db)) == expected[db], db
        assert loaded.client().fcall("hello", 0) == b"hi"
    finally:
        loaded.stop()
