"""Removing and holding clients: CLIENT KILL with its filters, CLIENT PAUSE / UNPAUSE,
CLIENT NO-EVICT and the idle `timeout` -- against real daemons (and Redis 7.0 for the
error texts)."""

from __future__ import annotations

import shutil
import signal
import socket
import time

import pytest
import redis

from server.protocol import encode_request
from tests.kvd_process import RawConnection, kvd_beside_redis, read_until, wait_for
from tests.torture.test_differential import answers_beside_redis

REFUSED = [
    (b"CLIENT", b"KILL", b"ID", b"0"), (b"CLIENT", b"KILL", b"ID", b"x"),
    (b"CLIENT", b"KILL", b"TYPE", b"bogus"), (b"CLIENT", b"KILL", b"USER", b"nobody"),
    (b"CLIENT", b"KILL", b"SKIPME", b"maybe"), (b"CLIENT", b"KILL", b"ID"),
    (b"CLIENT", b"KILL", b"1.2.3.4:5"), (b"CLIENT", b"KILL", b"BOGUS", b"1"),
    (b"CLIENT", b"KILL", b"ADDR", b"1.2.3.4:5"), (b"CLIENT", b"KILL", b"TYPE", b"pubsub"),
    (b"CLIENT", b"KILL", b"TYPE", b"replica"), (b"CLIENT", b"KILL", b"LADDR", b"x"),
    (b"CLIENT", b"PAUSE", b"x"), (b"CLIENT", b"PAUSE", b"-1"),
    (b"CLIENT", b"PAUSE", b"10", b"bogus"), (b"CLIENT", b"PAUSE"),
    (b"CLIENT", b"NO-EVICT", b"maybe"), (b"CLIENT", b"NO-EVICT", b"on"),
    (b"CLIENT", b"UNPAUSE", b"now"), (b"CLIENT", b"UNPAUSE"),
]


def test_client_kill_pause_and_no_evict_answer_as_redis(tmp_path):
    """Every refusal and every count, byte for byte as Redis 7.0 (MAXAGE, Redis 7.4's,
    is the one filter Redis 7.0 does not have)."""
    kvd, reference = answers_beside_redis(tmp_path, REFUSED)
    assert kvd == reference
    assert kvd[0] == b"-ERR client-id should be greater than 0\r\n"


def send(sock: socket.socket, *args: bytes) -> None:
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a)
                                                     for a in args))


def read_exactly(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    return received


def named(sock: socket.socket, name: bytes) -> socket.socket:
    """A raw connection, named (redis-py would reconnect quietly after a kill)."""
    send(sock, b"CLIENT", b"SETNAME", name)
    assert read_exactly(sock, 5) == b"+OK\r\n"
    return sock


def gone(sock: socket.socket) -> bool:
    """Whether the server closed `sock` (its next read is the end of the stream)."""
    try:
        send(sock, b"PING")
        return sock.recv(7) == b""
    except (BrokenPipeError, ConnectionResetError):
        return True


def clients(admin: redis.Redis) -> dict[str, dict]:
    return {entry["name"]: entry for entry in admin.client_list()}


def test_client_kill_closes_the_clients_every_filter_matches(make_daemon):
    server = make_daemon(tcp=True)
    admin = server.client(protocol=2, client_name="admin")
    first, second = named(server.raw(), b"first"), named(server.raw(), b"second")
    over_tcp = named(socket.create_connection(("127.0.0.1", server.port), 10), b"tcp")
    listed = clients(admin)

    assert admin.execute_command("CLIENT", "KILL", "ID", listed["first"]["id"]) == 1
    assert gone(first) and not gone(second)
    assert "first" not in clients(admin)

    tcp_entry = listed["tcp"]
    assert admin.execute_command("CLIENT", "KILL", "ADDR", tcp_entry["addr"],
                                 "LADDR", "127.0.0.1:1") == 0  # every filter must match
    assert admin.execute_command("CLIENT", "KILL", "LADDR", tcp_entry["laddr"]) == 1
    assert gone(over_tcp)

    third = named(server.raw(), b"third")
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "USER", "default",
                                 "MAXAGE", "3600") == 0  # none is an hour old
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal") == 2  # not the caller
    assert gone(second) and gone(third) and admin.ping()
    # SKIPME no: the caller too, after its reply.
    me = named(server.raw(), b"me")
    send(me, b"CLIENT", b"KILL", b"ID", clients(admin)["me"]["id"].encode(), b"SKIPME", b"no")
    assert read_exactly(me, 4) == b":1\r\n"
    assert me.recv(1) == b""
    assert "killed (CLIENT KILL)" in server.log()
    for sock in (first, second, third, over_tcp, me):
        sock.close()


