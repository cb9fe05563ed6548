"""systemd: kvd's sd_notify messages on a real datagram socket, in order, and the unit file
as systemd-analyze reads it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.kvd_process import KVD, Foreground, require_tool

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "kvd.service"


class NotifySocket:
    """What systemd listens on: a datagram socket, each message a few KEY=value lines."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(30)

    def next(self) -> dict[str, str]:
        message = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in message.split("\n") if line)

    def until(self, key: str) -> list[dict[str, str]]:
        """Messages up to and including the first that has `key`."""
        seen = [self.next()]
        while key not in seen[-1]:
            seen.append(self.next())
        return seen


@pytest.mark.slow
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_status_reloading_stopping_in_order(tmp_path, abstract):
    address = f"\0kvd-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    notify = NotifySocket(address)
    server = Foreground(tmp_path / "srv", [], tcp=False)
    try:
        server.start(extra_env={"NOTIFY_SOCKET": "@" + address[1:] if abstract else address})
        ready = notify.next()
        assert ready["READY"] == "1" and int(ready["MAINPID"]) == server.pid
        assert ready["STATUS"] == "serving 0 keys, 0 clients; compaction idle"
        client = server.client(protocol=2)
        client.mset({f"k{i}": i for i in range(5)})
        update = notify.until("STATUS")[-1]  # within a couple of seconds
        assert update["STATUS"].startswith("serving 5 keys, 1 clients")

        server.signal(signal.SIGHUP)  # a reload: the log is reopened
        reloading = notify.until("RELOADING")[-1]
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert "READY" in notify.until("READY")[-1]

        client.close()
        server.close_clients()
        server.signal(signal.SIGTERM)
        stopping = notify.until("STOPPING")[-1]
        assert stopping["STATUS"].startswith("shutting down (SIGTERM)")
        assert server.wait() == 0
    finally:
        server.cleanup()
        notify.sock.close()


def test_without_notify_socket_nothing_is_sent(tmp_path):
    server = Foreground(tmp_path / "srv", [], tcp=False)
    try:
        server.start(extra_env={"NOTIFY_SOCKET": ""})
        assert server.client(protocol=2).ping()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "cannot notify systemd" not in "".join(server.lines)
    finally:
        server.cleanup()


def test_the_unit_file_is_valid_for_systemd(tmp_path):
    analyze = require_tool("systemd-analyze", "systemd")
    unit = tmp_path / "kvd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/kvd", KVD))

    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "kvd.service" not in result.stderr, result.stderr  # no warning about the unit
    text = UNIT.read_text()
    assert "Type=notify" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
    timeout = int(text.split("TimeoutStopSec=")[1].split()[0])
    drain = float(text.split("--drain-timeout ")[1].split()[0])
    assert timeout > drain  # systemd's SIGKILL never cuts a drain short
