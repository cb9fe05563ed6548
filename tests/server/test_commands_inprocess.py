"""The fast tier: commands run in this process, through the real gate, against a keyspace on
a temporary store -- no daemon, no socket I/O. The daemon tests (test_commands.py and
the differential tests) check the same commands end to end."""

from __future__ import annotations

import os
import socket

import pytest

from server.commit import GroupCommit
from server.config import Config
from server.connection import Connection
from server.context import REDIS_VERSION, Auth, Context
from server.databases import Databases
from server.dispatch import Dispatcher
from server.functions import Functions
from server.latency import LatencyMonitor
from server.monitor import Monitors
from server.pause import ClientPause
from server.protocol import RequestParser
from server.scripting import Scripts
from server.slowlog import SlowLog
from server.stats import Stats
from server.timers import Timers
from storage import StorageError, open_store
from storage.layout import segment_ids, segment_name


class StandInControl:
    """Control as a test sees it: records what commands ask of the server."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config
        self.shutdowns: list[str] = []
        self.compactions: list[str] = []
        self.conns: list[Connection] = []
        self.killed: list[Connection] = []

    def request_shutdown(self, reason: str) -> None:
        self.shutdowns.append(reason)

    def request_compaction(self, source: str) -> None:
        self.compactions.append(source)

    def connections(self):
        return self.conns

    def kill(self, conn) -> None:
        self.conns.remove(conn)
        self.killed.append(conn)

    def serve_while_busy(self, caller) -> None:
        """No other clients here to serve."""

    def reconfigure(self, changes: dict) -> str | None:
        for field, value in changes.items():
            setattr(self.config, field, value)
        return None

    def figures(self) -> dict:
        return {"tcp_port": 0, "uptime_s": 1.0, "max_clients": 10, "write_error": None,
                "compaction": {"compaction_in_progress": 0}, "compaction_running_s": None,
                "longest_pass_ms": 0,
                "slow_passes": 0, "watchdog_stack_dumps": 0}


class Harness:
    def __init__(self, data_dir: str, engine: str = "log", password: str | None = None,
                 **limits) -> None:
        self.store = open_store(data_dir, engine=engine)
        self.stats = Stats()
        self.config = Config(requirepass=password, **limits)
        self.databases = Databases(self.store, self.stats, self.config.max_key_size,
                                   self.config.max_value_size, self.config.databases)
        self.keyspace = self.databases[0]
        self.control = StandInControl(self.config)
        self.commit = GroupCommit(self.store, self.stats)
        self.scripts = Scripts(self.config, REDIS_VERSION)
        self.timers = Timers()
        self.resumed: list[Connection] = []  # the clients a CLIENT PAUSE held, once it ends
        self.functions = Functions(self.scripts, self.store)
        self.pause = ClientPause(self.timers, self.databases, self.resumed.extend,
                                 self.functions.may_write)
        self.gate = Dispatcher(Context(self.keyspace, self.stats, self.config, self.control,
                                       Auth(password), self.scripts, Monitors(""),
                                       SlowLog(-1, 128), LatencyMonitor(0), self.pause,
                                       self.databases, self.functions),
                               self.commit)
        self._sockets = socket.socketpair()
        parser = RequestParser(1 << 20, 1 << 20, unauthenticated=password is not None)
        self.conn = Connection(self._sockets[0], "test:0", "unix", parser)
        self.control.conns.append(self.conn)

    def __call__(self, *args: bytes | str) -> bytes:
        """Run one request through the gate and the group commit; its reply bytes."""
        request = [a.encode() if isinstance(a, str) else a for a in args]
        self.gate.run(self.conn, [request])
        self.commit.commit([self.conn])
        self.conn.write_slots.clear()
        reply = b"".join(self.conn.replies)
        self.conn.replies.clear()
        return reply

    def pipeline(self, *requests: list[bytes | str]) -> list[bytes]:
        """Run requests as one pipelined read, through the gate and the group commit:
        their replies, one each."""
        encoded = [[a.encode() if isinstance(a, str) else a for a in r] for r in requests]
        self.gate.run(self.conn, encoded)
        self.commit.commit([self.conn])
        self.conn.write_slots.clear()
        replies = list(self.conn.replies)
        self.conn.replies.clear()
        return replies

    def close(self) -> None:
        self.store.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture(params=["log", "sqlite"])
def run(request, tmp_path):
    harness = Harness(str(tmp_path / "data"), engine=request.param)
    yield harness
    harness.close()


def test_strings(run):
    assert run("SET", "k", "v") == b"+OK\r\n"
    assert run("GET", "k") == b"$1\r\nv\r\n"
    assert run("GET", "nope") == b"$-1\r\n"
    assert run("SET", "k", "w", "NX") == b"$-1\r\n"
    assert run("SET", "k", "w", "XX", "GET") == b"$1\r\nv\r\n"
    assert run("APPEND", "k", "xyz") == b":4\r\n"
    assert run("INCR", "n") == b":1\r\n"
    assert run("INCRBY", "k", "1") == b"-ERR value is not an integer or out of range\r\n"
    assert run("MGET", "k", "nope", "n") == b"*3\r\n$4\r\nwxyz\r\n$-1\r\n$1\r\n1\r\n"
    assert run("GETDEL", "n") == b"$1\r\n1\r\n"
    assert run("EXISTS", "n", "k") == b":1\r\n"


def test_the_gate(run):
    assert run("NOPE", "a") == b"-ERR unknown command 'NOPE', with args beginning with: 'a' \r\n"
    assert run("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert run("get", "k") == b"$-1\r\n"  # any case
    assert run.stats.commands_processed == 3 and run.stats.error_replies == 2


def test_mset_is_one_write_batch_checked_whole(tmp_path):
    harness = Harness(str(tmp_path / "data"), max_value_size=10, max_request_size=1 << 20)
    try:
        assert harness("MSET", "a", "1", "b", "x" * 11).startswith(b"-ERR value is too large")
        assert harness("EXISTS", "a", "b") == b":0\r\n"  # nothing of it was written
        batches = []
        harness.store.write_batch = lambda ops, db=0, real=harness.store.write_batch: (
            batches.append(list(ops)), real(ops, db))
        assert harness("MSET", "a", "1", "b", "2") == b"+OK\r\n"
        assert batches == [[(b"a", b"1"), (b"b", b"2")]]
        assert harness("MGET", "a", "b") == b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    finally:
        harness.close()


def test_hits_and_misses_are_counted_by_every_read_and_no_write(run):
    run("SET", "k", "v")
    for request in (("GET", "k"), ("MGET", "k", "no"), ("STRLEN", "k"), ("EXISTS", "no"),
                    ("TYPE", "k"), ("GETSET", "k", "w"), ("TTL", "no")):
        run(*request)
    assert (run.stats.keyspace_hits, run.stats.keyspace_misses) == (5, 3)
    for request in (("APPEND", "k", "x"), ("INCR", "n"), ("SET", "k", "v", "NX"), ("DEL", "k")):
        run(*request)
    assert (run.stats.keyspace_hits, run.stats.keyspace_misses) == (5, 3)


def test_keys_scan_and_patterns(run):
    for name in ("user:1", "user:2", "item:1"):
        run("SET", name, "x")
    assert sorted(run("KEYS", "user:*").split(b"\r\n")[2::2]) == [b"user:1", b"user:2"]
    reply = run("SCAN", "0", "MATCH", "item:*", "COUNT", "100")
    assert reply == b"*2\r\n$1\r\n0\r\n*1\r\n$6\r\nitem:1\r\n"
    assert run("DBSIZE") == b":3\r\n"
    assert run("FLUSHALL") == b"+OK\r\n" and run("DBSIZE") == b":0\r\n"


def test_server_commands_reach_the_control_handle(run):
    assert run("COMPACT") == b"+Background compaction requested\r\n"
    assert run.control.compactions == ["COMMAND"]
    assert run("SHUTDOWN") == b"+OK\r\n"
    assert run.control.shutdowns == ["SHUTDOWN command"]
    assert b"connected_clients:1" in run("INFO", "clients")
    assert run("CONFIG", "GET", "maxclients") == b"*2\r\n$10\r\nmaxclients\r\n$2\r\n10\r\n"
    assert run("CLIENT", "LIST").startswith(b"$") and b"addr=test:0" in run("CLIENT", "LIST")


def test_auth_before_anything_else(tmp_path):
    harness = Harness(str(tmp_path / "data"), password="s3cret")
    try:
        assert harness("GET", "k") == b"-NOAUTH Authentication required.\r\n"
        # A command Redis has and kvd has not: Redis's gate checks arity, then auth.
        assert harness("SYNC") == b"-NOAUTH Authentication required.\r\n"
        assert harness("SYNC", "x").startswith(b"-ERR wrong number of arguments for 'sync'")
        assert harness("NOSUCH").startswith(b"-ERR unknown command 'NOSUCH'")
        assert harness("AUTH", "wrong") == (b"-WRONGPASS invalid username-password pair or "
                                            b"user is disabled.\r\n")
        assert harness("AUTH", "s3cret") == b"+OK\r\n"
        assert harness("GET", "k") == b"$-1\r\n"
        assert harness("SYNC").startswith(b"-ERR unknown command 'SYNC'")
        assert harness("MULTI") == b"+OK\r\n"  # inside MULTI, one that may not be queued
        assert harness("SAVE") == b"-ERR Command not allowed inside a transaction\r\n"
        assert harness("EXEC").startswith(b"-EXECABORT Transaction discarded")
    finally:
        harness.close()


def test_a_failed_flush_turns_the_writes_of_the_pass_into_errors(run):
    real_flush = run.store.flush

    def full_disk():
        raise StorageError("No space left on device")

    run.store.flush = full_disk
    assert run("SET", "k", "v").startswith(b"-ERR write not acknowledged: No space left")
    assert run("SET", "k", "v").startswith(b"-MISCONF writes are refused")
    assert run("GET", "x") == b"$-1\r\n"  # reads still work
    run.store.flush = real_flush
    assert run("SET", "k", "v") == b"+OK\r\n"


@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_a_pipelined_run_of_sets_is_written_before_anything_after_it(engine, tmp_path):
    """Plain SETs are gathered into a run and written in one call to the store: a GET,
    another command, an oversized SET, and the reply order all see them as one by one."""
    harness = Harness(str(tmp_path / "data"), engine=engine, max_value_size=8)
    try:
        ok = b"+OK\r\n"
        assert harness.pipeline(
            ["SET", "a", "1"], ["SET", "b", "2"], ["GET", "a"], ["SET", "a", "3"],
            ["set", "c", "4"], ["GET", "a"], ["SET", "d", "x" * 9], ["SET", "e", "5"],
            ["APPEND", "e", "6"], ["SET", "a", "7"], ["SET", "f", "8"],
        ) == [ok, ok, b"$1\r\n1\r\n", ok, ok, b"$1\r\n3\r\n",
              b"-ERR value is too large (9 bytes; --max-value-size is 8)\r\n",
              ok, b":2\r\n", ok, ok]
        assert harness("MGET", "a", "b", "c", "d", "e", "f") == (
            b"*6\r\n$1\r\n7\r\n$1\r\n2\r\n$1\r\n4\r\n$-1\r\n$2\r\n56\r\n$1\r\n8\r\n")
        hits, misses = harness.stats.keyspace_hits, harness.stats.keyspace_misses
        assert harness.pipeline(["GET", "a"], ["GET", "d"], ["GET", "f"], ["get", "nope"]) == [
            b"$1\r\n7\r\n", b"$-1\r\n", b"$1\r\n8\r\n", b"$-1\r\n"]
        stats = harness.stats
        assert (stats.keyspace_hits - hits, stats.keyspace_misses - misses) == (2, 2)
        harness("SET", "t", "v", "EX", "100")
        assert harness.pipeline(["SET", "t", "w"], ["TTL", "t"]) == [ok, b":-1\r\n"]  # cleared
        assert harness.stats.writes_processed == 11  # the refused SET too, as before runs
    finally:
        harness.close()


def test_a_run_of_sets_stopped_by_a_storage_error_answers_the_rest_with_it(run):
    real_put_many = run.store.put_many

    def fails_after_two(pairs, db=0):
        real_put_many(pairs[:2], db)
        exc = StorageError("write to 00000002.seg failed: No space left on device")
        exc.items_written = 2
        raise exc

    run.store.put_many = fails_after_two
    failed = b"-ERR storage error: write to 00000002.seg failed: No space left on device\r\n"
    assert run.pipeline(["SET", "a", "1"], ["SET", "b", "2"], ["SET", "c", "3"],
                        ["SET", "d", "4"], ["GET", "c"]) == [
        b"+OK\r\n", b"+OK\r\n", failed, failed, b"$-1\r\n"]
    run.store.put_many = real_put_many
    assert run("MGET", "a", "b", "c") == b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"


def test_a_damaged_record_fails_only_its_own_get_in_a_run(tmp_path):
    harness = Harness(str(tmp_path / "data"))
    try:
        for key in (b"a", b"b", b"c"):
            harness("SET", key, key * 100)
        store = harness.store
        store._cache.clear()
        store._cache_limit = 0  # every GET reads its record
        segment = os.path.join(store.directory, segment_name(segment_ids(store.directory)[-1]))
        location = store._slots.space(0).locations[b"b"]
        with open(segment, "r+b") as f:  # a bit flipped inside b's value
            f.seek(((location >> 32) & 0xFFFFFFFF) + 40)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x04]))
        replies = harness.pipeline(["GET", "a"], ["GET", "b"], ["GET", "c"])
        assert replies[0] == b"$100\r\n" + b"a" * 100 + b"\r\n"
        assert replies[1].startswith(b"-ERR storage error: ") and b"checksum" in replies[1]
        assert replies[2] == b"$100\r\n" + b"c" * 100 + b"\r\n"
    finally:
        harness.close()


def test_hashes_on_both_engines(run):
    assert run("HSET", "h", "a", "1", "b", "2") == b":2\r\n"
    assert run("HGETALL", "h") == b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
    assert run("TYPE", "h") == b"+hash\r\n"
    assert run("GET", "h").startswith(b"-WRONGTYPE")
    assert run.pipeline(["GET", "x"], ["GET", "h"], ["GET", "x"])[1].startswith(b"-WRONGTYPE")
    assert run("MGET", "h", "x") == b"*2\r\n$-1\r\n$-1\r\n"
    assert run("HDEL", "h", "a", "b") == b":2\r\n"
    assert run("EXISTS", "h") == b":0\r\n"  # an empty hash is no hash
    assert run("HSET", "h", "c", "3") == b":1\r\n"
    run.store.flush()
    run.store.compact()
    assert run("HGET", "h", "c") == b"$1\r\n3\r\n" and run("TYPE", "h") == b"+hash\r\n"


def test_a_refused_hset_leaves_the_hash_as_it_was_even_when_decoded_before(tmp_path):
    """Hashes are decoded once per record (commands/hashes.py's cache): a write that is
    refused half-way must not have changed the decoded hash that reads go on using."""
    harness = Harness(str(tmp_path / "data"), max_value_size=10)
    try:
        assert harness("HSET", "h", "a", "1") == b":1\r\n"
        assert harness("HGET", "h", "a") == b"$1\r\n1\r\n"  # decoded, kept
        assert harness("HSET", "h", "a", "2", "b", "x" * 11).startswith(b"-ERR value is too")
        assert harness("HGETALL", "h") == b"*2\r\n$1\r\na\r\n$1\r\n1\r\n"
        assert harness("HSET", "h", "a", "3") == b":0\r\n"
        assert harness("HGET", "h", "a") == b"$1\r\n3\r\n"  # the new record, decoded anew
    finally:
        harness.close()
