"""The operators' commands against real daemons: MONITOR (through redis-py's monitor()),
SLOWLOG with its settings, CONFIG SET / GET / REWRITE, LASTSAVE."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.kvd_process import kvd_beside_redis, wait_for
from tests.torture.test_differential import RawClient

MONITORED = [(b"SET", b"k", b"v a\"\\\n\x01\xff"), (b"GET", b"k"), (b"MULTI",), (b"INCR", b"n"),
             (b"EXEC",), (b"EVAL", b"redis.call('SET', KEYS[1], '1') return 1", b"1", b"x"),
             (b"CONFIG", b"GET", b"port"), (b"AUTH", b"secret"), (b"NOSUCH",),
             (b"CLIENT", b"SETNAME", b"me"), (b"CLIENT", b"LIST"), (b"SLOWLOG", b"LEN"),
             (b"HELLO", b"2", b"AUTH", b"default", b"pw"), (b"PING",)]


def test_monitor_shows_every_command_as_redis_prints_it(kvd):
    watcher, client = kvd.client(protocol=2), kvd.client(protocol=2)
    with watcher.monitor() as monitor:
        client.set("k", b"v \"\n\xff")
        client.get("k")
        with client.pipeline(transaction=True) as pipe:
            pipe.incr("n").execute()
        client.eval("return redis.call('SET', KEYS[1], '1')", 1, "x")
        client.config_get("port")  # administrative: not shown
        with pytest.raises(redis.RedisError):  # no password is set: refused, still shown
            client.execute_command("AUTH", "not-the-password")
        client.ping()
        seen = []
        while not seen or seen[-1]["command"] != "PING":
            entry = monitor.next_command()
            if not entry["command"].startswith("CLIENT SETINFO"):  # redis-py's own, on connect
                seen.append(entry)
    commands = [entry["command"] for entry in seen]
    assert commands == ['SET k v "\\n\\xff', "GET k", "MULTI", "INCRBY n 1", "EXEC",
                        "EVAL return redis.call('SET', KEYS[1], '1') 1 x", "SET x 1",
                        "AUTH (redacted)", "PING"]
    assert seen[0]["client_type"] == "unix" and seen[6]["client_type"] == "lua"
    assert all(abs(entry["time"] - time.time()) < 60 for entry in seen)


def test_monitor_lines_are_redis_lines(tmp_path):
    """Byte for byte as redis-server writes them, but for the time and the client's port."""
    lines = []
    with kvd_beside_redis(tmp_path, tcp=True) as servers:
        for server in servers:
            watcher = RawClient(("127.0.0.1", server.port), 2)
            assert watcher.call((b"MONITOR",)) == b"+OK\r\n"
            client = RawClient(("127.0.0.1", server.port), 2)
            for command in MONITORED:
                client.call(command)
            received = b""
            while not received.endswith(b'"PING"\r\n'):
                received += watcher.sock.recv(65536)
            lines.append([line.split(b" ", 1)[1].split(b":", 1)[0] + line.split(b"]", 1)[1]
                          for line in received.split(b"\r\n")[:-1]])
            assert all(abs(float(line[1:].split(b" ", 1)[0]) - time.time()) < 60
                       for line in received.split(b"\r\n")[:-1])
            watcher.close()
            client.close()
    assert lines[0] == lines[1]
    assert len(lines[0]) == 11  # not shown: CONFIG, CLIENT LIST, SLOWLOG, an unknown command


def test_a_monitor_that_does_not_read_is_dropped_not_buffered(make_daemon):
    server = make_daemon("--max-output-buffer", "65536")
    sleeper = server.raw()
    sleeper.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    assert sleeper.recv(5) == b"+OK\r\n"
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client = server.client(protocol=2)
    pipe = client.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"key:{i}", "x" * 100)
    pipe.execute()
    wait_for(lambda: "MONITOR client dropped" in server.log(), 30, "the monitor to be dropped")
    assert client.dbsize() == 20_000  # everyone else was served
    sleeper.close()


