"""One client connection: its socket, its request parser and its reply buffers."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable

from .config import is_loopback
from .protocol import RequestParser
from .resp import RESP2
from .transaction import Transaction

_ids = itertools.count(1)


def _unwatched(ready: int) -> None:
    """A connection's callback until the network registers it."""


# CLIENT REPLY's states (`Connection.muted`): "" is ON; SKIP_NEXT: SKIP was just sent;
# SKIP: this command's reply goes (dispatch.py applies them)
REPLY_OFF, REPLY_SKIP_NEXT, REPLY_SKIP = "off", "skip-next", "skip"


class Connection:
    """State of one client. The loop owns it; commands read and set a few fields.

    Replies produced during a loop pass go to `replies` (one entry per
    request); `write_slots` remembers which of them answer writes, so that if
    the pass's group commit fails those -- and only those -- are replaced by
    an error before anything is sent. After the commit the pass's replies are
    sent; what the kernel does not take yet waits in `out`. Requests read but
    not yet run because the client owes too much (the output cap) wait in
    `deferred`; nothing more is read from it until they have run.
    """

    __slots__ = (
        "sock", "fd", "id", "addr", "kind", "parser", "resp", "replies", "write_slots", "out",
        "deferred", "callback",
        "name", "lib_name", "lib_ver", "created", "last_command", "last_active",
        "closing", "draining", "reading", "writing", "commands", "tx", "paused", "no_evict",
        "db", "blocked", "channels", "patterns", "shard_channels", "muted",
        "over_soft_since",
    )

    def __init__(self, sock: socket.socket, addr: str, kind: str, parser: RequestParser) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.id = next(_ids)
        self.addr = addr
        self.kind = kind  # "unix" or "tcp"
        self.parser = parser
        self.resp = RESP2  # the reply encoder of the connection's protocol
        self.replies: list[bytes] = []
        self.write_slots: list[int] = []
        self.out = bytearray()
        self.deferred: list[list[bytes]] = []
        self.callback: Callable[[int], None] = _unwatched  # what the loop calls when it is ready
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.created = self.last_active = time.monotonic()  # (last_active: the last read)
        self.last_command: list[bytes] = []  # the arguments of the last request run
        self.closing = False  # close once `out` is sent (QUIT, protocol error)
        self.draining = False  # the server is shutting down
        self.reading = True  # registered for EVENT_READ
        self.writing = False  # registered for EVENT_WRITE
        self.commands = 0
        self.tx = Transaction()  # MULTI/EXEC and WATCH state
        self.paused = False  # its requests wait for the end of a CLIENT PAUSE (pause.py)
        self.no_evict = False  # CLIENT NO-EVICT (kvd evicts no client: shown, not acted on)
        self.db = 0  # the database it works in (SELECT)
        self.blocked = False  # waiting in a blocking command (blocking.py)
        # What it is subscribed to (pubsub.py)
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.shard_channels: set[bytes] = set()
        # CLIENT REPLY: "" (ON), or REPLY_OFF, REPLY_SKIP_NEXT, REPLY_SKIP (above)
        self.muted = ""
        # Since when it has owed more than its soft output limit (0: it does not)
        self.over_soft_since = 0.0

    @property
    def subscriptions(self) -> int:
        """Channels, patterns and shard channels it is subscribed to (Redis's count)."""
        return len(self.channels) + len(self.patterns) + len(self.shard_channels)

    @property
    def authenticated(self) -> bool:
        """Whether the client may run commands: the parser holds the same fact, since it
        applies Redis's smaller request limits until AUTH."""
        return not self.parser.unauthenticated

    def unprocessed(self) -> int:
        """Bytes of requests received and not yet run (Redis's qbuf): those the parser
        holds, and those kept back by the output cap (counted as they arrived, about)."""
        kept = sum(sum(len(arg) + 8 for arg in args) + 4 for args in self.deferred)
        return self.parser.pending + kept

    def is_local(self) -> bool:
        """Connected through the Unix socket or from a loopback address (Redis's "local")."""
        return self.kind == "unix" or is_loopback(self.addr.rsplit(":", 1)[0])

    def describe(self) -> str:
        return f"client {self.id} ({self.addr})"

    def local_address(self) -> str:
        """Redis's laddr=: the address the client connected to (a Unix socket's path:0)."""
        try:
            where = self.sock.getsockname()
        except OSError:
            return "?"
        if self.kind == "unix":
            return f"{where}:0"
        return f"{where[0]}:{where[1]}"

    def client_info(self, command: str) -> str:
        """One line of CLIENT LIST / CLIENT INFO, Redis's format; `command` is the last
        command's full name (cmd=), NULL before the first."""
        now = time.monotonic()
        age, idle = int(now - self.created), int(now - self.last_active)
        queued = self.tx.queued
        flags = ("x" if queued is not None else "") + \
            ("b" if self.paused or self.blocked else "") + ("e" if self.no_evict else "") + \
            ("P" if self.subscriptions else "")
        return (
            f"id={self.id} addr={self.addr} laddr={self.local_address()} fd={self.fd} "
            f"name={self.name.decode(errors='replace')} age={age} idle={idle} "
            f"flags={flags or 'N'} db={self.db} sub={len(self.channels)} "
            f"psub={len(self.patterns)} ssub={len(self.shard_channels)} "
            f"multi={-1 if queued is None else len(queued)} qbuf={self.unprocessed()} "
            f"obl={len(self.out)} oll=0 omem=0 events=r cmd={command} user=default "
            f"resp={self.resp.version} lib-name={self.lib_name.decode(errors='replace')} "
            f"lib-ver={self.lib_ver.decode(errors='replace')}"
        )
