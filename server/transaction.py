"""MULTI/EXEC state: a client's transaction, and who WATCHes which key.

A connection's `Transaction` holds its queue (None outside MULTI; the gate,
dispatch.py, queues there), whether queueing failed (EXEC then aborts),
which keys it watches and whether one was modified. The keyspace
tells `Watches` about every modification of a key (writes, deletes, deadline
changes, expiry, FLUSHALL): a compaction, which changes no value, is not one.

The semantics are Redis 7.0's (multi.c), including its treatment of a key that
had already expired when it was watched: its deletion by expiry is no change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Transaction:
    __slots__ = ("queued", "queued_bytes", "writes", "aborted", "dirty", "watched", "executing")

    def __init__(self) -> None:
        self.queued: list[tuple[Any, list[bytes]]] | None = None  # (command, args), MULTI-EXEC
        self.queued_bytes = 0
        self.writes = 0  # queued commands that write
        self.aborted = False  # an error while queueing: EXEC answers EXECABORT
        self.dirty = False  # a watched key was modified: EXEC answers a null array
        # (database, key) -> it had already expired at WATCH
        self.watched: dict[tuple[int, bytes], bool] = {}
        self.executing = False  # EXEC is running the queue (MONITOR refuses then, as Redis)

    def discard(self, watches: Watches) -> None:
        """Leave MULTI and forget the watched keys (EXEC, DISCARD, a failed EXEC)."""
        self.queued = None
        self.queued_bytes = self.writes = 0
        self.aborted = self.dirty = False
        watches.unwatch_all(self)


class Watches:
    """(database, key) -> the transactions watching it (`by_key`, which the keyspace
    tests before every write: empty, nothing is watched)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[int, bytes], set[Transaction]] = {}

    def watch(self, tx: Transaction, key: tuple[int, bytes], expired: bool) -> None:
        if key in tx.watched:
            return
        tx.watched[key] = expired
        self.by_key.setdefault(key, set()).add(tx)

    def unwatch_all(self, tx: Transaction) -> None:
        for key in tx.watched:
            watchers = self.by_key.get(key)
            if watchers is not None:
                watchers.discard(tx)
                if not watchers:
                    del self.by_key[key]
        tx.watched.clear()

    def touch(self, key: tuple[int, bytes], exists_after: bool) -> None:
        """`key` was modified (and exists afterwards, or not)."""
        for tx in list(self.by_key.get(key, ())):
            if tx.watched.get(key):  # it had expired when watched
                if not exists_after:
                    tx.watched[key] = False  # deleted now: logically no change
                continue
            tx.dirty = True
            self.unwatch_all(tx)  # nothing more to learn before its EXEC

    def touch_all(self, existed: Callable[[tuple[int, bytes]], bool]) -> None:
        """FLUSHALL, FLUSHDB, SWAPDB: every watched key `existed` says yes to is modified."""
        for key in list(self.by_key):
            if existed(key):
                self.touch(key, exists_after=False)
