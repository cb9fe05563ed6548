"""The gate's short way for what pipelines are made of: consecutive plain `GET key`s, or
consecutive plain `SET key value`s, gathered into a run and done with one call to the
keyspace (`read_many`, `put_many`): 16 pipelined SETs cost 2.45 us each this way
against 3.07 us one by one, GETs 0.92 us against 1.00 us (in-process, when it was
measured).

The contract, which keeps it the same as the long way (dispatch.py):

* it is used only while nothing the gate checks for GET or SET is in play: a
  transaction queueing, a monitor, authentication to come, a store refusing writes, a
  busy script (`applies`); the gate asks again after every command of the long way;
* a request joins a run only if it is exactly `GET key` or `SET key value` (the arity
  the gate would check), its name in upper or lower case;
* a run is done before the next request that is not part of it, so effects and
  replies keep the requests' order;
* a GET run reads values only while their replies fit in the room the output cap
  leaves (`Keyspace.read_many`); the requests after the last one read are left for
  later by the gate. A damaged record answers only its own GET's error;
* a SET run answers +OK each; the keyspace owns the size limits (a SET it refuses
  answers its error in place, the others are written), and a store error answers
  the SETs it stopped;
* a run is timed as a whole, each command given an equal share (slow log, latency);
  the gate counts its commands like any others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import CommandError
from .resp import OK

if TYPE_CHECKING:
    from .commands import Command
    from .connection import Connection
    from .keyspace import Keyspace
    from .stats import Stats

# name -> arity, for GET and SET as clients send them
SHORT = {b"GET": 2, b"get": 2, b"SET": 3, b"set": 3}
NONE: dict[bytes, int] = {}

Failure = Callable[["Connection", "Command", Exception], bytes]  # the gate's error reply
Took = Callable[["Connection", "Command", list, int], None]  # the gate's slow log entry


class Parts:
    """What every run of one gate uses: made once per gate, so that a run (made per call
    of the gate, even for one GET) sets only what is its own."""

    __slots__ = ("keyspace", "stats", "failure", "took", "get", "set_")

    def __init__(self, keyspace: Keyspace, stats: Stats, failure: Failure, took: Took,
                 get: Command, set_: Command) -> None:
        self.keyspace = keyspace
        self.stats = stats  # INFO commandstats and errorstats
        self.failure = failure  # the gate's error reply
        self.took = took  # the gate's slow log entry
        self.get, self.set_ = get, set_


class FastPath:
    """Runs of GETs or SETs for one call of the gate (`Dispatcher.run`).

    The gate appends each request of a run to `items` itself, setting `kind` and `start`
    when a run begins (after `finish()` of the pending one): a method call per request
    would cost a third of a pipelined GET, and one per lone GET a sixth.
    """

    __slots__ = ("parts", "conn", "requests", "room", "slow_ns", "started", "kind", "start",
                 "items")

    def __init__(self, parts: Parts, conn: Connection, requests: list[list[bytes]],
                 room: int, slow_ns: int | None, started: int) -> None:
        self.parts = parts
        self.conn = conn
        self.requests = requests
        self.room = room  # bytes of replies that may still be added (the output cap)
        self.slow_ns = slow_ns  # None: not timed
        self.started = started  # the clock when the run began (timing)
        self.kind = 0  # the run's arity: 2 GETs, 3 SETs, 0 no run
        self.start = 0  # the index of its first request
        self.items: list = []  # keys (GETs) or (key, value) pairs (SETs)

    def finish(self) -> int | None:
        """Do the pending run, if any. None, or the index from which the requests are left
        for later (its GETs filled the room the output cap left)."""
        items, kind = self.items, self.kind
        if not items:
            return None
        self.items, self.kind = [], 0
        if kind == 2:
            done, produced = self._read_run(items)
        else:
            done, produced = self._write_run(items), len(OK) * len(items)
        self.room -= produced
        now = time.perf_counter_ns()
        parts = self.parts
        command = parts.get if kind == 2 else parts.set_
        stat = parts.stats.command(command.name)
        stat.calls += done
        stat.ns += now - self.started
        if self.slow_ns is not None:
            share = (now - self.started) // done
            if share >= self.slow_ns:
                for args in self.requests[self.start : self.start + done]:
                    parts.took(self.conn, command, args, share)
        self.started = now
        return self.start + done if self.room < 0 else None

    def _failed(self, command: Command, reply: bytes) -> bytes:
        """An error one command of the run answers, counted as the gate counts it."""
        self.parts.stats.command(command.name).failed += 1
        self.parts.stats.error(reply)
        return reply

    def _read_run(self, keys: list[bytes]) -> tuple[int, int]:
        """GET keys in order while their replies fit in the room (at least one); returns
        (GETs done, bytes of their replies). If a read fails (a damaged record), each key
        is read on its own so that only its GET answers the error (a lone GET is read
        on its own at once)."""
        keyspace, conn, room = self.parts.keyspace, self.conn, self.room
        if len(keys) > 1:  # a lone GET, as without pipelining, needs no lists
            try:
                values = keyspace.read_many(keys, room)
            except Exception:
                pass  # each key again, below
            else:  # conn.resp.bulk_or_null, inline: a call per value costs ~40 ns here
                null = conn.resp.null
                new = [null if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
                       for value in values]
                conn.replies.extend(new)
                bound = len(new) * (keyspace.store.largest_value + 16)
                return len(new), bound if bound <= room else sum(map(len, new))
        produced = 0
        for done, key in enumerate(keys, 1):
            try:
                reply = conn.resp.bulk_or_null(keyspace.read(key))
            except Exception as exc:
                reply = self._failed(self.parts.get, self.parts.failure(conn, self.parts.get,
                                                                       exc))
            conn.replies.append(reply)
            produced += len(reply)
            if produced > room:
                return done, produced
        return len(keys), produced

    def _write_run(self, pairs: list[tuple[bytes, bytes]]) -> int:
        """SET each pair, their replies (+OK) added to the connection's; a pair the
        keyspace refuses answers its error and the others go on; those a store error
        stopped answer that error. Returns how many were done (all of them)."""
        conn, keyspace = self.conn, self.parts.keyspace
        replies, slot = conn.replies, len(conn.replies)
        conn.write_slots.extend(range(slot, slot + len(pairs)))
        while pairs:
            try:
                keyspace.put_many(pairs)
            except CommandError as exc:  # a key or value over its limit
                written = getattr(exc, "items_written", 0)
                replies.extend([OK] * written)
                replies.append(self._failed(self.parts.set_, exc.reply))
                pairs = pairs[written + 1:]
                continue
            except Exception as exc:
                written = getattr(exc, "items_written", 0)
                replies.extend([OK] * written)
                failed = self.parts.failure(conn, self.parts.set_, exc)
                for _ in range(len(pairs) - written):
                    replies.append(self._failed(self.parts.set_, failed))
                break
            replies.extend([OK] * len(pairs))
            break
        return len(conn.replies) - slot