def test_slowlog_keeps_slow_commands_as_configured(make_daemon):
    server = make_daemon("--slowlog-log-slower-than", "0", "--slowlog-max-len", "3")
    client = server.client(protocol=2, client_name="tester")
    client.slowlog_reset()
    client.set("a", "x" * 200)
    client.mset({f"k{i}": i for i in range(40)})
    entries = client.slowlog_get(-1)
    assert client.slowlog_len() == 3 and len(entries) == 3  # the newest first, at most 3
    mset = entries[0]
    assert mset["command"].startswith(b"MSET k0 0 k1 1")
    assert mset["command"].endswith(b"... (50 more arguments)")  # 32 kept of 81
    assert entries[1]["command"] == b"SET a " + b"x" * 128 + b"... (72 more bytes)"
    assert mset["client_name"] == b"tester" and mset["duration"] >= 0
    assert entries[0]["id"] > entries[1]["id"]
    with pytest.raises(redis.ResponseError, match="count should be greater than or equal to -1"):
        client.slowlog_get(-2)
    assert client.config_set("slowlog-log-slower-than", -1) is True  # off
    client.slowlog_reset()
    client.set("b", "y")
    assert client.slowlog_len() == 0
    assert client.config_set("slowlog-log-slower-than", 0) is True
    client.set("b", "y")
    assert client.slowlog_len() == 1
    # A pipeline's plain SETs are written as one run: each is still logged on its own.
    client.slowlog_reset()
    pipe = client.pipeline(transaction=False)
    for i in range(3):
        pipe.set(f"run{i}", i)
    assert pipe.execute() == [True] * 3
    assert [e["command"] for e in client.slowlog_get(-1)] == [b"SET run2 2", b"SET run1 1",
                                                              b"SET run0 0"]
    pipe.get("run0").get("run1").set("run2", "x")
    assert pipe.execute() == [b"0", b"1", True]
    assert [e["command"] for e in client.slowlog_get(-1)] == [b"SET run2 x", b"GET run1",
                                                              b"GET run0"]


def test_config_set_changes_the_running_server(make_daemon):
    server = make_daemon("--max-clients", "50", "--log-level", "info")
    client = server.client(protocol=2)
    assert client.config_set("maxclients", 2) is True
    assert client.config_get("maxclients") == {"maxclients": "2"}
    second = server.client(protocol=2)
    assert second.ping() is True
    third = server.raw()  # refused with an error at once
    assert b"max number of clients reached" in third.recv(1024)
    third.close()
    second.close()
    assert client.config_set("maxclients", 50) is True

    # Several at once, all or none
    with pytest.raises(redis.ResponseError, match="^CONFIG SET failed \\(possibly related to "
                       "argument 'slowlog-max-len'\\) - argument couldn't be parsed"):
        client.execute_command("CONFIG", "SET", "kvd-auto-compact", "no", "slowlog-max-len", "x")
    assert client.config_get("kvd-auto-compact") == {"kvd-auto-compact": "yes"}
    assert client.execute_command("CONFIG", "SET", "kvd-auto-compact", "no",
                                  "kvd-compaction-rate", "5.5", "loglevel", "debug") == b"OK"
    assert client.config_get("kvd-*compact*") == {
        "kvd-auto-compact": "no", "kvd-auto-compact-ratio": "1",
        "kvd-auto-compact-min-size": str(64 << 20), "kvd-compaction-rate": "5.5"}
    assert client.info("persistence")["auto_compaction"] == 0
    assert client.config_get("loglevel") == {"loglevel": "debug"}
    with pytest.raises(redis.ResponseError, match="can't set immutable config"):
        client.config_set("port", 1234)
    with pytest.raises(redis.ResponseError, match="Unknown option or number of arguments for "
                       "CONFIG SET - 'nosuch'"):
        client.config_set("nosuch", 1)
    with pytest.raises(redis.ResponseError, match="The server is running without a config file"):
        client.config_rewrite()

    # A password set at run time applies to new connections; the current one stays in.
    assert client.config_set("requirepass", "s3cret") is True
    assert client.ping() is True
    with pytest.raises(redis.AuthenticationError):
        server.client(protocol=2).ping()
    assert server.client(protocol=2, password="s3cret").ping() is True
    assert client.config_set("requirepass", "") is True
    assert server.client(protocol=2).ping() is True
    assert "CONFIG SET requirepass = (redacted)" in server.log()
    assert "s3cret" not in server.log()


def test_lastsave_moves_with_durable_writes(kvd):
    client = kvd.client(protocol=2)
    before = client.lastsave()
    wait_for(lambda: int(time.time()) > before.timestamp(), 5, "the clock to tick")
    client.set("k", "v")
    assert client.lastsave().timestamp() > before.timestamp()
    assert client.info("persistence")["rdb_last_save_time"] == int(client.lastsave().timestamp())