def test_client_kill_by_address_in_the_old_form(make_daemon):
    server = make_daemon(tcp=True)
    admin = server.client(protocol=2)
    victim = named(socket.create_connection(("127.0.0.1", server.port), 10), b"v")
    address = clients(admin)["v"]["addr"]
    assert admin.execute_command("CLIENT", "KILL", address) == b"OK"
    assert gone(victim)
    with pytest.raises(redis.ResponseError, match="No such client"):
        admin.execute_command("CLIENT", "KILL", address)
    victim.close()


def nothing_to_read(sock: socket.socket, seconds: float = 0.3) -> bool:
    """Whether `sock` stays silent for `seconds` (a held request must not be answered)."""
    sock.settimeout(seconds)
    try:
        return not sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(10)


def test_client_pause_write_holds_writes_until_unpause(make_daemon):
    server = make_daemon()
    admin = server.client(protocol=2)
    admin.set("k", "before")
    assert admin.client_pause(60_000, all=False)
    writer = server.raw()
    send(writer, b"SET", b"k", b"during")
    send(writer, b"GET", b"k")  # after a held write: waits with it
    reader = server.client(protocol=2)
    assert reader.get("k") == b"before"  # reads go on
    assert reader.eval("#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", 1,
                       "k") == b"before"  # so do scripts that declare they do not write
    publisher = server.raw()
    send(publisher, b"PUBLISH", b"ch", b"msg")  # may-replicate, as Redis flags it: held
    assert nothing_to_read(writer) and nothing_to_read(publisher)
    wait_for(lambda: admin.info()["blocked_clients"] == 2, 10,
             "the writer and the publisher to be held")
    assert any("flags=b" in line for line in
               admin.execute_command("CLIENT", "LIST").decode().splitlines())
    assert admin.client_unpause()
    assert read_exactly(writer, 17) == b"+OK\r\n$6\r\nduring\r\n"
    assert read_exactly(publisher, 4) == b":0\r\n"
    writer.close()
    publisher.close()
    assert reader.get("k") == b"during"
    assert admin.info()["blocked_clients"] == 0


def test_client_pause_all_holds_every_command_and_ends_by_itself(make_daemon):
    server = make_daemon()
    admin = server.client(protocol=2)
    held = server.raw()
    started = time.monotonic()
    assert admin.client_pause(700)  # ALL, for 0.7 s
    send(held, b"PING")
    assert nothing_to_read(held, 0.2)
    assert read_exactly(held, 7) == b"+PONG\r\n"  # the deadline ended it
    assert time.monotonic() - started >= 0.7
    held.close()


def test_keys_do_not_expire_while_writes_are_paused(make_daemon):
    """A paused dataset does not change: a key past its deadline reads as missing, and
    is deleted once the pause ends (Redis 7.0: pause.tcl's expire tests)."""
    server = make_daemon()
    admin = server.client(protocol=2)
    admin.set("short", "v", px=50)
    admin.set("kept", "v")
    admin.client_pause(60_000, all=False)
    wait_for(lambda: admin.get("short") is None, 10, "the key to read as missing")
    assert admin.info()["expired_keys"] == 0  # neither lazily nor actively expired
    assert admin.dbsize() == 2
    admin.client_unpause()
    wait_for(lambda: admin.dbsize() == 1, 10, "active expiry to resume")
    assert admin.info()["expired_keys"] == 1


