"""The keyspace: the only code that reads or writes keys on behalf of commands.

As Redis's db.c: every read goes through one lookup that counts keyspace
hits and misses (`read`, `exists`: the commands Redis counts), lookups made
to write (`peek`) count nothing, and every write passes the key and value
size limits (a refusal raises CommandError before anything is written).

Expiry lives here too. Lazily: every lookup of a key whose deadline has
passed drops it first (Redis's expireIfNeeded), so no read ever returns an
expired key. Actively: `expire_cycle` drops due keys that nobody reads, in
bounded time per call (Redis's active expire cycle), which the loop runs on
a timer. Deadlines are wall-clock Unix milliseconds, as in Redis: a clock
set forward expires keys early, one set back keeps them longer.

Writes are buffered by the store and made durable by the loop's group commit
(one flush per pass); `write_batch` makes several writes one atomic unit on
disk (MSET, MULTI/EXEC, scripts).
"""

from __future__ import annotations

import functools
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import notify
from .blocking import BlockedClients
from .errors import CommandError
from .notify import KeyspaceEvents
from .resp import error
from .stats import Stats
from .transaction import Watches

if TYPE_CHECKING:
    from storage import Store, StoreStats


WRONGTYPE = error("WRONGTYPE Operation against a key holding the wrong kind of value")
# The types of values (storage's `kind`); 0 is a string.
STRING, HASH, LIST, SET, ZSET, STREAM = 0, 1, 2, 3, 4, 5
TYPE_NAMES = {STRING: "string", HASH: "hash", LIST: "list", SET: "set", ZSET: "zset",
              STREAM: "stream"}


def now_ms() -> int:
    """Wall-clock Unix time in milliseconds: what deadlines are measured in."""
    return time.time_ns() // 1_000_000


