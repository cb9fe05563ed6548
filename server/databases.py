"""The server's databases: SELECT's numbers, each a Keyspace over the one store.

A client works in one database at a time (`conn.db`; the gate points `ctx.keyspace`
at it before running the client's commands). The databases share the store -- one
log, one group commit, batches that may span databases (MOVE, an EXEC with SELECT in
it) -- and the WATCH registry, keyed by (database, key). FLUSHALL and SWAPDB cost
one small write whatever the databases hold (storage/slots.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .blocking import BlockedClients
from .keyspace import Keyspace, now_ms
from .notify import KeyspaceEvents
from .stats import Stats
from .transaction import Watches

if TYPE_CHECKING:
    from storage import Store


class Databases:
    def __init__(self, store: Store, stats: Stats, max_key_size: int, max_value_size: int,
                 count: int, events: KeyspaceEvents | None = None) -> None:
        store.open_databases(count)
        self.store = store
        self.watches = Watches()
        self.blocking = BlockedClients()  # clients waiting in BLPOP and the like
        self.events = events if events is not None else KeyspaceEvents()  # (notify.py)
        self.keyspaces = [Keyspace(store, stats, max_key_size, max_value_size, db, self.watches,
                                   self.blocking, self.events)
                          for db in range(count)]

    def __getitem__(self, db: int) -> Keyspace:
        return self.keyspaces[db]

    def __len__(self) -> int:
        return len(self.keyspaces)

    def __iter__(self) -> Iterator[Keyspace]:
        return iter(self.keyspaces)

    # -- every database at once ------------------------------------------------------

    def flush_all(self) -> None:
        """FLUSHALL: a watched key that existed is modified."""
        if self.watches.by_key:
            self.watches.touch_all(self._existed)
        self.store.flush_all()
        for keyspace in self.keyspaces:
            keyspace.reattach()

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: a watched key of either database that exists in either is modified
        (Redis's touchAllWatchedKeysInDb, both ways)."""
        if self.watches.by_key:
            self.watches.touch_all(
                lambda watched: watched[0] in (a, b) and (
                    self.store.contains(watched[1], a) or self.store.contains(watched[1], b)))
        self.store.swap_dbs(a, b)
        self.keyspaces[a].reattach()
        self.keyspaces[b].reattach()
        for db, key in list(self.blocking.waiting):  # their keys hold other values now
            if db in (a, b):
                self.blocking.signal(db, key)

    def _existed(self, watched: tuple[int, bytes]) -> bool:
        return self.store.contains(watched[1], watched[0])

    @property
    def keep_expired(self) -> bool:
        return self.keyspaces[0].keep_expired

    @keep_expired.setter
    def keep_expired(self, keep: bool) -> None:
        """CLIENT PAUSE: keys past their deadline read as missing but stay, everywhere."""
        for keyspace in self.keyspaces:
            keyspace.keep_expired = keep

    def freeze(self, at_ms: int) -> None:
        """A script runs: every database expires keys by the time it began (0: unfreeze)."""
        for keyspace in self.keyspaces:
            keyspace.frozen_ms = at_ms

    # -- active expiry ---------------------------------------------------------------

    def next_deadline(self) -> int:
        """The earliest deadline of any database (Unix ms), 0 if no key has one."""
        deadlines = [d for d in (k.next_deadline() for k in self.keyspaces) if d]
        return min(deadlines, default=0)

    def expire_cycle(self, budget_s: float) -> bool:
        """Each database with keys due gets its share of `budget_s`; True if one ran out
        of time with keys still due."""
        now = now_ms()
        due = [k for k in self.keyspaces if 0 < k.next_deadline() <= now]
        hurry = False
        for keyspace in due:
            hurry = keyspace.expire_cycle(budget_s / len(due)) or hurry
        return hurry

    def info(self) -> dict[str, str]:
        """INFO keyspace: a line per database that holds keys, as Redis."""
        lines = {}
        for keyspace in self.keyspaces:
            keys = len(keyspace)
            if keys:
                expires, avg_ttl = keyspace.expiry_figures()
                lines[f"db{keyspace.db}"] = f"keys={keys},expires={expires},avg_ttl={avg_ttl}"
        return lines
