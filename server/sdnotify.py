"""systemd's readiness protocol (sd_notify), for `Type=notify` services.

When systemd starts kvd it sets NOTIFY_SOCKET to a datagram socket; kvd sends
it newline-separated `KEY=value` messages: `READY=1` (with `MAINPID=`) once it
serves, `STATUS=` a line for `systemctl status`, `RELOADING=1` ... `READY=1`
around a SIGHUP's log reopening, `STOPPING=1` when the drain begins. The
protocol is this one sendto(); without NOTIFY_SOCKET nothing is sent. A path
starting with "@" is in the abstract namespace. The variable is removed from
the environment once read, so no child process reports in kvd's name.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("kvd.server")


class Notifier:
    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self._failed = False
        self._last_status = ""

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.pop("NOTIFY_SOCKET", None))

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # said once: systemd may be gone, kvd goes on
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._failed = True

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")

    def status(self, status: str) -> None:
        """STATUS=, sent only when it changed."""
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def reloading(self) -> None:
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now_us}")

    def reloaded(self) -> None:
        self.send("READY=1")

    def stopping(self, status: str) -> None:
        self._last_status = status
        self.send("STOPPING=1", f"STATUS={status}")