class Keyspace:
    """One database (SELECT's number `db`) of the store, as commands see it."""

    def __init__(self, store: Store, stats: Stats, max_key_size: int, max_value_size: int,
                 db: int = 0, watches: Watches | None = None,
                 blocking: BlockedClients | None = None,
                 events: KeyspaceEvents | None = None) -> None:
        self.store = store
        self.db = db
        self.stats = stats
        self.max_key_size = max_key_size
        self.max_value_size = max_value_size
        self.scans = ScanCursors()
        self.element_scans = ScanCursors()  # HSCAN's of collections of element records
        # Told of every modification (MULTI/EXEC's WATCH), by (database, key): one registry
        # for all databases, as a transaction may watch keys of several.
        self.watches = watches if watches is not None else Watches()
        self._watched = self.watches.by_key  # its dict: a test without a call
        # Told when a key gets elements (clients may wait on it: blocking.py)
        self.blocking = blocking if blocking is not None else BlockedClients()
        self._waiting = self.blocking.waiting  # its dict: a test without a call
        # Keyspace notifications (notify.py), shared by the databases
        self.events = events if events is not None else KeyspaceEvents()
        self._get: Callable[[bytes], bytes | None] = (
            store.get if not db else functools.partial(store.get, db=db))
        self.deadlines = store.deadlines_of(db)
        self._deadline_of = self.deadlines.snapshot()  # the dict itself: a cheap test
        self._types = store.types_of(db)  # non-string key -> type: empty, all strings
        # While a script runs, lookups expire keys by the time it began (Redis's script
        # time snapshot): a key the script saw does not vanish half-way through it.
        self.frozen_ms = 0
        # During CLIENT PAUSE (pause.py): a key past its deadline reads as missing but
        # stays, and active expiry waits: nothing is written.
        self.keep_expired = False
        self._sample: list[bytes] = []  # RANDOMKEY's pool, and when it was taken
        self._sample_taken = 0.0
        self.built_in_place: set[bytes] = set()  # (see put)
        # Values of other types decoded by their commands, by key, with the record bytes
        # they came from (commands/hashes.py): bounded, checked by identity on each use.
        self.decoded: dict[bytes, tuple[bytes, object]] = {}
        # The ordered index of each large sorted set read since it was last written some
        # other way, by key, with the collection version it was built for (zsets.py).
        self.zindexes: dict[bytes, tuple[int, object]] = {}

    def reattach(self) -> None:
        """The database was flushed or swapped: its keys (and deadlines) are others now."""
        self.deadlines = self.store.deadlines_of(self.db)
        self._deadline_of = self.deadlines.snapshot()
        self._types = self.store.types_of(self.db)
        self.scans.clear()
        self.element_scans.clear()
        self._sample = []
        self.built_in_place = set()
        self.decoded = {}
        self.zindexes = {}

    def _touch(self, key: bytes, exists_after: bool) -> None:
        self.watches.touch((self.db, key), exists_after)

    def notify(self, kind: int, event: bytes, key: bytes) -> None:
        """A keyspace notification of `event` (Redis's name) on `key`, of class `kind`
        (notify.py): published if that class is on."""
        if self.events.flags & kind:
            self.events(kind, event, key, self.db)

    def _missed(self, key: bytes) -> None:
        """A read's lookup found nothing: a keyspace miss, counted and told ("keymiss")."""
        self.stats.keyspace_misses += 1
        if self.events.flags & notify.KEY_MISS:
            self.events(notify.KEY_MISS, b"keymiss", key, self.db)

    def _tell_if_new(self, key: bytes) -> None:
        """The "new" notification, before a write that may add `key` (Redis's dbAdd)."""
        if self.events.flags & notify.NEW and not self.store.contains(key, self.db):
            self.events(notify.NEW, b"new", key, self.db)

    # -- expiry -------------------------------------------------------------------

    def _expired(self, key: bytes) -> bool:
        """Drop `key` if its deadline has passed; whether it did."""
        deadline = self._deadline_of.get(key)
        if deadline is None or deadline > (self.frozen_ms or now_ms()):
            return False
        if not self.keep_expired:
            self._drop_expired(key)
        return True

    def _drop_expired(self, key: bytes) -> None:
        """Lazy and active expiry alike: the key goes, counted, and its watchers learn."""
        self.store.forget_expired(key, self.db)
        if self.zindexes:
            self.zindexes.pop(key, None)
        if self.built_in_place:
            self.built_in_place.discard(key)
        self.stats.expired_keys += 1
        if self._watched:
            self._touch(key, exists_after=False)
        if self.events.flags:
            self.notify(notify.EXPIRED, b"expired", key)

    def is_expired(self, key: bytes) -> bool:
        """Whether `key` exists but its deadline has passed (nothing is dropped)."""
        deadline = self._deadline_of.get(key)
        return deadline is not None and deadline <= (self.frozen_ms or now_ms())

    def deadline(self, key: bytes) -> int:
        """The deadline of an existing key (Unix ms), 0 if it has none."""
        return self._deadline_of.get(key, 0)

    def expire_cycle(self, budget_s: float) -> bool:
        """Drop keys past their deadline for at most about `budget_s` seconds; True if
        time ran out with due keys left (Redis's expired_time_cap_reached)."""
        stop = time.perf_counter() + budget_s
        now = now_ms()
        while True:
            due = self.deadlines.due(now, 64)
            for key in due:
                self._drop_expired(key)
            if len(due) < 64:
                self.stats.expired_stale_perc = 0.0
                return False
            if time.perf_counter() > stop:
                self.stats.expired_time_cap_reached_count += 1
                share = self.deadlines.overdue_fraction(now) * len(self.deadlines)
                self.stats.expired_stale_perc = 100.0 * share / max(len(self), 1)
                return True

    def next_deadline(self) -> int:
        """The earliest deadline to act on (Unix ms), 0 if no key has one."""
        return self.deadlines.next_deadline() if self._deadline_of else 0

    # -- reads ------------------------------------------------------------------

    def type_of(self, key: bytes) -> int:
        """The type of an existing key's value (0 a string; also for no such key)."""
        return self._types.get(key, STRING)

    def _check_string(self, key: bytes) -> None:
        """Redis's checkType for string commands: a key of another type is WRONGTYPE."""
        if key in self._types:
            raise CommandError(WRONGTYPE)

    def read(self, key: bytes) -> bytes | None:
        """The value of `key` for a read command, counted as a hit or a miss; WRONGTYPE
        for a key that is not a string."""
        value = self._get(key)
        if value is not None and self._deadline_of and self._expired(key):
            value = None
        if value is None:
            self._missed(key)
        else:
            self.stats.keyspace_hits += 1  # (a hit even if of another type, as Redis)
            if self._types:
                self._check_string(key)
        return value

    def read_many(self, keys: Sequence[bytes], budget: int = 1 << 62,
                  others_as_none: bool = False) -> list[bytes | None]:
        """read() each key in order (MGET), or for a run of GETs whose replies may take
        `budget` bytes: values are read while their replies (the value and 16 bytes) fit,
        at least one, so fewer may come back. (While no value the store holds could
        overrun it, they are all read in one go.) A key of another type than string is
        WRONGTYPE, or None with `others_as_none` (MGET)."""
        types = self._types
        if types and any(key in types for key in keys):
            if not others_as_none:
                raise CommandError(WRONGTYPE)
            values: list[bytes | None] = []
            for key in keys:
                if key in types and key in self:  # there, of another type: a hit, as Redis
                    self.stats.keyspace_hits += 1
                    values.append(None)
                else:
                    values.append(self.read(key))
            return values
        get = self._get
        if self._deadline_of:
            if self.keep_expired:  # CLIENT PAUSE: expired keys stay, read as missing
                return self._read_each(keys, budget)
            for key in keys:
                self._expired(key)
        if (self.store.largest_value + 16) * len(keys) <= budget:
            values = list(map(get, keys))
        else:
            values = []
            for key in keys:
                value = get(key)
                values.append(value)
                if value is not None:
                    budget -= len(value) + 16
                    if budget < 0:
                        break
        misses = values.count(None)
        self.stats.keyspace_misses += misses
        if misses and self.events.flags & notify.KEY_MISS:
            for key, value in zip(keys, values):
                if value is None:
                    self.events(notify.KEY_MISS, b"keymiss", key, self.db)
        self.stats.keyspace_hits += len(values) - misses
        return values

    def _read_each(self, keys: Sequence[bytes], budget: int) -> list[bytes | None]:
        values = []
        for key in keys:
            value = self.read(key)
            values.append(value)
            if value is not None:
                budget -= len(value) + 16
                if budget < 0:
                    break
        return values

    def exists(self, key: bytes) -> bool:
        """Whether `key` exists, counted as a hit or a miss (EXISTS, TYPE, TTL)."""
        if key in self:
            self.stats.keyspace_hits += 1
            return True
        self._missed(key)
        return False

    def peek(self, key: bytes) -> bytes | None:
        """The value of `key` for a string command about to write it: not counted;
        WRONGTYPE for a key of another type."""
        if self._deadline_of and self._expired(key):
            return None
        value = self._get(key)
        if value is not None and self._types:
            self._check_string(key)
        return value

    def read_any(self, key: bytes, counted: bool = True) -> tuple[bytes, int] | None:
        """The value of `key` whatever its type, and the type (COPY, RENAME, MOVE, and the
        commands of each type, which check the type themselves)."""
        value = self._get(key)
        if value is not None and self._deadline_of and self._expired(key):
            value = None
        if counted:
            if value is None:
                self._missed(key)
            else:
                self.stats.keyspace_hits += 1
        if value is None:
            return None
        return value, self._types.get(key, STRING)

    def __contains__(self, key: bytes) -> bool:
        if not self.store.contains(key, self.db):
            return False
        return not (self._deadline_of and self._expired(key))

    def __len__(self) -> int:
        """Keys held, including expired ones not yet dropped (as Redis's DBSIZE)."""
        return self.store.count(self.db)

    def _all_keys(self) -> Iterator[bytes]:
        return self.store.keys(db=self.db)

    def keys(self) -> Iterator[bytes]:
        """Live keys; expired ones are skipped (not dropped, as Redis's KEYS)."""
        keys = self._all_keys()
        if not self._deadline_of:
            return keys
        now, deadline_of = now_ms(), self._deadline_of
        return (k for k in keys if deadline_of.get(k, now + 1) > now)

    def random_key(self) -> bytes | None:
        """A random live key, or None if there is none (RANDOMKEY).

        A dict has no random access, so the pick is made from a list of the keys that
        is taken again at most once a second per million keys (or when its picks keep
        missing): one RANDOMKEY costs O(1), not a walk over a million keys. Keys added
        since the list was taken wait for the next one; deleted or expired ones are
        skipped.
        """
        if not len(self):
            return None
        # Retaken at most once a second, and less often for large keyspaces (a second per
        # million keys): the copy costs ~30 ms per million keys, so at most ~3% of the loop.
        if not self._sample or time.monotonic() - self._sample_taken > max(
                1.0, len(self._sample) / 1e6):
            self._take_sample()
        for attempt in range(8):
            if attempt == 4:
                self._take_sample()
            if not self._sample:
                return None
            key = random.choice(self._sample)
            if key in self:
                return key
        return next(iter(self.keys()), None)

    def _take_sample(self) -> None:
        self._sample = list(self._all_keys())
        self._sample_taken = time.monotonic()

    def scan(self, cursor: int, count: int,
             match: Callable[[bytes], bool] | None) -> tuple[int, list[bytes]] | None:
        """One SCAN step: (next cursor, keys), or None for a cursor that is not known."""
        return self.scans.step(self._all_keys, self.__contains__, cursor, count, match)

    # -- writes -----------------------------------------------------------------

    def check_sizes(self, key: bytes, value: bytes = b"") -> None:
        """Raise CommandError if the key or the value is over its limit."""
        if len(key) > self.max_key_size or len(value) > self.max_value_size:
            raise CommandError(self._too_large(key, value))

    def put(self, key: bytes, value: bytes, deadline: int = 0, raw: bool = False,
            kind: int = STRING) -> None:
        """Write `value` with a deadline (Unix ms) or none: like SET, it replaces the
        key's deadline (a write that keeps it passes `deadline(key)`). `raw`: the value
        was built in place (APPEND, SETRANGE, SETBIT...), which OBJECT ENCODING reports
        as Redis does, until the key is written whole again (kept in memory only)."""
        if len(key) > self.max_key_size or len(value) > self.max_value_size:
            raise CommandError(self._too_large(key, value))
        if self.events.flags:
            self._tell_if_new(key)
        self.store.put(key, value, deadline, self.db, kind)
        if self.zindexes:
            self.zindexes.pop(key, None)
        if self._waiting:  # (a sorted set written whole may serve a BZPOPMIN)
            self.blocking.signal(self.db, key)
        if raw:
            self.built_in_place.add(key)
        elif self.built_in_place:
            self.built_in_place.discard(key)
        if self._watched:
            self._touch(key, exists_after=True)

    def put_many(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        """put() each `(key, value)` without a deadline, in order, in one call to the
        store (the gate's run of plain SETs). A pair over a size limit stops it there
        with CommandError; on an error the exception's `items_written` says how many
        were written (their watchers are told)."""
        max_key, max_value = self.max_key_size, self.max_value_size
        for index, (key, value) in enumerate(pairs):
            if len(key) > max_key or len(value) > max_value:
                self.put_many(pairs[:index])
                refusal = CommandError(self._too_large(key, value))
                refusal.items_written = index  # type: ignore[attr-defined]
                raise refusal
        written = len(pairs)
        if self.events.flags:
            for key, _ in pairs:
                self._tell_if_new(key)
        if self.built_in_place:
            self.built_in_place.difference_update(key for key, _ in pairs)
        try:
            self.store.put_many(pairs, self.db)
        except BaseException as exc:
            written = getattr(exc, "items_written", 0)
            raise
        finally:
            if self._watched:
                for key, _ in pairs[:written]:
                    self._touch(key, exists_after=True)

    def set_deadline(self, key: bytes, deadline: int) -> bool:
        """Give an existing key a deadline (0: none); one already passed deletes it. As
        EXPIRE, GETEX and PERSIST, tells "expire", "del" or "persist"."""
        if deadline and deadline <= now_ms():
            return self.remove(key)
        changed = self.store.expire(key, deadline, self.db)
        if changed and self._watched:
            self._touch(key, exists_after=True)
        if self.events.flags & notify.GENERIC and (changed or deadline):
            self.events(notify.GENERIC, b"expire" if deadline else b"persist", key, self.db)
        return changed

    def remove(self, key: bytes) -> bool:
        """delete() as a command that deletes does it: the "del" notification told."""
        if not self.delete(key):
            return False
        if self.events.flags & notify.GENERIC:
            self.events(notify.GENERIC, b"del", key, self.db)
        return True

    def delete(self, key: bytes) -> bool:
        if self._deadline_of and self._expired(key):
            return False
        deleted = self.store.delete(key, self.db)
        if self.zindexes:
            self.zindexes.pop(key, None)
        if self.built_in_place:
            self.built_in_place.discard(key)
        if deleted and self._watched:
            self._touch(key, exists_after=False)
        return deleted

    def begin_batch(self) -> None:
        """Every write until end_batch() is one atomic batch on disk (EXEC, a script;
        batches nest: a script inside EXEC is part of the EXEC's batch)."""
        self.store.begin_batch()

    def end_batch(self) -> None:
        self.store.end_batch()

    def discard_batch(self) -> None:
        """Drop the open batch unwritten, before the server exits (a script stopped
        half-way): on disk it never happened. Nothing but closing the store may follow."""
        self.store.discard_batch()

    def write_batch(self, ops: Sequence[tuple]) -> None:
        """Puts (key, value[, deadline]) and deletes (key, None) as one unit: every size
        is checked before anything is written, and on disk the batch is all or nothing."""
        for key, value, *_ in ops:
            self.check_sizes(key, value or b"")
        if self.events.flags:
            for key, value, *_ in ops:
                if value is not None:
                    self._tell_if_new(key)
        self.store.write_batch(ops, self.db)
        if self.built_in_place:
            self.built_in_place.difference_update(key for key, *_ in ops)
        if self._watched:
            for key, value, *_ in ops:
                self._touch(key, exists_after=value is not None)

    def rename(self, source: bytes, target: bytes) -> None:
        """Move an existing key's value, type and deadline to `target` (replacing it), as
        one batch: after a crash either both names are as before or both as after."""
        self.begin_batch()
        try:
            if self.copy_to(source, self, target, counted=False):
                self.delete(source)
        finally:
            self.end_batch()

    def copy_to(self, source: bytes, destination: Keyspace, target: bytes,
                counted: bool = True) -> bool:
        """Write `source`'s value, type and deadline to `target` of `destination`
        (replacing what it holds); False if there is no `source`. A collection of element
        records is copied element by element, in one batch (O(N), as Kvrocks's)."""
        found = self.read_any(source, counted)
        if found is None:
            return False
        deadline = self.deadline(source)
        if destination.events.flags and target in destination:
            # Redis deletes what the target held and adds the key again: "new" each time
            destination.notify(notify.NEW, b"new", target)
        if not self.collection_version(source):
            destination.put(target, found[0], deadline, kind=found[1])
            return True
        names = self.store.element_names(source, self.db)
        values = self.store.get_elements(source, names, self.db)
        self.begin_batch()
        try:
            destination.create_collection(target, found[1], deadline)
            destination.write_elements(target, dict(zip(names, values)))
        finally:
            self.end_batch()
        return True

    # -- collections of element records (docs/data-model.md) ---------------------

    def collection_version(self, key: bytes) -> int:
        """Nonzero if `key`'s value is element records (a large hash)."""
        return self.store.collection_version(key, self.db)

    def create_collection(self, key: bytes, kind: int, deadline: int = 0) -> None:
        """`key` becomes an empty collection of element records, under a new version."""
        self.check_sizes(key)
        if self.events.flags:
            self._tell_if_new(key)
        self.store.create_collection(key, kind, deadline, self.db)
        if self.built_in_place:
            self.built_in_place.discard(key)
        if self._watched:
            self._touch(key, exists_after=True)

    def write_elements(self, key: bytes, changes: Mapping[Any, bytes | None]) -> None:
        """Set (or, for None, remove) elements of collection `key` (a hash's by field, a
        list's by int position), as one batch; every size is checked before anything is
        written."""
        for value in changes.values():
            self.check_sizes(key, value or b"")
        store, db = self.store, self.db
        if len(changes) > 1:  # (one record needs no batch around it)
            store.begin_batch()
        try:
            for field, value in changes.items():
                if value is None:
                    store.delete_element(key, field, db)
                else:
                    store.put_element(key, field, value, db)
        finally:
            if len(changes) > 1:
                store.end_batch()
        if self._watched:
            self._touch(key, exists_after=True)
        if self._waiting:
            self.blocking.signal(self.db, key)

    def flush(self) -> None:
        """FLUSHDB: one small write whatever the database holds (docs/data-model.md)."""
        if self._watched:  # a watched key that existed is modified (touchAllWatchedKeysInDb)
            self.watches.touch_all(self._existed)
        self.store.flush_db(self.db)
        self.reattach()

    def _existed(self, watched: tuple[int, bytes]) -> bool:
        return watched[0] == self.db and self.store.contains(watched[1], self.db)

    def expiry_figures(self) -> tuple[int, int]:
        """(keys with a deadline, their average remaining TTL in ms) for INFO keyspace."""
        count = len(self.deadlines)
        if not count:
            return 0, 0
        return count, max(0, self.deadlines.average_ms() - now_ms())

    def stats_of_store(self) -> StoreStats:
        return self.store.stats()

    def move_to(self, other: Keyspace, key: bytes) -> None:
        """MOVE: the key's value and deadline go to database `other` (where it must not
        exist), as one batch."""
        self.begin_batch()
        try:
            if self.copy_to(key, other, key, counted=False):
                self.delete(key)
        finally:
            self.end_batch()

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

    def step(self, keys: Callable[[], Iterable[bytes]], present: Callable[[bytes], bool],
             cursor: int, count: int, match) -> tuple[int, list[bytes]] | None:
        """`keys()` lists the keys at the start of a scan; `present(key)` says whether a
        key still exists when its turn comes."""
        if cursor == 0:
            scan_id = self._next_id
            self._next_id = self._next_id % 0x7FFFFFFF + 1
            snapshot = list(keys())
            self._snapshots[scan_id] = snapshot
            self._held += len(snapshot)
            position = 0
        else:
            scan_id, position = cursor >> 32, cursor & 0xFFFFFFFF
            held = self._snapshots.get(scan_id)
            if held is None:
                return None
            snapshot = held
            self._snapshots.move_to_end(scan_id)
        budget = self.HELD_PER_KEY * len(snapshot) + self.HELD_FLOOR
        while len(self._snapshots) > self._limit or (self._held > budget and
                                                     len(self._snapshots) > 1):
            self._forget(next(iter(self._snapshots)))
        end = min(position + count, len(snapshot))
        found = [k for k in snapshot[position:end] if present(k) and (match is None or match(k))]
        if end >= len(snapshot):
            self._forget(scan_id)
            return 0, found
        return scan_id << 32 | end, found

    def _forget(self, scan_id: int) -> None:
        snapshot = self._snapshots.pop(scan_id, None)
        if snapshot is not None:
            self._held -= len(snapshot)
