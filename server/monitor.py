"""MONITOR: every command, as Redis prints it, to the clients that asked.

A line is `+<unix time>.<usec> [0 <client>] "arg" "arg"...` with each
argument quoted as Redis's sdscatrepr quotes it; commands run by a script
show `[0 lua]`. Redis's rules for what is shown: a command after it ran
(so a transaction shows MULTI, its commands, then EXEC), EVAL before its
script's commands, and never a command flagged admin or skip_monitor (CONFIG,
DEBUG, SLOWLOG, SHUTDOWN, MONITOR, EVAL...: the gate reads Command.shown) nor a
refused one. With nobody monitoring,
the cost is one test per request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .redact import redacted

if TYPE_CHECKING:
    from .connection import Connection

_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r",
            ord("\t"): b"\\t", 7: b"\\a", 8: b"\\b"}
_REPR = [_ESCAPES.get(c, bytes([c]) if 32 <= c < 127 else b"\\x%02x" % c) for c in range(256)]


def quoted(arg: bytes) -> bytes:
    """Redis's sdscatrepr: in double quotes, escapes for what is not printable."""
    if arg.isalnum():
        return b'"' + arg + b'"'
    return b'"' + b"".join(_REPR[c] for c in arg) + b'"'


class Monitors:
    """The monitoring clients; `fed`: those given lines since the network last sent."""

    def __init__(self, unix_socket: str) -> None:
        self.clients: list[Connection] = []
        self.unix_socket = unix_socket
        self.fed: set[Connection] = set()

    def add(self, conn: Connection) -> None:
        if conn not in self.clients:
            self.clients.append(conn)

    def discard(self, conn: Connection) -> None:
        if conn in self.clients:
            self.clients.remove(conn)
        self.fed.discard(conn)

    def feed(self, conn: Connection | None, args: list[bytes], db: int = 0) -> None:
        """Show one command of `conn` (None: run by a script) to every monitor; `db`: the
        database it ran in."""
        seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
        if conn is None:
            source = b"lua"
        elif conn.kind == "unix":
            source = b"unix:" + self.unix_socket.encode()
        else:
            source = conn.addr.encode()
        line = b"+%d.%06d [%d %s] %s\r\n" % (seconds, micros, db, source,
                                            b" ".join(quoted(arg) for arg in redacted(args)))
        for monitor in self.clients:
            monitor.replies.append(line)
            self.fed.add(monitor)
