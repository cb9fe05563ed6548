"""Daemonizing, the PID file, start-up failures, limits and passwords, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest
import redis

from storage import open_store
from tests.kvd_process import Daemon, pid_alive, run_kvctl, run_kvd, wait_gone


@pytest.mark.slow
def test_start_status_stop_and_what_they_leave_behind(kvd):
    assert Path(kvd.pidfile).read_text() == f"{kvd.pid}\n"
    assert os.stat(kvd.socket).st_mode & 0o777 == 0o600
    status = run_kvd(["status"], cwd=kvd.dir)
    assert status.returncode == 0
    assert f"kvd is running (PID {kvd.pid})" in status.stdout
    assert "0 keys" in status.stdout
    kvd.stop()
    for path in (kvd.pidfile, kvd.socket):
        assert not os.path.exists(path)
    status = run_kvd(["status"], cwd=kvd.dir)
    assert status.returncode == 3 and "not running (no PID file" in status.stdout
    stop = run_kvd(["stop"], cwd=kvd.dir)
    assert stop.returncode == 0 and "not running" in stop.stderr


@pytest.mark.slow
def test_kvd_and_kvctl_reach_a_server_from_anywhere(make_daemon, tmp_path):
    kvd = make_daemon()
    status = run_kvd(["status"], cwd=kvd.dir)
    assert f"PID file {kvd.pidfile}, socket {kvd.socket}, data {kvd.data_dir}" in status.stdout
    assert f"KVD_DIR={kvd.dir}" in status.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_kvd(["status", "--dir", str(kvd.dir)], cwd=elsewhere).returncode == 0
    put = run_kvctl(["put", "k", "v"], cwd=elsewhere, env={"KVD_DIR": str(kvd.dir)})
    assert put.returncode == 0, put.stderr
    assert run_kvctl(["--dir", str(kvd.dir), "get", "k"], cwd=elsewhere).stdout == b"v"
    compact = run_kvctl(["--dir", str(kvd.dir), "compact"], cwd=elsewhere)
    assert b"SIGUSR1 to kvd PID" in compact.stderr
    assert run_kvd(["reload", "--dir", str(kvd.dir)], cwd=elsewhere).returncode == 0
    assert run_kvd(["stop", "--dir", str(kvd.dir)], cwd=elsewhere).returncode == 0
    assert not kvd.alive()
    started = run_kvd(["start", "--dir", str(tmp_path / "new"), "--port", "0"], cwd=elsewhere)
    assert started.returncode == 0, started.stderr
    assert (tmp_path / "new" / "kvd-data").is_dir() and (tmp_path / "new" / "kvd.pid").exists()
    assert run_kvd(["stop", "--dir", str(tmp_path / "new")], cwd="/").returncode == 0


def test_the_daemon_is_detached(kvd):
    assert os.getsid(kvd.pid) == kvd.pid or os.getsid(kvd.pid) != os.getsid(0)
    assert os.getpgid(kvd.pid) != os.getpgid(0)
    assert Path(f"/proc/{kvd.pid}/stat").read_text().split()[3] != str(os.getpid())  # not our child
    assert os.readlink(f"/proc/{kvd.pid}/cwd") == "/"


def test_a_stale_pid_file_naming_a_live_process_is_never_signalled(tmp_path, make_daemon, sleeper):
    kvd = make_daemon(start=False)
    with open(kvd.pidfile, "w") as f:
        f.write(f"{sleeper.pid}\n")
    status = run_kvd(["status"], cwd=kvd.dir)
    assert status.returncode == 1
    assert f"stale PID file {kvd.pidfile} names PID {sleeper.pid}" in status.stdout
    stop = run_kvd(["stop"], cwd=kvd.dir)
    assert "not running (stale PID file" in stop.stderr
    assert sleeper.poll() is None  # not signalled
    kvd.start()
    assert kvd.pid != sleeper.pid
    assert f"replaced a stale PID file {kvd.pidfile} (it named PID {sleeper.pid}" in kvd.log()
    kvd.stop()
    assert sleeper.poll() is None  # still alive after a whole start/stop cycle
    assert pid_alive(sleeper.pid)


def test_a_second_daemon_on_the_same_pid_file_is_refused(make_daemon):
    first = make_daemon()
    second = Daemon(first.dir, ["--socket", "other.sock", "--data-dir", "other-data"], tcp=False)
    result = second.start(check=False)
    assert result.returncode != 0
    assert f"kvd is already running (PID {first.pid}" in result.stderr
    assert first.client().ping() is True
    assert Path(first.pidfile).read_text() == f"{first.pid}\n"


def test_a_second_daemon_on_the_same_data_directory_is_refused(make_daemon):
    first = make_daemon()
    second = Daemon(first.dir, ["--pidfile", "other.pid", "--socket", "other.sock"], tcp=False)
    result = second.start(check=False)
    assert result.returncode != 0
    assert "cannot open the data" in result.stderr
    assert f"PID {first.pid}" in result.stderr
    assert not os.path.exists(first.dir / "other.pid")  # the loser cleans up after itself
    assert first.client().ping() is True


def test_start_fails_with_the_daemons_error_when_the_port_is_taken(make_daemon):
    kvd = make_daemon(tcp=True, start=False)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", kvd.port))
        taken.listen()
        result = kvd.start(check=False)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{kvd.port}: Address already in use" in result.stderr
    assert not os.path.exists(kvd.pidfile)
    assert not os.path.exists(kvd.socket)
    assert not os.path.exists(kvd.data_dir)  # checked before the data directory was made


def test_a_failed_first_start_removes_the_data_directory_it_created(tmp_path, monkeypatch):
    """In-process: a start that fails after the store was opened (here: a stand-in
    failure of the descriptor check) leaves no new data directory; an old one stays."""
    from server.config import Config
    from server.errors import StartupError
    from server.loop import start
    from server.network import Network

    def fail(self, reserve: int) -> None:
        raise StartupError("no descriptors left")

    monkeypatch.setattr(Network, "fit_clients_to_descriptors", fail)
    data = tmp_path / "data"
    config = Config(data_dir=str(data), pidfile=str(tmp_path / "kvd.pid"),
                    socket=str(tmp_path / "kvd.sock"), port=0, log_file="-")
    with pytest.raises(StartupError):
        start(config)
    assert not data.exists()
    assert not (tmp_path / "kvd.pid").exists() and not (tmp_path / "kvd.sock").exists()
    data.mkdir()
    (data / "mine").write_text("kept")
    with pytest.raises(StartupError):
        start(config)
    assert (data / "mine").read_text() == "kept"


@pytest.mark.slow
def test_the_engine_comes_from_the_data_directory(make_daemon):
    kvd = make_daemon("--engine", "sqlite")
    kvd.client().set("k", "v")
    kvd.stop()
    again = make_daemon()  # same directory, no --engine: the directory's own
    assert again.dir == kvd.dir
    assert again.client().get("k") == b"v"
    assert again.info("persistence")["engine"] == "sqlite"
    assert again.client().config_get("kvd-engine") == {"kvd-engine": "sqlite"}
    again.stop()
    check = run_kvd(["check", "--data-dir", again.data_dir], cwd=again.dir)
    assert check.returncode == 0 and '"engine": "sqlite"' in check.stdout
    contradiction = make_daemon("--engine", "log", start=False)
    result = contradiction.start(check=False)
    assert result.returncode == 1 and "holds a 'sqlite' store" in result.stderr


def test_start_fails_on_corrupt_data_naming_file_and_offset(make_daemon):
    kvd = make_daemon(start=False)
    with open_store(kvd.data_dir, segment_size=4096) as db:
        for i in range(200):
            db.put(b"key%d" % i, b"v" * 50)
    segment = sorted(p for p in os.listdir(kvd.data_dir) if p.endswith(".seg"))[0]
    for name in os.listdir(kvd.data_dir):  # make start-up read the data, not the hints
        if name.endswith(".hint"):
            os.unlink(os.path.join(kvd.data_dir, name))
    path = os.path.join(kvd.data_dir, segment)
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = kvd.start(check=False)
    assert result.returncode == 1
    assert "cannot open the data" in result.stderr
    assert segment in result.stderr and "offset" in result.stderr


def test_start_fails_when_the_log_file_cannot_be_opened(make_daemon):
    kvd = make_daemon(start=False)
    kvd.args += ["--log-file", "/nonexistent-dir/kvd.log"]
    result = kvd.start(check=False)
    assert result.returncode == 1
    assert "cannot open the log file /nonexistent-dir/kvd.log" in result.stderr


def test_a_stale_socket_from_a_killed_daemon_is_replaced(make_daemon):
    kvd = make_daemon()
    kvd.client().set("k", "v")
    kvd.close_clients()
    kvd.kill()
    assert os.path.exists(kvd.socket) and os.path.exists(kvd.pidfile)
    kvd.start()
    assert kvd.client().get("k") == b"v"  # acknowledged before the SIGKILL
    assert "removed a stale Unix socket" in kvd.log()


def test_a_regular_file_where_the_socket_goes_is_not_deleted(make_daemon):
    kvd = make_daemon(start=False)
    with open(kvd.socket, "w") as f:
        f.write("precious")
    result = kvd.start(check=False)
    assert result.returncode == 1 and "is not a socket" in result.stderr
    assert Path(kvd.socket).read_text() == "precious"


def test_protected_mode_refuses_a_public_address_without_a_password(make_daemon):
    kvd = make_daemon(start=False)
    kvd.args = ["--bind", "0.0.0.0", "--port", "7379"]
    result = kvd.start(check=False)
    assert result.returncode == 2
    assert "protected mode" in result.stderr
    assert not os.path.exists(kvd.pidfile)


def test_password_file_and_auth(make_daemon, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    password_file.chmod(0o600)
    kvd = make_daemon("--password-file", str(password_file))
    anonymous = kvd.client()
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("k")
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        kvd.client(password="wrong").ping()
    client = kvd.client(password="s3cret")
    assert client.set("k", "v") is True
    sock = kvd.raw()
    sock.sendall(b"GET k\r\nAUTH s3cret\r\nGET k\r\n")
    expected = b"-NOAUTH Authentication required.\r\n+OK\r\n$1\r\nv\r\n"
    data = b""
    while len(data) < len(expected):
        data += sock.recv(100)
    assert data == expected


def test_before_auth_only_small_requests_are_read_as_redis_limits_them(make_daemon):
    kvd = make_daemon("--requirepass", "s3cret")
    big = b"*2\r\n$4\r\nECHO\r\n$20000\r\n" + b"x" * 20_000 + b"\r\n"
    sock = kvd.raw()
    sock.sendall(big)
    expected = b"-ERR Protocol error: unauthenticated bulk length\r\n"
    assert _read_to_eof(sock) == expected  # answered, then closed
    sock = kvd.raw()
    sock.sendall(b"*11\r\n")
    assert _read_to_eof(sock) == b"-ERR Protocol error: unauthenticated multibulk length\r\n"
    # AUTH pipelined in front of a large request lifts the limits for it, as in Redis.
    sock = kvd.raw()
    sock.sendall(b"AUTH s3cret\r\n" + big)
    sock.shutdown(socket.SHUT_WR)
    assert _read_to_eof(sock) == b"+OK\r\n$20000\r\n" + b"x" * 20_000 + b"\r\n"


def _read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_a_password_file_readable_by_others_is_refused(make_daemon, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    password_file.chmod(0o644)
    kvd = make_daemon("--password-file", str(password_file), start=False)
    result = kvd.start(check=False)
    assert result.returncode == 2 and "readable by others" in result.stderr


def test_max_clients(make_daemon):
    kvd = make_daemon("--max-clients", "2")
    first, second = kvd.raw(), kvd.raw()
    third = kvd.raw()
    assert third.recv(100) == b"-ERR max number of clients reached\r\n"
    assert third.recv(100) == b""
    first.sendall(b"PING\r\n")
    assert first.recv(100) == b"+PONG\r\n"
    second.close()
    for _ in range(100):  # the freed slot becomes available once the server saw the close
        fourth = kvd.raw()
        fourth.sendall(b"PING\r\n")
        if fourth.recv(100) == b"+PONG\r\n":
            break
        fourth.close()
    else:
        raise AssertionError("a freed client slot never became available")


def test_options_come_from_kvd_environment_variables(make_daemon):
    kvd = make_daemon(start=False)
    result = run_kvd(["start", "--port", "0"], cwd=kvd.dir,
                     env={"KVD_SOCKET": "env.sock", "KVD_PIDFILE": "env.pid", "KVD_FSYNC": "no"})
    assert result.returncode == 0, result.stderr
    kvd.socket, kvd.pidfile = str(kvd.dir / "env.sock"), str(kvd.dir / "env.pid")
    kvd.pid = int(Path(kvd.pidfile).read_text())
    assert kvd.client().config_get("appendfsync") == {"appendfsync": "no"}
    kvd.stop()


def test_sigkill_loses_no_acknowledged_write(make_daemon):
    kvd = make_daemon("--fsync", "always")
    client = kvd.client()
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"k{i}", f"v{i}")
    pipe.delete("k7")
    assert all(pipe.execute())
    os.kill(kvd.pid, signal.SIGKILL)
    assert wait_gone(kvd.pid, 10)
    kvd.close_clients()
    kvd.start()
    client = kvd.client()
    values = client.mget([f"k{i}" for i in range(2000)])
    assert values[7] is None
    assert [v for i, v in enumerate(values) if i != 7] == [
        f"v{i}".encode() for i in range(2000) if i != 7]


def test_help_lists_every_command_and_option():
    for args in (["--help"], ["start", "--help"], ["stop", "--help"], ["status", "--help"]):
        result = run_kvd(args, cwd=".")
        assert result.returncode == 0, result.stderr
    start_help = run_kvd(["start", "--help"], cwd=".").stdout
    for option in ("--data-dir", "--fsync", "--socket", "--port", "--requirepass",
                   "--max-clients", "--max-value-size", "--drain-timeout", "KVD_DATA_DIR"):
        assert option in start_help
    assert sys.executable  # the console scripts live next to this interpreter
    status_help = run_kvd(["status", "--help"], cwd=".").stdout
    assert "Unix socket of the server" in status_help and "to listen on" not in status_help
