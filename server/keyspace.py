"""The keyspace: the only code that reads or writes keys on behalf of commands.

As Redis's db.c: every read goes through one lookup that counts keyspace
hits and misses (`read`, `exists`: the commands Redis counts), lookups made
to write (`peek`) count nothing, and every write passes the key and value
size limits (a refusal raises CommandError before anything is written).
Lazy expiry will live here, in those same few functions.

Writes are buffered by the store and made durable by the loop's group commit
(one flush per pass); `write_batch` makes several writes one atomic unit on
disk (MSET now; MULTI/EXEC and scripts next).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Iterator, Sequence

from .errors import CommandError
from .resp import error
from .stats import Stats


class Keyspace:
    def __init__(self, store, stats: Stats, max_key_size: int, max_value_size: int) -> None:
        self.store = store
        self.stats = stats
        self.max_key_size = max_key_size
        self.max_value_size = max_value_size
        self.scans = ScanCursors()

    # -- reads ------------------------------------------------------------------

    def read(self, key: bytes) -> bytes | None:
        """The value of `key` for a read command, counted as a hit or a miss."""
        value = self.store.get(key)
        if value is None:
            self.stats.keyspace_misses += 1
        else:
            self.stats.keyspace_hits += 1
        return value

    def read_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        get = self.store.get
        values = [get(key) for key in keys]
        misses = values.count(None)
        self.stats.keyspace_misses += misses
        self.stats.keyspace_hits += len(values) - misses
        return values

    def exists(self, key: bytes) -> bool:
        """Whether `key` exists, counted as a hit or a miss (EXISTS, TYPE)."""
        if key in self.store:
            self.stats.keyspace_hits += 1
            return True
        self.stats.keyspace_misses += 1
        return False

    def peek(self, key: bytes) -> bytes | None:
        """The value of `key` for a command about to write it: not counted."""
        return self.store.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self.store

    def __len__(self) -> int:
        return len(self.store)

    def keys(self) -> Iterator[bytes]:
        return self.store.keys()

    def scan(self, cursor: int, count: int,
             match: Callable[[bytes], bool] | None) -> tuple[int, list[bytes]] | None:
        """One SCAN step: (next cursor, keys), or None for a cursor that is not known."""
        return self.scans.step(self.store, cursor, count, match)

    # -- writes -----------------------------------------------------------------

    def check_sizes(self, key: bytes, value: bytes = b"") -> None:
        """Raise CommandError if the key or the value is over its limit."""
        if len(key) > self.max_key_size or len(value) > self.max_value_size:
            raise CommandError(self._too_large(key, value))

    def put(self, key: bytes, value: bytes) -> None:
        if len(key) > self.max_key_size or len(value) > self.max_value_size:
            raise CommandError(self._too_large(key, value))
        self.store.put(key, value)

    def delete(self, key: bytes) -> bool:
        return self.store.delete(key)

    def write_batch(self, ops: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Puts (key, value) and deletes (key, None) as one unit: every size is checked
        before anything is written, and on disk the batch is all or nothing."""
        for key, value in ops:
            self.check_sizes(key, value or b"")
        self.store.write_batch(ops)

    def flush_all(self) -> None:
        delete = self.store.delete
        for key in list(self.store.keys()):
            delete(key)
        self.scans.clear()

    def stats_of_store(self) -> dict:
        return self.store.stats()

    def _too_large(self, key: bytes, value: bytes) -> bytes:
        if len(key) > self.max_key_size:
            return error(f"ERR key is too large ({len(key)} bytes; --max-key-size is "
                         f"{self.max_key_size})")
        return error(f"ERR value is too large ({len(value)} bytes; --max-value-size is "
                     f"{self.max_value_size})")


class ScanCursors:
    """Server-side snapshots behind SCAN cursors.

    The key directory has no stable order under writes, so a cursor names a
    snapshot of the keys taken when the scan began, plus a position in it:
    every key present for the whole scan is returned exactly once; keys
    deleted meanwhile are skipped. A snapshot costs a pointer (8 bytes) per
    key, so what scans may hold is bounded: at most `limit` scans, and at most
    `HELD_PER_KEY` times the keyspace (plus a floor) in all; the least recently
    used scans are forgotten first. A forgotten cursor is an error, never a
    silent restart.
    """

    HELD_PER_KEY = 8
    HELD_FLOOR = 1 << 16

    def __init__(self, limit: int = 128) -> None:
        self._snapshots: OrderedDict[int, list[bytes]] = OrderedDict()
        self._next_id = 1
        self._limit = limit
        self._held = 0  # keys in all snapshots

    def clear(self) -> None:
        self._snapshots.clear()
        self._held = 0

    def step(self, store, cursor: int, count: int, match) -> tuple[int, list[bytes]] | None:
        if cursor == 0:
            scan_id = self._next_id
            self._next_id = self._next_id % 0x7FFFFFFF + 1
            snapshot = list(store.keys())
            self._snapshots[scan_id] = snapshot
            self._held += len(snapshot)
            position = 0
        else:
            scan_id, position = cursor >> 32, cursor & 0xFFFFFFFF
            snapshot = self._snapshots.get(scan_id)
            if snapshot is None:
                return None
            self._snapshots.move_to_end(scan_id)
        budget = self.HELD_PER_KEY * len(snapshot) + self.HELD_FLOOR
        while len(self._snapshots) > self._limit or (self._held > budget and
                                                     len(self._snapshots) > 1):
            self._forget(next(iter(self._snapshots)))
        end = min(position + count, len(snapshot))
        keys = [k for k in snapshot[position:end] if k in store and (match is None or match(k))]
        if end >= len(snapshot):
            self._forget(scan_id)
            return 0, keys
        return scan_id << 32 | end, keys

    def _forget(self, scan_id: int) -> None:
        snapshot = self._snapshots.pop(scan_id, None)
        if snapshot is not None:
            self._held -= len(snapshot)
