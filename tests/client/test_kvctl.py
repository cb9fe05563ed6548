"""kvctl and client.connect against real daemons: every command, every exit status."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time

import pytest

from client import connect
from tests.kvd_process import KVCTL, run_kvctl, wait_gone
from tests.server.test_compaction import fill_with_garbage, persistence
from tests.storage.conftest import disk_usage


def kvctl(server, *args, input: bytes | None = None, env: dict | None = None):
    return run_kvctl(list(args), cwd=server.dir, input=input, env=env)


@pytest.mark.slow
def test_put_get_delete_and_exit_statuses(kvd):
    assert kvctl(kvd, "put", "greeting", "hello").returncode == 0
    got = kvctl(kvd, "get", "greeting")
    assert (got.returncode, got.stdout) == (0, b"hello")  # no newline added to a pipe
    missing = kvctl(kvd, "get", "nope")
    assert (missing.returncode, missing.stdout) == (1, b"")
    assert missing.stderr == b"kvctl: no such key: nope\n"
    deleted = kvctl(kvd, "delete", "greeting", "nope")
    assert (deleted.returncode, deleted.stdout) == (0, b"1\n")
    none = kvctl(kvd, "delete", "greeting")
    assert (none.returncode, none.stdout) == (1, b"0\n")
    assert kvctl(kvd, "ping").stdout == b"PONG\n"


@pytest.mark.slow
def test_binary_values_through_stdin_stdout_and_files(kvd, tmp_path):
    value = bytes(range(256)) * 4096 + os.urandom(100_000)
    assert kvctl(kvd, "put", "blob", "-", input=value).returncode == 0
    assert kvctl(kvd, "get", "blob").stdout == value
    path = tmp_path / "file.bin"
    path.write_bytes(value[::-1])
    assert kvctl(kvd, "put", "fromfile", "--file", str(path)).returncode == 0
    assert kvctl(kvd, "get", "fromfile").stdout == value[::-1]
    assert kvctl(kvd, "put", "empty", "-", input=b"").returncode == 0
    empty = kvctl(kvd, "get", "empty")
    assert (empty.returncode, empty.stdout) == (0, b"")  # empty, but found
    # Keys that are not UTF-8 reach the server as the same bytes.
    result = subprocess.run([KVCTL, "put", b"k\xff\x00"[:2], "v"], cwd=kvd.dir)
    assert result.returncode == 0
    assert kvd.client().get(b"k\xff") == b"v"


@pytest.mark.slow
def test_keys_streams_matches_and_handles_newlines(kvd):
    client = kvd.client()
    client.mset({f"user:{i}": "v" for i in range(2500)})
    client.mset({"other": "v", "multi\nline": "v"})
    listed = kvctl(kvd, "keys", "user:*").stdout.split(b"\n")[:-1]
    assert sorted(listed) == sorted(f"user:{i}".encode() for i in range(2500))
    everything = kvctl(kvd, "keys", "--null").stdout.split(b"\0")[:-1]
    assert b"multi\nline" in everything and len(everything) == 2502
    assert kvctl(kvd, "keys", "nomatch*").stdout == b""


@pytest.mark.slow
def test_put_with_a_ttl_and_ttl(kvd):
    started = time.monotonic()
    assert kvctl(kvd, "put", "session", "token", "--ttl", "3600").returncode == 0
    remaining = int(kvctl(kvd, "ttl", "session").stdout)
    # TTL rounds to the nearest second; a loaded machine may take seconds between the two runs.
    assert 3600 - math.ceil(time.monotonic() - started) <= remaining <= 3600
    assert kvctl(kvd, "put", "session", "token").returncode == 0  # a plain put clears it
    assert kvctl(kvd, "ttl", "session").stdout == b"none\n"
    missing = kvctl(kvd, "ttl", "nope")
    assert (missing.returncode, missing.stderr) == (1, b"kvctl: no such key: nope\n")
    assert kvctl(kvd, "put", "k", "v", "--ttl", "0").returncode == 2  # usage error


@pytest.mark.slow
def test_stats_table_and_json(kvd):
    kvd.client().mset({"a": "1", "b": "2"})
    kvd.client().expire("a", 100)
    table = kvctl(kvd, "stats").stdout.decode()
    assert "2 (1 with a TTL, 0 expired since start)" in table
    for label in ("keys", "memory", "live data", "garbage", "compactions", "last compaction",
                  "clients", "uptime", "engine / fsync"):
        assert label in table
    assert "log / always" in table
    as_json = json.loads(kvctl(kvd, "stats", "--json").stdout)
    assert as_json["db0"]["keys"] == 2 and as_json["process_id"] == kvd.pid


@pytest.mark.slow
def test_compact_wait_reports_reclaimed_bytes_and_the_files_shrink(make_daemon):
    kvd = make_daemon("--segment-size=1000000", "--no-auto-compact")
    expected = fill_with_garbage(kvd.client())
    before = disk_usage(kvd.data_dir)
    result = kvctl(kvd, "compact", "--wait")
    assert result.returncode == 0, result.stderr
    assert f"SIGUSR1 to kvd PID {kvd.pid}".encode() in result.stderr
    assert b"compaction done in" in result.stdout and b"reclaimed" in result.stdout
    reclaimed = int(result.stdout.split(b"(")[1].split()[0])
    assert reclaimed > 0 and reclaimed == persistence(kvd)["last_compaction_reclaimed_bytes"]
    assert disk_usage(kvd.data_dir) < before / 3
    keys = list(expected)
    assert kvd.client().mget(keys) == [expected[k] for k in keys]


def test_compact_wait_fails_when_the_compaction_fails(make_daemon):
    kvd = make_daemon("--segment-size=1000000", "--no-auto-compact")
    expected = fill_with_garbage(kvd.client(), keys=500, rounds=3)
    # A file where the compaction's work directory goes makes it fail at once.
    with open(os.path.join(kvd.data_dir, "compaction"), "w") as f:
        f.write("in the way")
    result = kvctl(kvd, "compact", "--wait")
    assert result.returncode == 4
    assert result.stderr.endswith(b"kvctl: the compaction failed; the data is unchanged "
                                  b"(see the kvd log)\n")
    assert kvd.alive() and persistence(kvd)["compactions_failed"] == 1
    keys = list(expected)
    assert kvd.client().mget(keys) == [expected[k] for k in keys]


def test_a_stale_pid_file_is_reported_and_nothing_is_signalled(kvd, sleeper):
    os.rename(kvd.pidfile, kvd.pidfile + ".real")
    with open(kvd.pidfile, "w") as f:
        f.write(f"{sleeper.pid}\n")
    requested = persistence(kvd)["compactions_requested"]
    result = kvctl(kvd, "compact")
    assert result.returncode == 3
    assert b"not running (stale PID file" in result.stderr
    assert sleeper.poll() is None  # the unrelated process was not signalled
    assert persistence(kvd)["compactions_requested"] == requested


@pytest.mark.slow
def test_compact_falls_back_to_the_command_without_a_pid_file(make_daemon):
    kvd = make_daemon("--no-auto-compact", tcp=True)
    result = run_kvctl(["--host", "127.0.0.1", "--port", str(kvd.port), "compact", "--wait"],
                       cwd="/")
    assert result.returncode == 0, result.stderr
    assert b"compaction requested with the COMPACT command at 127.0.0.1:" in result.stderr
    os.unlink(kvd.pidfile)  # the daemon's own file gone: the Unix socket path falls back too
    result = kvctl(kvd, "compact", "--wait")
    assert result.returncode == 0 and b"no PID file at kvd.pid" in result.stderr
    assert persistence(kvd)["compactions_completed"] == 2


@pytest.mark.slow
def test_compact_over_tcp_uses_the_pid_file_that_names_that_server(make_daemon):
    kvd = make_daemon("--no-auto-compact", tcp=True)
    result = kvctl(kvd, "--port", str(kvd.port), "compact")  # in the server's directory
    assert result.returncode == 0, result.stderr
    assert b"SIGUSR1 to kvd PID %d through kvd.pid" % kvd.pid in result.stderr
    other = make_daemon("--no-auto-compact", tcp=True, subdir="other")
    result = run_kvctl(["--port", str(other.port), "compact"], cwd=kvd.dir)  # kvd's PID file
    assert result.returncode == 0, result.stderr
    assert (b"kvd.pid names kvd PID %d, not the server at 127.0.0.1:%d (PID %d): compaction "
            b"requested with the COMPACT command" % (kvd.pid, other.port, other.pid)) \
        in result.stderr
    assert persistence(other)["compactions_requested"] == 1


@pytest.mark.slow
def test_a_stopped_server(kvd):
    kvd.stop()
    for args in (["get", "k"], ["ping"], ["stats"]):
        result = kvctl(kvd, *args)
        assert result.returncode == 3
        assert result.stderr.startswith(b"kvctl: cannot reach kvd: no socket at kvd.sock")
        assert b"Traceback" not in result.stderr
    result = kvctl(kvd, "compact")
    assert result.returncode == 3
    assert result.stderr.startswith(b"kvctl: kvd is not running (no PID file at kvd.pid); ")


@pytest.mark.slow
def test_passwords(make_daemon, tmp_path):
    kvd = make_daemon("--requirepass", "s3cret")
    assert kvctl(kvd, "ping").stderr == (b"kvctl: kvd requires a password: pass --password, "
                                         b"--password-file or set KVD_PASSWORD\n")
    wrong = kvctl(kvd, "--password", "nope", "ping")
    assert (wrong.returncode, wrong.stderr) == (4, b"kvctl: wrong password\n")
    assert kvctl(kvd, "--password", "s3cret", "ping").returncode == 0
    assert kvctl(kvd, "ping", env={"KVD_PASSWORD": "s3cret"}).returncode == 0
    password_file = tmp_path / "pw"
    password_file.write_text("s3cret\n")
    assert kvctl(kvd, "--password-file", str(password_file), "ping").returncode == 0
    assert connect(socket=kvd.socket, password_file=str(password_file)).ping() is True


def test_an_oversized_value_is_one_clear_line(make_daemon):
    kvd = make_daemon("--max-value-size", "1000")
    result = kvctl(kvd, "put", "big", "-", input=b"x" * 1001)
    assert result.returncode == 4
    assert result.stderr.startswith(b"kvctl: kvd: value is too large (1001 bytes")
    assert result.stderr.count(b"\n") == 1


def test_permission_denied_on_the_socket(kvd):
    os.chmod(kvd.socket, 0)
    command = [KVCTL, "--socket", kvd.socket, "ping"]
    if os.geteuid() == 0:  # root ignores file modes; drop every capability to be refused
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run this test as root"
        command = [setpriv, "--bounding-set=-all", "--inh-caps=-all", *command]
    result = subprocess.run(command, capture_output=True, cwd="/")
    assert result.returncode == 3, result.stderr
    assert b"permission denied on the socket" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.slow
def test_usage_errors_and_help(kvd):
    assert kvctl(kvd, "put", "only-a-key").returncode == 2
    assert kvctl(kvd, "frobnicate").returncode == 2
    for args in (["--help"], ["put", "--help"], ["get", "--help"], ["delete", "--help"],
                 ["keys", "--help"], ["stats", "--help"], ["compact", "--help"],
                 ["ping", "--help"]):
        result = kvctl(kvd, *args)
        assert result.returncode == 0 and b"Usage:" in result.stdout
    assert b"Exit status: 0 ok, 1 not found, 2 usage" in kvctl(kvd, "--help").stdout


def test_connect_gives_a_redis_py_client_with_its_defaults(kvd, monkeypatch):
    monkeypatch.setenv("KVD_SOCKET", kvd.socket)
    client = connect()
    pipe = client.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
    pipe.get("p99")
    assert pipe.execute()[-1] == b"99"
    assert client.connection_pool.connection_kwargs.get("protocol") is None  # redis-py decides
    assert client.client_info()["resp"] == "3"  # redis-py 8's default
    client.close()
    client = connect(protocol=2)
    assert client.get("p99") == b"99" and client.client_info()["resp"] == "2"
    client.close()


def test_kvd_stop_and_kvctl_share_the_signalling_path(kvd, sleeper):
    # kvd stop through a stale file signals nothing either (same function as kvctl).
    os.rename(kvd.pidfile, kvd.pidfile + ".real")
    with open(kvd.pidfile, "w") as f:
        f.write(f"{sleeper.pid}\n")
    from tests.kvd_process import run_kvd

    assert b"stale PID file" in run_kvd(["stop"], cwd=kvd.dir).stderr.encode()
    assert sleeper.poll() is None and kvd.alive()
    os.rename(kvd.pidfile + ".real", kvd.pidfile)
    kvd.stop()
    assert wait_gone(kvd.pid, 5)