@pytest.mark.slow
def test_sigterm_during_a_pause_runs_what_was_held_then_exits(make_daemon):
    """The held write was read before the shutdown: it is answered, and it is durable."""
    server = make_daemon()
    admin = server.client(protocol=2)
    admin.client_pause(60_000, all=False)
    writer = server.raw()
    send(writer, b"SET", b"k", b"held")
    wait_for(lambda: admin.info()["blocked_clients"] == 1, 10, "the writer to be held")
    admin.close()
    server.signal(signal.SIGTERM)
    assert read_exactly(writer, 5) == b"+OK\r\n"
    writer.close()
    server.wait_exit(30)
    server.start()
    assert server.client(protocol=2).get("k") == b"held"


@pytest.mark.slow
def test_an_idle_client_is_closed_after_the_timeout(make_daemon):
    server = make_daemon("--client-timeout", "1")
    admin = server.client(protocol=2)
    assert admin.config_get("timeout") == {"timeout": "1"}
    idle = server.raw()
    send(idle, b"PING")
    assert read_exactly(idle, 7) == b"+PONG\r\n"
    watcher = server.raw()
    send(watcher, b"MONITOR")
    assert read_exactly(watcher, 5) == b"+OK\r\n"
    idle.settimeout(30)
    assert idle.recv(1) == b""  # closed by the server, unprompted
    assert "idle (timeout)" in server.log()
    # A MONITOR waits for the server, not the other way round: it stays. (The idle admin
    # was closed too; redis-py reconnects.)
    admin.ping()
    read_until(watcher, b'"PING"')
    # CONFIG SET timeout 0 turns it off.
    admin.config_set("timeout", 0)
    quiet = server.raw()
    send(quiet, b"PING")
    assert read_exactly(quiet, 7) == b"+PONG\r\n"
    time.sleep(2.5)  # longer than the old timeout: nothing to wait for but time itself
    send(quiet, b"PING")
    assert read_exactly(quiet, 7) == b"+PONG\r\n"
    for sock in (watcher, quiet):
        sock.close()


def test_client_no_evict_is_shown_in_client_list(kvd):
    client = kvd.client(protocol=2)
    assert client.execute_command("CLIENT", "NO-EVICT", "on") == b"OK"
    assert "e" in client.client_info()["flags"]
    assert client.execute_command("CLIENT", "NO-EVICT", "off") == b"OK"
    assert "e" not in client.client_info()["flags"]


@pytest.mark.slow
def test_a_copy_of_the_data_directory_taken_while_writes_are_paused_serves_that_instant(
        make_daemon, tmp_path):
    """The README's online backup: pause writes (compaction off), copy, unpause."""
    server = make_daemon()
    admin = server.client(protocol=2)
    admin.mset({f"key:{i}": f"v{i}" for i in range(2000)})
    admin.set("expiring", "v", px=300)
    assert admin.config_set("kvd-auto-compact", "no")
    assert admin.info("persistence")["compaction_in_progress"] == 0
    assert admin.client_pause(60_000, all=False)
    writer = server.raw()
    send(writer, b"SET", b"late", b"after the copy")
    wait_for(lambda: admin.info()["blocked_clients"] == 1, 10, "the writer to be held")
    time.sleep(0.4)  # let "expiring" pass its deadline during the copy
    copy = tmp_path / "backup"
    shutil.copytree(server.data_dir, copy)
    assert admin.client_unpause()
    assert read_exactly(writer, 5) == b"+OK\r\n"
    writer.close()
    restored = make_daemon("--data-dir", str(copy), subdir="restored")
    client = restored.client(protocol=2)
    assert client.dbsize() == 2000  # "expiring" expired: gone at start, as on the original
    assert client.get("key:1999") == b"v1999" and client.get("late") is None