def test_latency_monitor_keeps_slow_events_once_enabled(make_daemon):
    server = make_daemon("--enable-debug-command", "yes")
    client = server.client(protocol=2)
    assert client.execute_command("LATENCY", "LATEST") == []
    assert b"Latency monitoring is disabled" in client.execute_command("LATENCY", "DOCTOR")
    assert client.config_set("latency-monitor-threshold", 20) is True
    client.execute_command("DEBUG", "SLEEP", "0.05")
    client.get("fast")  # under the threshold: not kept
    (event, when, ms, worst), = client.execute_command("LATENCY", "LATEST")
    assert event == b"command" and 50 <= ms == worst < 5000 and abs(when - time.time()) < 60
    assert client.execute_command("LATENCY", "HISTORY", "command") == [[when, ms]]
    assert client.execute_command("LATENCY", "RESET") == 1
    assert client.execute_command("LATENCY", "LATEST") == []


def test_commands_after_monitor_in_the_same_read_are_shown(kvd):
    """MONITOR and a SET arriving together: the gate's fast path for GET/SET must not skip
    the monitor that the first request made (nor a MULTI's queueing, test_transactions)."""
    sock = kvd.raw()
    sock.sendall(b"MONITOR\r\nSET a b\r\nGET a\r\n")
    received = b""
    while received.count(b"\r\n") < 5:  # +OK, the two lines, +OK, $1 b
        received += sock.recv(65536)
    assert received.startswith(b"+OK\r\n")
    assert b'"SET" "a" "b"' in received and b'"GET" "a"' in received
    sock.close()


# Each command sent alone; the counters after them are compared with redis-server's.
COUNTED = [
    (b"SET", b"a", b"1"), (b"GET", b"a"), (b"GET", b"nope"), (b"SET", b"a"),  # arity: rejected
    (b"INCR", b"a"), (b"INCR", b"b"), (b"APPEND", b"b", b"x"), (b"INCR", b"b"),  # failed
    (b"NOSUCH", b"x"), (b"CONFIG", b"GET", b"port"), (b"CONFIG", b"NOPE"),
    (b"CONFIG", b"GET"),  # a subcommand's arity
    (b"AUTH", b"pw"),  # failed: no password is set
    (b"MULTI",), (b"SET", b"b", b"2"), (b"AUTH", b"pw"), (b"EXEC",),
    (b"EXEC",),  # without MULTI: failed
    (b"MULTI",), (b"SET", b"c"), (b"EXEC",),  # EXECABORT
    (b"EVAL", b"return redis.pcall('INCR', KEYS[1])", b"1", b"a"),  # the INCR's error only
    (b"EVAL", b"return redis.call('INCR', KEYS[1])", b"1", b"a"),  # once, EVAL failed
    (b"EVAL", b"redis.pcall('SET', KEYS[1]) return 1", b"1", b"a"),  # rejected from a script
    (b"EVAL", b"return redis.error_reply('MYCODE mine')", b"0"),  # a script's own code
    (b"EVAL", b"return x", b"0"),  # a Lua error
    (b"EVALSHA", b"0" * 40, b"0"),  # NOSCRIPT
    (b"MSET", b"p", b"1", b"q"), (b"MGET", b"p", b"q"), (b"INCRBYFLOAT", b"p", b"x"),
]


def _counters(client: RawClient) -> tuple[dict, dict]:
    text = client.call((b"INFO", b"commandstats")).decode() + \
        client.call((b"INFO", b"errorstats")).decode()
    commands, errors = {}, {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            values = dict(field.split("=") for field in fields.split(","))
            commands[name] = (values["calls"], values["rejected_calls"], values["failed_calls"])
        elif line.startswith("errorstat_"):
            code, count = line[len("errorstat_"):].split(":", 1)
            errors[code] = count
    commands.pop("info", None)
    return commands, errors


def test_commandstats_and_errorstats_count_as_redis_does(tmp_path):
    seen = []
    with kvd_beside_redis(tmp_path, tcp=True) as servers:
        for server in servers:
            client = RawClient(("127.0.0.1", server.port), 2)
            assert client.call((b"CONFIG", b"RESETSTAT")) == b"+OK\r\n"
            for command in COUNTED:
                client.call(command)
            seen.append(_counters(client))
    kvd_counters, redis_counters = seen
    assert kvd_counters[0] == redis_counters[0]
    assert kvd_counters[1] == redis_counters[1]
    assert kvd_counters[1]["MYCODE"] == "count=1" and kvd_counters[0]["exec"] == ("3", "0", "2")
