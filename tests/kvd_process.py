"""Real kvd processes for integration tests: started, talked to, stopped, always cleaned up.

`Daemon` runs `kvd start` (the real daemonizing path; it returns when the
server is ready, so no test polls or sleeps for readiness). `Foreground` runs
`kvd start --foreground` as a child, for tests that need the exit status; it
is ready when its log says so. Both bind loopback only, with TCP off unless a
test asks for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hiredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

BIN = Path(sys.executable).parent
KVD = str(BIN / "kvd")
KVCTL = str(BIN / "kvctl")
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        return not select.select([fd], [], [], 0)[0]  # readable once it has exited
    finally:
        os.close(fd)


def wait_gone(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


class _Server:
    def __init__(self, directory: Path, args: list[str], tcp: bool) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if tcp else 0
        self.args = ["--port", str(self.port), "--bind", "127.0.0.1", *args]
        self.socket = str(self.dir / "kvd.sock")
        self.pidfile = str(self.dir / "kvd.pid")
        self.log_file = self.dir / "kvd.log"
        self.data_dir = str(self.dir / "kvd-data")
        self.pid: int | None = None
        self._clients: list[redis.Redis] = []

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client (redis-py's default protocol unless `protocol` is given) that
        never retries: a retry could hide a dropped connection or apply a write twice,
        and tests must see exactly what happened."""
        kwargs.setdefault("socket_timeout", 20)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        if "host" in kwargs:
            client = redis.Redis(**kwargs)
        else:
            client = redis.Redis(unix_socket_path=self.socket, **kwargs)
        self._clients.append(client)
        return client

    def tcp_client(self, **kwargs) -> redis.Redis:
        return self.client(host="127.0.0.1", port=self.port, **kwargs)

    def raw(self, timeout: float = 10) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.socket)
        return sock

    def signal(self, signum: int) -> None:
        assert self.pid is not None
        os.kill(self.pid, signum)

    def alive(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def info(self, section: str | None = None) -> dict:
        client = redis.Redis(unix_socket_path=self.socket, socket_timeout=20)
        try:
            return client.info(section) if section else client.info()
        finally:
            client.close()

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


class Daemon(_Server):
    """`kvd start` in `directory`; `stop()` or test teardown ends it."""

    def start(self, check: bool = True) -> subprocess.CompletedProcess:
        result = run_kvd(["start", *self.args], cwd=self.dir, timeout=START_TIMEOUT)
        if check:
            assert result.returncode == 0, f"kvd start failed: {result.stderr}\n{self.log()}"
            match = re.search(r"PID (\d+)", result.stdout)
            assert match, result.stdout
            self.pid = int(match.group(1))
            assert Path(self.pidfile).read_text().strip() == str(self.pid)
        return result

    def stop(self, timeout: float = 30) -> subprocess.CompletedProcess:
        self.close_clients()
        result = run_kvd(["stop", "--pidfile", self.pidfile, "--timeout", str(timeout)],
                         cwd=self.dir, timeout=timeout + 10)
        assert result.returncode == 0, result.stderr
        if self.pid is not None:
            assert wait_gone(self.pid, 5), "kvd stop returned but the process is still there"
        return result

    def wait_exit(self, timeout: float = 30) -> None:
        assert self.pid is not None
        assert wait_gone(self.pid, timeout), f"kvd (PID {self.pid}) did not exit in {timeout} s"

    def kill(self) -> None:
        if self.pid is not None and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid, 10)

    def cleanup(self) -> None:
        self.close_clients()
        self.kill()


