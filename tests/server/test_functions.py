"""Redis 7 functions against real daemons: FUNCTION and FCALL byte for byte against
redis-server in both protocols, payloads moved both ways between kvd and Redis, and
libraries that stay through SIGKILL, restart and compaction -- and a full disk that
refuses a change without losing the libraries there were."""

from __future__ import annotations

import os
from pathlib import Path

import hiredis
import pytest
import redis

from tests.kvd_process import Daemon, RawConnection, wait_for
from tests.server.test_full_disk import small_fs  # noqa: F401 (a fixture)

LIBRARY = b"""#!lua name=mylib
local function set_and_get(keys, args)
  redis.call('SET', keys[1], args[1])
  return redis.call('GET', keys[1])
end
redis.register_function('set_and_get', set_and_get)
redis.register_function{function_name='count_keys', callback=function(keys, args)
  return #keys end, flags={'no-writes'}, description='how many keys'}
redis.register_function('fails', function(keys, args) return redis.call('NOSUCH') end)
redis.register_function('resp3', function(keys, args)
  redis.setresp(3)
  return {map={a=1}, double=3.5}
end)
"""
OTHER = b"#!lua name=other\nredis.register_function('Other_fn', function() return 'o' end)"

STEPS = [  # one request each; every reply is compared with Redis's
    (b"FUNCTION", b"LOAD", LIBRARY),
    (b"FUNCTION", b"LOAD", LIBRARY),  # exists
    (b"FCALL", b"set_and_get", b"1", b"k", b"v"),
    (b"FCALL", b"SET_AND_GET", b"1", b"k", b"w"),  # function names ignore case
    (b"FCALL_RO", b"count_keys", b"2", b"a", b"b"),
    (b"FCALL_RO", b"set_and_get", b"1", b"k", b"v"),  # a write flag with *_RO
    (b"EVAL_RO", b"return redis.call('publish', 'ch', 'msg')", b"0"),  # may-replicate too
    (b"FCALL", b"fails", b"0"),
    (b"FCALL", b"nosuch", b"0"),
    (b"FCALL", b"count_keys", b"x"), (b"FCALL", b"count_keys", b"3", b"a"),
    (b"FCALL", b"count_keys", b"-1"),
    (b"FCALL", b"resp3", b"0"),
    (b"FUNCTION", b"LIST"), (b"FUNCTION", b"LIST", b"WITHCODE"),
    (b"FUNCTION", b"LIST", b"LIBRARYNAME", b"my*"), (b"FUNCTION", b"LIST", b"LIBRARYNAME"),
    (b"FUNCTION", b"LIST", b"bogus"), (b"FUNCTION", b"STATS"),
    (b"FUNCTION", b"LOAD", b"#!lua name=mylib\nredis.register_function('x', 1)"),
    (b"FUNCTION", b"LOAD", b"REPLACE", b"#!lua name=mylib\nreturn 1"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nredis.call('ping')"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nlocal x = string.len('a')"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nredis.register_function('f', function() end"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nredis.register_function{function_name='f'}"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nredis.register_function('a-b', function() end)"),
    (b"FUNCTION", b"LOAD", b"#!lua name=bad\nredis.register_function{function_name='g', "
                           b"callback=function() end, flags={'bogus'}}"),
    (b"FUNCTION", b"LOAD", b"#!lua name=x-y\nreturn 1"), (b"FUNCTION", b"LOAD", b"#!js name=x\n"),
    (b"FUNCTION", b"LOAD", b"#!lua\n"), (b"FUNCTION", b"LOAD", b"no shebang"),
    (b"FUNCTION", b"LOAD", b"#!lua name=\"quoted\"\nredis.register_function('q', "
                           b"function() return 'q' end)"),
    (b"FUNCTION", b"LOAD", b"#!lua name=clash\nredis.register_function('COUNT_KEYS', "
                           b"function() end)"),
    (b"FCALL", b"q", b"0"),
    (b"FUNCTION", b"DELETE", b"quoted"), (b"FUNCTION", b"DELETE", b"quoted"),
    (b"FUNCTION", b"LOAD", OTHER), (b"FCALL", b"other_fn", b"0"),
    (b"FUNCTION", b"FLUSH", b"bogus"), (b"FUNCTION", b"RESTORE", b"bad payload"),
    (b"FUNCTION", b"RESTORE", b"x", b"BOGUS"),
    (b"FUNCTION", b"FLUSH"), (b"FUNCTION", b"LIST"), (b"FCALL", b"count_keys", b"0"),
    (b"FUNCTION", b"STATS"), (b"FUNCTION", b"KILL"),
]


def play(address, protocol: int) -> list:
    connection = RawConnection(address, protocol)
    try:
        connection.call(b"FUNCTION", b"FLUSH")
        replies: list = []
        for step in STEPS:
            reply = connection.call(*step)
            if step[:2] == (b"FUNCTION", b"LIST") and reply[:1] == b"*":
                reply = canonical(reply)  # (Redis lists in its hash tables' order)
            replies.append(reply)
        return replies
    finally:
        connection.close()


def canonical(reply: bytes) -> object:
    """A FUNCTION LIST reply with its libraries and functions in a set order (the reply's
    types are compared as the parser sees them: arrays, maps, sets, nulls)."""
    reader = hiredis.Reader()
    reader.feed(reply)
    parsed = reader.gets()

    def ordered(value: object) -> object:
        if isinstance(value, dict):
            return {key: ordered(item) for key, item in value.items()}
        if isinstance(value, list):
            items = [ordered(item) for item in value]
            if items and all(isinstance(item, (list, dict)) for item in items):
                return sorted(items, key=repr)
            return items
        return value

    return ordered(parsed)


def libraries(client: redis.Redis, withcode: bool = False) -> list[dict]:
    """FUNCTION LIST's libraries as dicts (RESP2 sends each as a flat list of pairs)."""
    return [entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2]))
            for entry in client.function_list(withcode=withcode)]


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_functions_byte_for_byte(pair, protocol):
    kvd, reference = pair
    ours, theirs = play(kvd.socket, protocol), play(("127.0.0.1", reference.port), protocol)
    for step, mine, redis_reply in zip(STEPS, ours, theirs):
        assert mine == redis_reply, step


