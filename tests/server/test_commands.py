"""Every command through redis-py (in RESP3, its default, and in RESP2) and redis-cli
against a real daemon."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import redis

from tests.kvd_process import wait_for


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def r(request, shared_kvd):
    client = shared_kvd.client(protocol=request.param)
    client.flushall()
    return client


def test_get_set_and_binary_values(r):
    value = bytes(range(256)) * 4
    assert r.set(b"\x00bin\r\nkey\xff", value) is True
    assert r.get(b"\x00bin\r\nkey\xff") == value
    assert r.get("missing") is None
    assert r.set("empty", b"") is True
    assert r.get("empty") == b""


def test_set_options(r):
    assert r.set("k", "1", nx=True) is True
    assert r.set("k", "2", nx=True) is None
    assert r.set("other", "1", xx=True) is None
    assert r.set("k", "3", xx=True) is True
    assert r.set("k", "4", get=True) == b"3"
    assert r.set("new", "v", get=True) is None
    assert r.set("k", "5", keepttl=True) is True
    assert r.get("k") == b"5"
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "BOGUS")


def test_set_with_a_ttl_and_the_ttl_commands(r):
    now = time.time()
    assert r.set("ex", "v", ex=100) is True
    assert r.set("px", "v", px=100_000) is True
    assert r.set("exat", "v", exat=int(now) + 100) is True
    assert r.set("pxat", "v", pxat=int(now * 1000) + 100_000) is True
    for key in ("ex", "px", "exat", "pxat"):
        assert 98 <= r.ttl(key) <= 100 and 98_000 <= r.pttl(key) <= 100_000
        assert r.get(key) == b"v"
    assert abs(r.expiretime("exat") - (int(now) + 100)) <= 1
    assert r.ttl("nope") == -2 and r.pttl("nope") == -2
    r.set("plain", "v")
    assert r.ttl("plain") == -1 and r.expiretime("plain") == -1
    assert r.execute_command("SETEX", "sx", 100, "v") in (True, b"OK")
    assert r.execute_command("PSETEX", "psx", 100_000, "v") in (True, b"OK")
    assert r.ttl("sx") == 100 and 99 <= r.ttl("psx") <= 100
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.set("bad", "v", ex=0)
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'setex' command"):
        r.execute_command("SETEX", "bad", -1, "v")
    assert r.exists("bad") == 0


def test_what_keeps_and_what_clears_a_ttl(r):
    r.set("k", "1", ex=100)
    r.incr("k")
    r.append("k", "0")
    assert r.get("k") == b"20" and r.ttl("k") == 100  # INCR and APPEND keep it
    r.set("k", "3", keepttl=True)
    assert r.ttl("k") == 100
    r.set("k", "4")
    assert r.ttl("k") == -1  # a plain SET clears it
    r.set("k", "5", ex=100)
    r.getset("k", "6")
    assert r.ttl("k") == -1
    r.set("k", "7", ex=100)
    r.mset({"k": "8"})
    assert r.ttl("k") == -1


def test_expire_family_options_and_persist(r):
    r.set("k", "v")
    assert r.expire("nope", 10) is False
    assert r.expire("k", 100, xx=True) is False  # no TTL yet
    assert r.expire("k", 100, nx=True) is True and r.ttl("k") == 100
    assert r.expire("k", 50, gt=True) is False and r.expire("k", 200, gt=True) is True
    assert r.expire("k", 300, lt=True) is False and r.pexpire("k", 150_000, lt=True) is True
    assert 149 <= r.ttl("k") <= 150
    assert r.expireat("k", int(time.time()) + 500) is True and 499 <= r.ttl("k") <= 500
    assert r.pexpireat("k", int(time.time() * 1000) + 600_000) is True
    assert r.persist("k") is True and r.ttl("k") == -1 and r.persist("k") is False
    with pytest.raises(redis.ResponseError, match="NX and XX, GT or LT options at the same time"):
        r.execute_command("EXPIRE", "k", 10, "NX", "GT")
    with pytest.raises(redis.ResponseError, match="Unsupported option FOO"):
        r.execute_command("EXPIRE", "k", 10, "FOO")
    assert r.expire("k", -1) is True and r.exists("k") == 0  # a deadline passed deletes
    for command in ("EXPIREAT", "PEXPIREAT"):  # at the epoch itself too (0 is no "none")
        r.set("k", "v")
        assert r.execute_command(command, "k", 0) == 1 and r.exists("k") == 0
        assert r.dbsize() == 0


def test_getex(r):
    r.set("k", "v")
    assert r.getex("k", ex=100) == b"v" and r.ttl("k") == 100
    assert r.getex("k", persist=True) == b"v" and r.ttl("k") == -1
    assert r.getex("nope", ex=10) is None
    assert r.getex("k", pxat=int(time.time() * 1000) - 1) == b"v"
    assert r.exists("k") == 0


def test_keys_expire_when_read_and_when_nobody_reads_them(r):
    r.set("read", "v", px=50)
    r.set("unread", "v", px=50)
    r.set("kept", "v", ex=100)
    wait_for(lambda: r.get("read") is None, 10, "a read to find the key expired")
    assert r.exists("read") == 0 and "read" not in [k.decode() for k in r.keys("*")]
    wait_for(lambda: r.dbsize() == 1, 10, "active expiry to drop the unread key")
    assert r.keys("*") == [b"kept"]
    stats = r.info("stats")
    assert stats["expired_keys"] >= 2 and "expired_stale_perc" in stats
    assert r.info("keyspace")["db0"]["expires"] == 1


def test_del_exists_mget_mset_dbsize(r):
    assert r.mset({"a": "1", "b": "2", "c": "3"}) is True
    assert r.mget("a", "x", "c") == [b"1", None, b"3"]
    assert r.exists("a", "a", "x") == 2
    assert r.dbsize() == 3
    assert r.delete("a", "x") == 1
    assert r.dbsize() == 2
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'mset'"):
        r.execute_command("MSET", "a", "1", "b")


def test_counters(r):
    assert r.incr("n") == 1
    assert r.incrby("n", 41) == 42
    assert r.decr("n") == 41
    assert r.decrby("n", 50) == -9
    assert r.get("n") == b"-9"
    r.set("n", str(2**63 - 1))
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.incr("n")
    for bad in (" 1", "1 ", "+1", "01", "1.5", "", "9223372036854775808"):
        r.set("s", bad)
        with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
            r.incr("s")
    with pytest.raises(redis.ResponseError, match="not an integer or out of range"):
        r.incrby("n", " 1")
    with pytest.raises(redis.ResponseError, match="decrement would overflow"):
        r.decrby("z", -(2**63))


def test_append_strlen_getset_getdel(r):
    assert r.append("s", "hello") == 5
    assert r.append("s", " world") == 11
    assert r.strlen("s") == 11
    assert r.strlen("none") == 0
    assert r.getset("s", "new") == b"hello world"
    assert r.getdel("s") == b"new"
    assert r.getdel("s") is None
    assert r.exists("s") == 0


def test_keys_and_scan_with_patterns(r):
    names = [f"user:{i}" for i in range(250)] + ["other", "h?llo", "hello", "hallo", "hxllo"]
    r.mset(dict.fromkeys(names, "v"))
    assert sorted(r.keys("user:1?")) == sorted(f"user:{i}".encode() for i in range(10, 20))
    assert sorted(r.keys("h[ae]llo")) == [b"hallo", b"hello"]
    assert sorted(r.keys("h[^e]llo")) == [b"h?llo", b"hallo", b"hxllo"]
    assert r.keys("h\\?llo") == [b"h?llo"]
    assert len(r.keys("*")) == len(names)
    scanned = list(r.scan_iter(match="user:*", count=7))
    assert sorted(scanned) == sorted(n.encode() for n in names if n.startswith("user:"))
    assert len(scanned) == len(set(scanned))  # each key exactly once
    cursor, keys = r.scan(0, count=1000)
    assert cursor == 0 and len(keys) == len(names)
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.scan(12345 << 32)


def test_scan_returns_every_key_present_throughout_despite_writes(r):
    r.mset({f"k{i}": "v" for i in range(100)})
    seen = set()
    cursor = 0
    first = True
    while first or cursor != 0:
        first = False
        cursor, keys = r.scan(cursor, count=10)
        seen.update(keys)
        r.set(f"new{len(seen)}", "v")  # writes during the scan
        r.delete("k99")  # a key deleted during the scan may or may not appear
    assert {f"k{i}".encode() for i in range(99)} <= seen


def test_flushdb_flushall(r):
    r.mset({"a": "1", "b": "2"})
    assert r.flushdb() is True
    assert r.dbsize() == 0
    r.set("a", "1")
    assert r.flushall(asynchronous=True) is True
    assert r.dbsize() == 0


def test_server_commands(r, shared_kvd):
    assert r.ping() is True
    assert r.echo(b"\x00hi") == b"\x00hi"
    assert r.execute_command("SELECT", 0) in (b"OK", True, "OK")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 16)
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in ("worker-1", b"worker-1")  # redis-py decodes it itself
    assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "tests") in (b"OK", True)
    assert isinstance(r.client_id(), int)
    assert r.type("nothing") == b"none"
    r.set("t", "v")
    assert r.type("t") == b"string"
    assert r.ttl("t") == -1 and r.ttl("nothing") == -2
    assert r.config_get("appendfsync") == {"appendfsync": "always"}
    assert r.config_get("save") == {"save": ""}
    assert "maxclients" in r.config_get("max*")
    with pytest.raises(redis.ResponseError, match="'appendfsync'.* can't set immutable config"):
        r.config_set("appendfsync", "no")  # fixed at start-up (tests/server/test_operators.py)
    assert r.command_count() > 20
    with pytest.raises(redis.ResponseError, match="unknown command 'NOPE', with args beginning "
                                                  "with: 'a' 'b'"):
        r.execute_command("NOPE", "a", "b")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")


def test_info_sections(r, shared_kvd):
    r.mset({"a": "1", "b": "2"})
    info = r.info("everything")
    assert info["redis_version"].startswith("7.")
    assert info["kvd_version"]
    assert info["arch_bits"] == 64
    assert info["cluster_enabled"] == 0
    assert info["process_id"] == shared_kvd.pid
    assert info["uptime_in_seconds"] >= 0
    assert info["connected_clients"] >= 1
    assert info["total_commands_processed"] > 0
    assert info["db0"]["keys"] == 2
    assert info["engine"] == "log" and info["fsync"] == "always"
    for field in ("live_bytes", "dead_bytes", "segments", "compactions_completed"):
        assert field in info
    assert set(r.info("keyspace")) == {"db0"}
    for _ in range(500):
        r.ping()
    assert r.info("stats")["instantaneous_ops_per_sec"] > 0  # the pings just made
    assert r.info("stats")["migrate_cached_sockets"] == 0  # (Redis's unit/dump reads it)
    replication = r.info("replication")
    assert replication["role"] == "master" and replication["master_repl_offset"] == 0
    assert len(replication["master_replid"]) == 40 and len(info["run_id"]) == 40
    assert "master_repl_offset" not in r.info("cpu")
    both = r.info("cpu", "default")  # the default sections, and cpu
    assert "used_cpu_user" in both and "used_memory" in both
    assert not any(name.startswith("cmdstat_") for name in both)


def test_redis_py_defaults_speak_resp3(shared_kvd):
    """redis-py 8 with no protocol argument opens with HELLO 3 (and CLIENT SETINFO)."""
    for client in (redis.Redis(unix_socket_path=shared_kvd.socket),
                   redis.from_url(f"unix://{shared_kvd.socket}"),
                   redis.from_url(f"redis://127.0.0.1:{shared_kvd.port}/0")):
        assert client.set("default", "path") is True
        assert client.get("default") == b"path" and client.get("nope") is None
        assert client.client_info()["resp"] == "3"
        assert client.info("server")["redis_mode"] == "standalone"
        assert sorted(client.scan_iter(match="def*")) == [b"default"]
        client.close()


def raw_exchange(sock, request: bytes) -> bytes:
    """Send one request and read its whole reply (a single recv is enough here)."""
    sock.sendall(request)
    return sock.recv(65536)


def test_hello_switches_the_protocol_of_the_connection(shared_kvd):
    with shared_kvd.raw() as sock:
        hello = raw_exchange(sock, b"HELLO 3\r\n")
        assert hello.startswith(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n")
        assert b"$5\r\nproto\r\n:3\r\n" in hello and hello.endswith(b"$7\r\nmodules\r\n*0\r\n")
        assert raw_exchange(sock, b"GET nope\r\n") == b"_\r\n"
        assert raw_exchange(sock, b"MGET nope\r\n") == b"*1\r\n_\r\n"
        assert raw_exchange(sock, b"CONFIG GET appendfsync\r\n") == (
            b"%1\r\n$11\r\nappendfsync\r\n$6\r\nalways\r\n")
        assert raw_exchange(sock, b"CLIENT INFO\r\n").startswith(b"=")
        assert b"resp=3" in raw_exchange(sock, b"CLIENT INFO\r\n")
        assert raw_exchange(sock, b"HELLO 4\r\n") == b"-NOPROTO unsupported protocol version\r\n"
        assert raw_exchange(sock, b"HELLO\r\n").startswith(b"%7\r\n")  # reports, stays in 3
        assert raw_exchange(sock, b"HELLO 2\r\n").startswith(b"*14\r\n")
        assert raw_exchange(sock, b"GET nope\r\n") == b"$-1\r\n"
        assert raw_exchange(sock, b"CLIENT INFO\r\n").startswith(b"$")


def test_pipelines_with_and_without_transactions_flag(r):
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"p{i}", i)
    pipe.get("p999")
    pipe.incr("p0")
    results = pipe.execute()
    assert results[:1000] == [True] * 1000
    assert results[1000:] == [b"999", 1]


def test_quit_closes_after_ok(shared_kvd):
    sock = shared_kvd.raw()
    sock.sendall(b"QUIT\r\nPING\r\n")
    data = b""
    while chunk := sock.recv(100):
        data += chunk
    assert data == b"+OK\r\n"


def test_tcp_and_unix_socket_see_the_same_data(shared_kvd):
    shared_kvd.client().set("shared", "yes")
    assert shared_kvd.tcp_client().get("shared") == b"yes"


def test_unix_socket_is_private(shared_kvd):
    assert oct(os.stat(shared_kvd.socket).st_mode & 0o777) == oct(0o600)


# -- redis-cli ------------------------------------------------------------------------------


def cli(redis_cli, kvd, *args, input=None):
    return subprocess.run([redis_cli, "-s", kvd.socket, *args], capture_output=True,
                          input=input, timeout=60)


def test_redis_cli_commands(redis_cli, shared_kvd):
    assert cli(redis_cli, shared_kvd, "PING").stdout == b"PONG\n"
    assert cli(redis_cli, shared_kvd, "SET", "cli key", "v a l").stdout == b"OK\n"
    assert cli(redis_cli, shared_kvd, "GET", "cli key").stdout == b"v a l\n"
    assert cli(redis_cli, shared_kvd, "--no-raw", "INCR", "cli:n").stdout == b"(integer) 1\n"
    out = cli(redis_cli, shared_kvd, "INFO", "server").stdout
    assert b"redis_version:" in out and b"kvd_version:" in out
    assert b"unknown command" in cli(redis_cli, shared_kvd, "NOPE").stdout


def test_redis_cli_pipe_bulk_load_and_scan(redis_cli, shared_kvd):
    shared_kvd.client().flushall()
    commands = "".join(f"SET bulk:{i} value-{i}\r\n" for i in range(20_000)).encode()
    result = cli(redis_cli, shared_kvd, "--pipe", input=commands)
    assert result.returncode == 0, result.stderr
    assert b"errors: 0, replies: 20000" in result.stdout
    scanned = cli(redis_cli, shared_kvd, "--scan", "--pattern", "bulk:1*").stdout.split()
    assert len(scanned) == len(set(scanned)) == 11_111
    assert shared_kvd.client().get("bulk:19999") == b"value-19999"


def test_redis_cli_over_tcp(redis_cli, shared_kvd):
    out = subprocess.run([redis_cli, "-h", "127.0.0.1", "-p", str(shared_kvd.port), "PING"],
                         capture_output=True, timeout=30).stdout
    assert out == b"PONG\n"



def test_what_other_clients_send_first(make_daemon, redis_cli):
    """HELLO 3 with AUTH and SETNAME (node-redis, go-redis, Lettuce...), CLIENT SETINFO,
    and redis-cli -3."""
    kvd = make_daemon("--requirepass", "s3cret")
    with kvd.raw() as sock:
        assert raw_exchange(sock, b"HELLO 3 AUTH default wrong\r\n").startswith(b"-WRONGPASS")
        assert raw_exchange(sock, b"GET k\r\n") == b"-NOAUTH Authentication required.\r\n"
        hello = raw_exchange(sock, b"HELLO 3 AUTH default s3cret SETNAME app-1\r\n")
        assert hello.startswith(b"%7\r\n") and b":3\r\n" in hello
        assert raw_exchange(sock, b"CLIENT SETINFO LIB-NAME go-redis\r\n") == b"+OK\r\n"
        assert raw_exchange(sock, b"CLIENT GETNAME\r\n") == b"$5\r\napp-1\r\n"
        assert raw_exchange(sock, b"GET k\r\n") == b"_\r\n"
    for command, output in ((["SET", "k", "v"], "OK"), (["GET", "k"], "v")):
        cli = subprocess.run([redis_cli, "-3", "-s", kvd.socket, "--user", "default", "--pass",
                              "s3cret", "--no-auth-warning", *command],
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0 and cli.stdout.strip() == output, cli
    assert redis.Redis(unix_socket_path=kvd.socket, password="s3cret").ping() is True


def test_client_list_shows_laddr_and_cmd_as_redis(shared_kvd):
    tcp = shared_kvd.tcp_client(protocol=2)
    unix = shared_kvd.client(protocol=2)
    unix.client_setname("probe")
    unix.get("k")
    entries = tcp.client_list()
    mine = next(e for e in entries if e["id"] == str(tcp.client_id()))
    assert mine["laddr"] == f"127.0.0.1:{shared_kvd.port}" and mine["cmd"] == "client|list"
    probe = next(e for e in entries if e["name"] == "probe")
    assert probe["laddr"] == f"{shared_kvd.socket}:0" and probe["cmd"] == "get"