REPLY_SCRIPT = [  # CLIENT REPLY's states, pipelined; the last reply is "end"
    ("CLIENT", "REPLY", "OFF"), ("SET", "a", "1"), ("GET", "a"), ("NOSUCH",),
    ("CLIENT", "REPLY", "ON"), ("GET", "a"), ("CLIENT", "REPLY", "SKIP"), ("GET", "a"),
    ("ECHO", "x"), ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"),
    ("CLIENT", "REPLY", "bogus"), ("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"),
    ("ECHO", "hidden"), ("CLIENT", "REPLY", "ON"), ("CLIENT", "REPLY", "SKIP"),
    ("CLIENT", "REPLY", "SKIP"), ("ECHO", "skipped"), ("ECHO", "shown"),
    ("CLIENT", "REPLY", "SKIP"), ("BLPOP", "q", "0.05"), ("ECHO", "after"),
    ("CLIENT", "REPLY", "OFF"), ("SUBSCRIBE", "ch"), ("PUBLISH", "ch", "to-myself"),
    ("UNSUBSCRIBE", "ch"), ("CLIENT", "REPLY", "ON"), ("ECHO", "end"),
]


def pipelined_until_end(connection: RawConnection, script: list[tuple]) -> bytes:
    """Every byte answered to `script`, sent in one write, up to the final ECHO end."""
    try:
        connection.sock.sendall(b"".join(
            encode_request(*(part.encode() for part in request)) for request in script))
        received = b""
        while not received.endswith(b"$3\r\nend\r\n"):
            chunk = connection.sock.recv(65536)
            assert chunk, f"closed after {received!r}"
            received += chunk
        return received
    finally:
        connection.close()


def replies_to_script(address, protocol: int) -> bytes:
    return pipelined_until_end(RawConnection(address, protocol), REPLY_SCRIPT)


def test_client_reply_on_off_skip_as_redis(tmp_path):
    """CLIENT REPLY: OFF drops every reply until ON, SKIP the next command's (a blocking
    one's too), errors included; (un)subscribe confirmations and messages still come
    (RESP2 refuses the PUBLISH of a subscribed client: its error is dropped too)."""
    with kvd_beside_redis(tmp_path, tcp=True) as (kvd, reference):
        for protocol in (2, 3):
            ours = replies_to_script(kvd.socket, protocol)
            theirs = replies_to_script(("127.0.0.1", reference.port), protocol)
            assert ours == theirs, protocol
            assert b"hidden" not in ours and b"skipped" not in ours and b"shown" in ours


RESET_SCRIPT = [  # pipelined after HELLO 3 AUTH; the last reply is "end"
    ("SELECT", "3"), ("SET", "k", "in-3"), ("CLIENT", "GETNAME"),
    ("CLIENT", "SETNAME", "before"), ("WATCH", "k"), ("MULTI",), ("SET", "a", "1"),
    ("RESET",), ("CLIENT", "GETNAME"), ("AUTH", "pw"), ("CLIENT", "GETNAME"), ("GET", "k"),
    ("EXEC",), ("SUBSCRIBE", "ch"), ("RESET",), ("AUTH", "pw"), ("PING",),
    ("CLIENT", "REPLY", "OFF"), ("ECHO", "hidden"), ("RESET",), ("AUTH", "pw"), ("GET", "a"),
    ("ECHO", "end"),
]


def replies_to_reset(address) -> bytes:
    connection = RawConnection(address, 2)
    assert connection.call(b"HELLO", b"3", b"AUTH", b"default", b"pw").startswith(b"%7")
    return pipelined_until_end(connection, RESET_SCRIPT)


def test_reset_as_redis(tmp_path):
    """RESET: out of MULTI (the queued SET never runs), WATCH, subscriptions and CLIENT
    REPLY OFF; database 0, RESP2, no name, and a password to give again."""
    with kvd_beside_redis(tmp_path, tcp=True, password="pw") as (kvd, reference):
        ours = replies_to_reset(kvd.socket)
        theirs = replies_to_reset(("127.0.0.1", reference.port))
    assert ours == theirs
    assert ours.count(b"+RESET\r\n") == 3 and b"NOAUTH" in ours and b"hidden" not in ours
    assert b"_\r\n" in ours and b"$-1\r\n" in ours  # RESP3's null, then RESP2's