def test_payloads_move_both_ways(pair):
    """FUNCTION DUMP of Redis (its strings LZF-compressed) restores in kvd, and kvd's in
    Redis; RESTORE's FLUSH, APPEND and REPLACE policies as Redis's."""
    kvd, reference = pair
    ours, theirs = kvd.client(protocol=2), reference.client()
    for client in (ours, theirs):
        client.function_flush()
    theirs.function_load(LIBRARY.decode())
    theirs.function_load(OTHER.decode())
    ours.function_restore(theirs.function_dump())
    listing = {lib[b"library_name"]: lib for lib in libraries(ours, withcode=True)}
    assert set(listing) == {b"mylib", b"other"}
    assert listing[b"mylib"][b"library_code"] == LIBRARY
    assert ours.fcall("set_and_get", 1, "k", "from-redis") == b"from-redis"
    outcomes = []
    for client in (ours, theirs):
        payload = client.function_dump()
        for policy in ("APPEND", "REPLACE", "FLUSH"):
            try:
                outcomes.append(client.function_restore(payload, policy))
            except redis.ResponseError as refused:
                outcomes.append(str(refused))
    for refused_append, *others in (outcomes[:3], outcomes[3:]):
        # (which library clashes first depends on Redis's hash table order)
        assert refused_append in ("Library mylib already exists", "Library other already exists")
        assert others == [True, True]
    theirs.function_flush()
    theirs.function_restore(ours.function_dump())
    assert theirs.fcall("Other_fn", 0) == b"o"
    for client in (ours, theirs):
        client.function_flush()