class Foreground(_Server):
    """`kvd start --foreground` as a child process: its exit status is observable."""

    proc: subprocess.Popen | None = None

    def start(self, extra_env: dict | None = None, wrapper: list[str] = ()) -> None:
        """`wrapper`: a command kvd runs under (strace injecting faults): then `pid` is
        the wrapper's, and the PID file names kvd's."""
        env = {**os.environ, **(extra_env or {})}
        self.proc = subprocess.Popen(
            [*wrapper, KVD, "start", "--foreground", "--log-file", "-", *self.args],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:  # keep stderr drained for the whole life of the process
            with open(self.log_file, "a") as copy:
                for raw in self.proc.stderr:
                    line = raw.decode(errors="replace")
                    copy.write(line)
                    copy.flush()
                    self.lines.append(line)
                    if " ready: " in line or "cannot start" in line:
                        ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        assert ready.wait(START_TIMEOUT), "kvd --foreground did not become ready"
        assert self.proc.poll() is None, f"kvd exited at start-up:\n{''.join(self.lines)}"

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._pump.join(5)
        return code

    def cleanup(self) -> None:
        self.close_clients()
        with contextlib.suppress(OSError, ValueError):  # kvd itself, if under a wrapper
            os.kill(int(Path(self.pidfile).read_text()), signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_kvd(args: list[str], cwd: Path | str, timeout: float = 60,
            env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KVD, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


class RawConnection:
    """A connection speaking RESP `protocol` that sends requests and reads replies apart,
    as their raw bytes: byte-for-byte comparisons with Redis, blocked clients, pub/sub
    messages (redis-py would hide a `$-1` sent where RESP3 wants `_`)."""

    def __init__(self, address: str | tuple[str, int], protocol: int = 2) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.pending = bytearray()
        if protocol == 3:
            self.call(b"HELLO", b"3")

    def send(self, *args: bytes) -> None:
        self.sock.sendall(b"*%d\r\n" % len(args)
                          + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))

    def read(self, count: int = 1) -> bytes:
        """The bytes of the next `count` replies (what arrives after them is kept for the
        next read; the end of a reply is found by parsing growing prefixes, fine for the
        small replies tests read)."""
        return b"".join(self._one() for _ in range(count))

    def _one(self) -> bytes:
        while True:
            for end in range(1, len(self.pending) + 1):
                probe = hiredis.Reader()
                probe.feed(bytes(self.pending[:end]))
                if probe.gets() is not False:
                    reply = bytes(self.pending[:end])
                    del self.pending[:end]
                    return reply
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed after {bytes(self.pending)!r}"
            self.pending += chunk

    def call(self, *args: bytes, expect: int = 1) -> bytes:
        self.send(*args)
        return self.read(expect)

    def close(self) -> None:
        self.sock.close()


def check_through_kill_compaction_and_restart(server: Daemon,
                                             check: Callable[[redis.Redis], None]) -> None:
    """SIGKILL `server` (all it acknowledged must survive), start it again, and run
    `check(client)` then, after a compaction, and after a clean restart."""
    server.signal(signal.SIGKILL)
    server.wait_exit()
    server.start()
    check(server.client(protocol=2))
    done = run_kvctl(["compact", "--wait"], server.dir)
    assert done.returncode == 0, done.stderr
    check(server.client(protocol=2))
    server.stop()
    server.start()
    check(server.client(protocol=2))


def run_kvctl(args: list[str], cwd: Path | str, timeout: float = 60, input: bytes | None = None,
              env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([KVCTL, *args], cwd=cwd, capture_output=True, timeout=timeout,
                          input=input, env={**os.environ, **(env or {})})


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What `sock` receives until `marker` is among it; the server must not close first."""
    received = b""
    while marker not in received:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {received[-200:]!r}"
        received += chunk
    return received


def wait_for(condition, seconds: float = 30, what: str = "condition"):
    """Poll `condition` until it returns something true (and return that), for at most
    `seconds`; for states that only show in INFO or /proc, which nothing signals."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def require_tool(name: str, package: str) -> str:
    """The path of a command a test needs: missing, it fails the test under CI (which
    installs it) and skips it elsewhere, saying what to install."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")  # logrotate...
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (.ci/run installs {package})")
        pytest.skip(f"{name} not installed (apt install {package})")
    return path


class RedisServer:
    """A throw-away `redis-server` on loopback TCP: the reference kvd is compared with.

    `args` are redis-server options (the AOF and fsync policy for benchmarks);
    persistence is otherwise off. Ready once it answers PING.
    """

    def __init__(self, directory: Path, args: list[str] = (), password: str | None = None
                 ) -> None:
        self.port = free_port()
        self.password = password
        self.dir = directory  # (its dump.rdb is written here)
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(directory), "--save", "", "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", "", *(["--requirepass", password] if password else []), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        client = self.client()
        try:
            wait_for(lambda: _answers_ping(client), 10, "redis-server to answer PING")
        except AssertionError:
            self.stop()
            raise
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, protocol=2, password=self.password)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@contextlib.contextmanager
def kvd_beside_redis(directory: Path, kvd_args: list[str] = (), redis_args: list[str] = (),
                     tcp: bool = False, password: str | None = None
                     ) -> Iterator[tuple[Daemon, RedisServer]]:
    """A started kvd and a redis-server (in `directory`/kvd and `directory`/redis), for
    tests and benchmarks that compare the two; both are stopped afterwards. With a
    `password`, both require it."""
    require_tool("redis-server", "redis-server")
    kvd_args = [*kvd_args, *(["--requirepass", password] if password else [])]
    kvd = Daemon(directory / "kvd", kvd_args, tcp=tcp)
    reference = None
    try:
        kvd.start()
        # Sixteen databases in both, Redis's default and kvd's.
        reference = RedisServer(directory / "redis", list(redis_args), password=password)
        yield kvd, reference
    finally:
        kvd.cleanup()
        if reference is not None:
            reference.stop()


def _answers_ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
