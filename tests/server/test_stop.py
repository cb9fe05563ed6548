"""`kvd stop` against a daemon that does not react: it says so, and --force kills it
through the PID file without losing an acknowledged write."""

from __future__ import annotations

import os

import pytest

from tests.kvd_process import pid_alive, run_kvd, wait_for

pytestmark = pytest.mark.slow


def stuck(make_daemon):
    """A daemon whose loop is blocked in DEBUG SLEEP (and known to be: the watchdog said so),
    with 50 acknowledged writes."""
    kvd = make_daemon("--enable-debug-command", "yes", "--watchdog-period", "0.1")
    client = kvd.client()
    for i in range(50):
        client.set(f"key{i}", f"value{i}")
    raw = kvd.raw()
    raw.sendall(b"DEBUG SLEEP 60\r\n")
    wait_for(lambda: "watchdog: one pass" in kvd.log(), 30, "the watchdog to see the stall")
    return kvd, raw


def test_stop_says_a_stuck_daemon_is_not_responding(make_daemon):
    kvd, raw = stuck(make_daemon)
    stop = run_kvd(["stop", "--pidfile", kvd.pidfile, "--timeout", "1"], cwd=kvd.dir)
    assert stop.returncode == 1
    assert "is not responding: it did not begin shutting down within 1 s" in stop.stderr
    assert "slow clients" not in stop.stderr
    assert kvd.alive()
    raw.close()


def test_stop_force_kills_it_and_nothing_acknowledged_is_lost(make_daemon):
    kvd, raw = stuck(make_daemon)
    pid = kvd.pid
    stop = run_kvd(["stop", "--pidfile", kvd.pidfile, "--timeout", "1", "--force"], cwd=kvd.dir)
    assert stop.returncode == 0, stop.stderr
    assert f"kvd (PID {pid}) was not responding after 1 s and was killed (SIGKILL)" in stop.stderr
    assert not pid_alive(pid)
    raw.close()
    assert os.path.exists(kvd.pidfile)  # left behind by the kill: stale, and replaced below
    kvd.start()
    assert kvd.pid != pid
    client = kvd.client()
    assert client.mget([f"key{i}" for i in range(50)]) == [f"value{i}".encode() for i in range(50)]
    kvd.stop()


def test_a_draining_daemon_is_not_called_stuck(make_daemon):
    """A client that does not read its replies holds the drain open: slow, not stuck."""
    kvd = make_daemon("--drain-timeout", "60")
    client = kvd.client()
    client.set("big", b"x" * (4 << 20))
    raw = kvd.raw()
    raw.sendall(b"GET big\r\n" * 8)  # 32 MiB of replies it never reads
    wait_for(lambda: any(c["cmd"] == "get" for c in client.client_list()), 30, "the GETs")
    stop = run_kvd(["stop", "--pidfile", kvd.pidfile, "--timeout", "1"], cwd=kvd.dir)
    assert stop.returncode == 1
    assert "it is draining, waiting for slow clients" in stop.stderr
    raw.close()
    kvd.wait_exit()