@pytest.mark.parametrize("engine", ["log", pytest.param("sqlite", marks=pytest.mark.slow)])
def test_libraries_survive_sigkill_compaction_and_restart(make_daemon, engine):
    kvd = make_daemon("--engine", engine)
    client = kvd.client(protocol=2)
    client.function_load(LIBRARY.decode())
    client.function_load(OTHER.decode())
    client.function_delete("other")
    client.set("k", "v")
    kvd.kill()  # SIGKILL right after the replies: no shutdown
    kvd.start()
    client = kvd.client(protocol=2)
    assert [lib[b"library_name"] for lib in libraries(client)] == [b"mylib"]
    assert client.fcall("set_and_get", 1, "k", "again") == b"again"
    client.execute_command("COMPACT")
    wait_for(lambda: kvd.info("persistence")["compactions_completed"] >= 1, 30,
             "the compaction")
    kvd.stop()
    kvd.start()
    client = kvd.client(protocol=2)
    assert client.fcall_ro("count_keys", 2, "a", "b") == 2
    client.flushall()  # (FLUSHALL leaves the libraries, as in Redis)
    assert client.fcall_ro("count_keys", 1, "a") == 1
    client.function_flush()
    kvd.kill()
    kvd.start()
    assert kvd.client(protocol=2).function_list() == []


def test_a_damaged_library_file_stops_the_start_with_a_clear_error(make_daemon):
    kvd = make_daemon()
    kvd.client(protocol=2).function_load(LIBRARY.decode())
    kvd.stop()
    path = Path(kvd.data_dir) / "FUNCTIONS"
    payload = bytearray(path.read_bytes())
    payload[20] ^= 0xFF
    path.write_bytes(bytes(payload))
    failure = kvd.start(check=False)
    assert failure.returncode != 0
    assert "function libraries kept in the data directory do not load" in failure.stderr
    assert "checksum" in failure.stderr


def test_a_full_disk_refuses_a_library_and_keeps_the_old_ones(tmp_path, small_fs):  # noqa: F811
    kvd = Daemon(tmp_path / "srv", ["--data-dir", str(small_fs / "data")], tcp=False)
    kvd.start()
    try:
        client = kvd.client(protocol=2)
        client.function_load(LIBRARY.decode())
        stat = os.statvfs(small_fs)
        (small_fs / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 4096))
        big = "#!lua name=big\n" + "-- " + "x" * 200_000 + "\nredis.register_function('b', " \
              "function() return 1 end)"
        with pytest.raises(redis.ResponseError, match="could not write its function libraries"):
            client.function_load(big)
        assert [lib[b"library_name"] for lib in libraries(client)] == [b"mylib"]
        (small_fs / "filler").unlink()
        assert client.function_load(big) == b"big"
        kvd.stop()
        kvd.start()
        assert {lib[b"library_name"] for lib in libraries(kvd.client(protocol=2))} == {
            b"mylib", b"big"}
    finally:
        kvd.cleanup()


def test_client_pause_write_holds_only_functions_that_may_write(make_daemon):
    kvd = make_daemon()
    admin = kvd.client(protocol=2)
    admin.function_load(LIBRARY.decode())
    assert admin.client_pause(60_000, all=False)
    writer = RawConnection(kvd.socket, 2)
    writer.send(b"FCALL", b"set_and_get", b"1", b"k", b"during")
    reader = kvd.client(protocol=2)
    assert reader.fcall("count_keys", 2, "a", "b") == 2  # no-writes: not held
    assert reader.fcall_ro("count_keys", 1, "a") == 1
    wait_for(lambda: admin.info()["blocked_clients"] == 1, 10, "the writer to be held")
    assert reader.get("k") is None
    assert admin.client_unpause()
    assert writer.read() == b"$6\r\nduring\r\n"
    writer.close()
