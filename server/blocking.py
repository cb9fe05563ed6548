"""Clients blocked on keys (Redis's blocking.c): BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP.

A blocking command that finds nothing to pop registers its client here, with the keys it
waits on, its deadline, what it answers on a timeout, and how to serve it (`Blocked`),
and the gate stops running the client's requests (what it sends meanwhile waits, read
but not run). A write that gives a key elements signals it (`Keyspace.write_elements`:
one dict test while nobody waits); after the command that wrote -- after a whole EXEC or
script, as in Redis -- the gate serves the clients waiting on the signalled keys, first
blocked first served, each reply a write that waits for the pass's group commit like
any other (so an element handed to a client is popped durably before it is sent). A
client that stops waiting (served, timed out, CLIENT UNBLOCK, disconnected, the drain)
is woken: its reply goes out with the pass and its held requests run next.

Timeouts share one loop timer, set at the nearest deadline (a heap of them).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .resp import error

if TYPE_CHECKING:
    from .connection import Connection
    from .timers import Timers

# What a blocking command's handler returns when it blocked: the gate adds no reply (the
# reply comes when the client is served or times out) and runs nothing more of it.
BLOCKED = b""
UNBLOCKED_ERROR = error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
TIMER = "blocked-clients"

# serve(keyspace, key) -> the reply, or None if `key` cannot serve it (after all). (The
# keyspace is a keyspace.Keyspace, which imports this module: Any here.)
Serve = Callable[[Any, bytes], "bytes | None"]


class Blocked:
    """What one blocked client waits for."""

    __slots__ = ("conn", "db", "keys", "deadline", "timeout_reply", "serve", "command")

    def __init__(self, conn: Connection, db: int, keys: list[bytes], deadline: float,
                 timeout_reply: bytes, serve: Serve, command: str) -> None:
        self.conn, self.db, self.keys, self.deadline = conn, db, keys, deadline
        self.timeout_reply, self.serve, self.command = timeout_reply, serve, command


class BlockedClients:
    def __init__(self) -> None:
        # (db, key) -> the clients waiting on it, in the order they blocked
        self.waiting: dict[tuple[int, bytes], deque[Connection]] = {}
        self.ready: dict[tuple[int, bytes], None] = {}  # keys signalled, in order
        self.clients: dict[Connection, Blocked] = {}
        self._deadlines: list[tuple[float, int, Connection]] = []
        self._order = itertools.count()
        self.timers: Timers | None = None  # the loop's (set by the server)
        # Told of each client that stopped waiting, with its reply: the network sends the
        # reply with the pass and runs the client's held requests next.
        self.wake: Callable[[Connection, bytes, bool], None] = _nobody_listens

    def __len__(self) -> int:
        return len(self.clients)

    def block(self, blocked: Blocked) -> None:
        conn = blocked.conn
        self.clients[conn] = blocked
        conn.blocked = True
        for key in dict.fromkeys(blocked.keys):
            self.waiting.setdefault((blocked.db, key), deque()).append(conn)
        if blocked.deadline:
            heapq.heappush(self._deadlines, (blocked.deadline, next(self._order), conn))
            self._set_timer()

    def signal(self, db: int, key: bytes) -> None:
        """`key` of database `db` got elements: its waiting clients may be served."""
        if (db, key) in self.waiting:
            self.ready[(db, key)] = None

    def serve_ready(self, keyspace_of: Callable[[int], Any]) -> int:
        """Serve the clients waiting on signalled keys (first blocked first), while those
        keys can serve them; how many were served. Serving may signal more keys (BLMOVE
        pushes): they are served in the same call."""
        served = 0
        while self.ready:
            db, key = next(iter(self.ready))  # in the order they were signalled
            del self.ready[(db, key)]
            queue = self.waiting.get((db, key))
            keyspace = keyspace_of(db)
            while queue:
                conn = queue[0]
                blocked = self.clients[conn]
                reply = blocked.serve(keyspace, key)
                if reply is None:
                    break  # the key has nothing (more) for them
                self.unblock(conn, reply, written=True)
                served += 1
        return served

    def unblock(self, conn: Connection, reply: bytes, written: bool = False) -> bool:
        """`conn` stops waiting, answered with `reply` (`written`: it popped, so the reply
        waits for the group commit); False if it was not blocked."""
        if not self._remove(conn):
            return False
        self.wake(conn, reply, written)
        return True

    def time_out(self, conn: Connection) -> bool:
        blocked = self.clients.get(conn)
        return blocked is not None and self.unblock(conn, blocked.timeout_reply)

    def forget(self, conn: Connection) -> None:
        """A blocked client closed: it stops waiting, answered with nothing."""
        self._remove(conn)

    def _remove(self, conn: Connection) -> bool:
        blocked = self.clients.pop(conn, None)
        if blocked is None:
            return False
        conn.blocked = False
        for key in dict.fromkeys(blocked.keys):
            queue = self.waiting.get((blocked.db, key))
            if queue is not None:
                queue.remove(conn)
                if not queue:
                    del self.waiting[(blocked.db, key)]
        return True

    def time_out_all(self) -> None:
        """The drain: every blocked client gets its timeout reply now."""
        for conn in list(self.clients):
            self.time_out(conn)

    def _set_timer(self) -> None:
        heap = self._deadlines
        while heap and self.clients.get(heap[0][2]) is None:
            heapq.heappop(heap)  # served or gone: its deadline is stale
        if self.timers is None:
            return
        if heap:
            self.timers.set(TIMER, heap[0][0], self._expire)
        else:
            self.timers.cancel(TIMER)

    def _expire(self, now: float) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, _, conn = heapq.heappop(heap)
            blocked = self.clients.get(conn)
            if blocked is not None and blocked.deadline <= now:
                self.time_out(conn)
        self._set_timer()


def _nobody_listens(conn: Connection, reply: bytes, written: bool) -> None:
    pass
