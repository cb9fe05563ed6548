"""Sharding over several kvd: Debian's nutcracker (twemproxy) with contrib/nutcracker.yml in
front of three kvd servers, ketama hashing; keys spread, MGET across shards, and a compaction
of every backend (SIGUSR1 through its PID file) while traffic flows through the proxy."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
import redis

from tests.kvd_process import Daemon, free_port, require_tool, run_kvctl, wait_for

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "contrib" / "nutcracker.yml"


def through(port: int) -> redis.Redis:
    """A redis-py client for twemproxy: no CLIENT SETINFO on connect (twemproxy drops a
    connection that sends a command it does not know)."""
    return redis.Redis(port=port, protocol=2, socket_timeout=20, driver_info=None)


def proxy_answers(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def test_three_kvd_behind_twemproxy(tmp_path):
    nutcracker = require_tool("nutcracker", "nutcracker")
    backends = [Daemon(tmp_path / f"kvd{i}", [], tcp=True) for i in range(3)]
    proxy = None
    try:
        for backend in backends:
            backend.start()
        port = free_port()
        config = CONFIG.read_text().replace("22121", str(port))
        for default, backend in zip((7379, 7380, 7381), backends):
            config = config.replace(f"127.0.0.1:{default}:1", f"127.0.0.1:{backend.port}:1")
        (tmp_path / "nutcracker.yml").write_text(config)
        checked = subprocess.run([nutcracker, "-t", "-c", str(tmp_path / "nutcracker.yml")],
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        proxy = subprocess.Popen([nutcracker, "-c", str(tmp_path / "nutcracker.yml"),
                                  "-o", str(tmp_path / "nutcracker.log"),
                                  "-s", str(free_port()), "-a", "127.0.0.1",  # its stats port
                                  "-p", str(tmp_path / "nutcracker.pid")])
        client = through(port)
        wait_for(lambda: proxy_answers(client), 30, "twemproxy to answer")

        expected = {f"user:{i}".encode(): f"v{i}".encode() * 20 for i in range(3000)}
        for start in range(0, 3000, 500):
            chunk = dict(list(expected.items())[start:start + 500])
            pipe = client.pipeline(transaction=False)
            for key, value in chunk.items():
                pipe.set(key, value)
            pipe.execute()
        sizes = [backend.client(protocol=2).dbsize() for backend in backends]
        assert sum(sizes) == 3000 and all(size > 300 for size in sizes), sizes  # spread

        # Traffic through the proxy while every backend compacts.
        errors: list[Exception] = []
        stop = threading.Event()

        def writer() -> None:
            writes = through(port)
            i = 0
            while not stop.is_set():
                key = f"user:{i % 3000}".encode()
                value = f"w{i}".encode() * 20
                try:
                    writes.set(key, value)
                    expected[key] = value
                except redis.RedisError as exc:
                    errors.append(exc)
                i += 1
            writes.close()

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for backend in backends:
                before = backend.info("persistence")["compactions_completed"]
                compacted = run_kvctl(["compact"], cwd=backend.dir)  # SIGUSR1 via kvd.pid
                assert compacted.returncode == 0, compacted.stderr
                wait_for(lambda: backend.info("persistence")["compactions_completed"] > before,
                         60, "the backend's compaction")
        finally:
            stop.set()
            thread.join(30)
        assert not errors, errors[:3]
        keys = list(expected)
        for start in range(0, len(keys), 500):  # MGET across the three shards
            chunk = keys[start:start + 500]
            assert client.mget(chunk) == [expected[k] for k in chunk]
        client.close()
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(30)
        for backend in backends:
            backend.cleanup()
