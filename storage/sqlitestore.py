"""The sqlite engine: the store's interface on one SQLite file, through sqlite-utils.

Writes open a transaction that `flush()` commits, so the group commit the
server does once per loop pass is one SQLite commit. WAL mode; the fsync
policy maps to `PRAGMA synchronous`: always -> FULL (every commit is synced),
everysec -> NORMAL (commits survive a process crash; a power loss may lose the
last ones), no -> OFF. `auto_vacuum=INCREMENTAL` is set at creation so that
space can be reclaimed in slices (`begin_compaction`, `compaction_step`,
`finish_compaction`: what the server runs between loop passes); `compact()`
runs a full VACUUM.

A collection kept as element records (docs/data-model.md) is a row of its database's
table with its type in `kind` and its version in `version`, and one row per element in
the slot's element table (`el_<slot>`: key, version, field, value). Deleting or
overwriting the key leaves its elements behind under a version no row names: reads
never see them and a compaction deletes them, in slices.

Deadlines live in their own column, `expires_at` (Unix ms, 0: none; a partial
index covers the keys that have one), and, as in the log engine, in memory
(deadlines.py), loaded at open: keys whose deadline passed while the store
was closed are deleted then.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator, Sequence

import sqlite_utils

from .compaction import CompactionResult
from .dirlock import DirectoryLock
from .errors import ClosedError, CompactionError, StorageError
from .interface import CompactionJob, StoreStats
from .keydir import Elements, KeyDir
from .layout import SQLITE_FILE, LibraryFile, check_meta
from .logstore import FSYNC_POLICIES
from .private import open_fd, prepare_directory
from .record import as_bytes, checked_ops, checked_pair
from .slots import DatabaseQueries, SlotMap

_SYNCHRONOUS = {"always": "FULL", "everysec": "NORMAL", "no": "OFF"}
_PAGE = 1000  # keys fetched per query while iterating


@dataclasses.dataclass
class SqliteCompaction:
    """A compaction of the sqlite engine in progress (free pages given back in slices)."""

    store: SqliteStore
    bytes_before: int
    pages_total: int
    page_size: int
    pages_done: int = 0
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    # Stale elements are deleted first, a window of rows per step: the slots still to
    # go through, and the last rowid done in the first of them.
    purging: list[int] = dataclasses.field(default_factory=list)
    purged_to: int = 0
    # The job's side of storage.interface.CompactionJob: no fork (a SQLite connection
    # must not cross one); the owner calls step() once per loop pass.
    forks = False
    step_pages = 16  # one short incremental_vacuum slice per loop pass

    @property
    def description(self) -> str:
        return f"{self.bytes_total} bytes of free pages to give back"

    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        raise CompactionError("a sqlite compaction runs in steps, not in a child")

    def step(self) -> bool:
        """One slice; True once no free page is left."""
        return self.store.compaction_step(self, self.step_pages)

    @property
    def bytes_total(self) -> int:
        return self.pages_total * self.page_size

    @property
    def bytes_done(self) -> int:
        return self.pages_done * self.page_size


class SqliteStore(DatabaseQueries, LibraryFile):
    """A data directory of the sqlite engine, open for reading and writing."""

    engine = "sqlite"
    # Values are not sized before they are read: a reader of many keys reads them one by
    # one within its budget (see Keyspace.read_many).
    largest_value = 1 << 62

    def __init__(self, directory: str, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        prepare_directory(self.directory)
        self._lock = DirectoryLock(self.directory)
        self._closed = False
        self._compactions = 0
        self._last_compaction: dict | None = None
        self._plan: SqliteCompaction | None = None
        try:
            check_meta(self.directory, self.engine)
            self.path = os.path.join(self.directory, SQLITE_FILE)
            os.close(open_fd(self.path, os.O_RDWR | os.O_CREAT))  # 0600; its -wal and -shm too
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db = sqlite_utils.Database(conn)
            if "kv" not in self._db.table_names():
                self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                # A rowid table, not WITHOUT ROWID: the latter keeps rows of a
                # few hundred bytes or more in overflow pages, measured at 4.6
                # KiB on disk per 1 KiB value.
                self._db.execute(
                    "CREATE TABLE kv (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL)"
                )
            kv = self._db.table("kv")
            if "expires_at" not in kv.columns_dict:  # a store from before TTLs
                kv.add_column("expires_at", int, not_null_default=0)
                self._db.execute("CREATE INDEX kv_expires_at ON kv (expires_at) "
                                 "WHERE expires_at > 0")
            self._db.enable_wal()
            self._db.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[fsync]}")
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        self._in_transaction = False
        self._version = 0  # the newest collection version given (logstore.py's)
        # The databases (slots.py, docs/data-model.md): database i's rows are in the table
        # of slot slots[i] ("kv" for slot 0, as before databases, else "kv_<slot>"); the
        # map is one row of table "databases", written in the same transaction as the
        # writes around it. Only the deadlines of each slot are kept in memory.
        self._slots = SlotMap()
        row = self._execute("SELECT next_slot, slots FROM databases").fetchone() \
            if "databases" in self._db.table_names() else None
        if row is not None:
            self._slots.apply(row[0], json.loads(row[1]))
        now = time.time_ns() // 1_000_000
        for db, slot in enumerate(self._slots.slots):
            space = self._slots.spaces[slot]
            table = _table(slot)
            if table not in self._db.table_names():
                continue
            columns = self._db.table(table).columns_dict
            if "kind" not in columns:  # a table from format 3
                self._execute(f"ALTER TABLE {table} ADD COLUMN kind INTEGER NOT NULL DEFAULT 0")
            if "version" not in columns:  # a table from before element records
                self._execute(f"ALTER TABLE {table} ADD COLUMN version INTEGER NOT NULL "
                              "DEFAULT 0")
            self._create_element_table(slot)
            for key, version in self._execute(f"SELECT key, version FROM {table} "
                                              "WHERE version != 0"):
                space.collections[bytes(key)] = Elements(version)
                self._version = max(self._version, version)
            rows = self._execute(f"SELECT key, expires_at FROM {table} WHERE expires_at > 0")
            for key, deadline in rows:
                space.deadlines.set(bytes(key), deadline)
            for key, kind in self._execute(f"SELECT key, kind FROM {table} WHERE kind != 0"):
                space.types[bytes(key)] = kind
            for key in space.deadlines.due(now, len(space.deadlines)):
                self.forget_expired(key, db)
        self.flush()

    def _table(self, db: int) -> str | None:
        """The table of database `db`, None while nothing was ever written to it."""
        slots = self._slots.slots
        return _table(slots[db]) if db < len(slots) else None

    def _writable(self, db: int) -> tuple[str, KeyDir]:
        """The table and slot of database `db`, created (with the map) if need be; in
        the open transaction."""
        slots = self._slots
        if db >= len(slots.slots):
            if db < 0:
                raise ValueError(f"database must be 0 or more, not {db}")
            self._begin()
            slots.ensure(db)
            self._write_map()
        slot = slots.slots[db]
        return _table(slot), slots.spaces[slot]

    def _write_map(self) -> None:
        """The map, and a table for every slot it holds, in the open transaction; the
        tables of the slots it no longer holds are dropped."""
        slots = self._slots
        self._execute("CREATE TABLE IF NOT EXISTS databases (next_slot INTEGER NOT NULL, "
                      "slots TEXT NOT NULL)")
        self._execute("DELETE FROM databases")
        self._execute("INSERT INTO databases (next_slot, slots) VALUES (?, ?)",
                      (slots.next_slot, json.dumps(slots.slots)))
        names = set(self._db.table_names())
        for slot in slots.slots:
            table = _table(slot)
            if table not in names:
                self._execute(f"CREATE TABLE {table} (key BLOB PRIMARY KEY NOT NULL, "
                              "value BLOB NOT NULL, expires_at INTEGER NOT NULL DEFAULT 0, "
                              "kind INTEGER NOT NULL DEFAULT 0, "
                              "version INTEGER NOT NULL DEFAULT 0)")
                self._execute(f"CREATE INDEX {table}_expires_at ON {table} (expires_at) "
                              "WHERE expires_at > 0")
            self._create_element_table(slot)
        retired = [name for name in names if (name == "kv" or name.startswith(("kv_", "el_")))
                   and int(name[3:] or 0) not in slots.slots]
        for name in retired:  # a retired slot's table goes whole: no delete per row
            self._execute(f"DROP TABLE {name}")

    def _create_element_table(self, slot: int) -> None:
        # A rowid table: elements list in the order they were first set in (upserts keep
        # an element's rowid), and a compaction purges stale ones a window of rowids at
        # a time.
        self._execute(f"CREATE TABLE IF NOT EXISTS el_{slot} (key BLOB NOT NULL, "
                      "version INTEGER NOT NULL, field BLOB NOT NULL, value BLOB NOT NULL, "
                      "UNIQUE (key, version, field))")

    def _begin(self) -> None:
        if not self._in_transaction:
            self._conn.execute("BEGIN")
            self._in_transaction = True

    def put(self, key: bytes, value: bytes, expires_at_ms: int = 0, db: int = 0,
            kind: int = 0) -> None:
        self._check_open()
        key, value = checked_pair(key, value)
        self._begin()
        table, space = self._writable(db)
        self._execute(f"INSERT OR REPLACE INTO {table} (key, value, expires_at, kind) "
                      "VALUES (?, ?, ?, ?)", (key, value, expires_at_ms, kind))
        if space.collections:
            space.collections.pop(key, None)
        if expires_at_ms or len(space.deadlines):
            space.deadlines.set(key, expires_at_ms)
        if kind:
            space.types[key] = kind
        elif space.types:
            space.types.pop(key, None)

    def put_many(self, pairs: Sequence[tuple[bytes, bytes]], db: int = 0) -> None:
        """put() each `(key, value)` without a deadline, in order; on an error the
        exception's `items_written` says how many were written."""
        done = 0
        try:
            for key, value in pairs:
                self.put(key, value, 0, db)
                done += 1
        except BaseException as exc:
            exc.items_written = done  # type: ignore[attr-defined]
            raise

    def get(self, key: bytes, db: int = 0) -> bytes | None:
        self._check_open()
        table = self._table(db)
        if table is None:
            return None
        row = self._execute(f"SELECT value FROM {table} WHERE key = ?",
                            (as_bytes(key, "key"),)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, key: bytes, db: int = 0) -> bool:
        self._check_open()
        key = as_bytes(key, "key")
        table = self._table(db)
        if table is None:
            return False
        self._begin()
        space = self._slots.space(db)
        space.deadlines.discard(key)
        space.types.pop(key, None)
        space.collections.pop(key, None)
        return self._execute(f"DELETE FROM {table} WHERE key = ?", (key,)).rowcount > 0

    def expire(self, key: bytes, expires_at_ms: int, db: int = 0) -> bool:
        """Give an existing key a new deadline (0: none); False if there is no such key."""
        self._check_open()
        key = as_bytes(key, "key")
        table = self._table(db)
        if table is None:
            return False
        self._begin()
        found = self._execute(f"UPDATE {table} SET expires_at = ? WHERE key = ?",
                              (expires_at_ms, key)).rowcount > 0
        if found:
            self._slots.space(db).deadlines.set(key, expires_at_ms)
        return found

    def forget_expired(self, key: bytes, db: int = 0) -> None:
        """Delete a key whose deadline has passed (committed with the next flush)."""
        table = self._table(db)
        if table is None:
            return
        self._begin()
        self._execute(f"DELETE FROM {table} WHERE key = ?", (key,))
        space = self._slots.space(db)
        space.deadlines.discard(key)
        space.types.pop(key, None)
        space.collections.pop(key, None)

    # -- collections of element records --------------------------------------

    def create_collection(self, key: bytes, kind: int, expires_at_ms: int = 0,
                          db: int = 0) -> None:
        """Make `key` an empty collection of type `kind` under a new version (its old
        elements, if any, stay behind unseen until a compaction deletes them)."""
        self._check_open()
        key = as_bytes(key, "key")
        self._begin()
        table, space = self._writable(db)
        version = self._version = max(self._version + 1, time.time_ns() // 1000)
        self._execute(f"INSERT OR REPLACE INTO {table} (key, value, expires_at, kind, version) "
                      "VALUES (?, x'', ?, ?, ?)", (key, expires_at_ms, kind, version))
        space.collections[key] = Elements(version)
        space.types[key] = kind
        if expires_at_ms or len(space.deadlines):
            space.deadlines.set(key, expires_at_ms)

    def _elements(self, key: bytes, db: int) -> tuple[str, int]:
        """The element table and version of collection `key` (ValueError if none)."""
        self._check_open()
        space = self._slots.find(db)
        found = space.collections.get(key) if space is not None else None
        if found is None:
            raise ValueError(f"{key!r} is not a collection of element records")
        return f"el_{self._slots.slots[db]}", found.version

    def put_element(self, key: bytes, field: bytes | int, value: bytes, db: int = 0) -> None:
        key, value = checked_pair(key, value)
        table, version = self._elements(key, db)
        self._begin()
        self._execute(f"INSERT INTO {table} (key, version, field, value) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (key, version, field) DO UPDATE SET value = excluded.value",
                      (key, version, field if type(field) is int else as_bytes(field, "field"),
                       value))

    def delete_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        table, version = self._elements(key, db)
        self._begin()
        return self._execute(f"DELETE FROM {table} WHERE key = ? AND version = ? AND field = ?",
                             (key, version, field)).rowcount > 0

    def get_elements(self, key: bytes, fields: Sequence, db: int = 0) -> list[bytes | None]:
        return [self.get_element(key, field, db) for field in fields]

    def element_range(self, key: bytes, db: int = 0) -> tuple[int, int]:
        """A list's positions, [head, tail) (its element names are ints without a gap)."""
        table, version = self._elements(key, db)
        low, high = self._execute(f"SELECT min(field), max(field) FROM {table} WHERE key = ? "
                                  "AND version = ?", (key, version)).fetchone()
        return (0, 0) if low is None else (low, high + 1)

    def get_element(self, key: bytes, field: bytes | int, db: int = 0) -> bytes | None:
        table, version = self._elements(key, db)
        row = self._execute(f"SELECT value FROM {table} WHERE key = ? AND version = ? AND "
                            "field = ?", (key, version, field)).fetchone()
        return None if row is None else bytes(row[0])

    def has_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        table, version = self._elements(key, db)
        return self._execute(f"SELECT 1 FROM {table} WHERE key = ? AND version = ? AND "
                             "field = ?", (key, version, field)).fetchone() is not None

    def element_count(self, key: bytes, db: int = 0) -> int:
        table, version = self._elements(key, db)
        return self._execute(f"SELECT count(*) FROM {table} WHERE key = ? AND version = ?",
                             (key, version)).fetchone()[0]

    def element_names(self, key: bytes, db: int = 0) -> list[bytes]:
        table, version = self._elements(key, db)
        return [bytes(field) for (field,) in self._execute(
            f"SELECT field FROM {table} WHERE key = ? AND version = ? ORDER BY rowid",
            (key, version))]

    def _purge_window(self, slot: int, after: int, window: int) -> int | None:
        """Delete the stale elements (of versions no key names any more: the collection
        was deleted, expired or overwritten) among the `window` rows of slot `slot`'s
        element table after rowid `after`; return the last rowid looked at, None past
        the end. A window, not a whole-table DELETE, so a compaction step stays short."""
        table = f"el_{slot}"
        last = self._execute(f"SELECT max(rowid) FROM (SELECT rowid FROM {table} "
                             "WHERE rowid > ? ORDER BY rowid LIMIT ?)",
                             (after, window)).fetchone()[0]
        if last is None:
            return None
        self._begin()
        self._execute(f"DELETE FROM {table} WHERE rowid > ? AND rowid <= ? AND NOT EXISTS "
                      f"(SELECT 1 FROM {_table(slot)} k WHERE k.key = {table}.key AND "
                      f"k.version = {table}.version)", (after, last))
        self.flush()
        return last

    # -- databases -----------------------------------------------------------

    def open_databases(self, count: int) -> None:
        self._check_open()
        if count > self._slots.databases():
            self._writable(count - 1)
            self.flush()

    def flush_db(self, db: int) -> None:
        """Empty database `db`: it gets a fresh table, the old one is dropped."""
        self._check_open()
        self._begin()
        self._slots.flush(db)
        self._write_map()

    def flush_all(self) -> None:
        self._check_open()
        self._begin()
        for db in range(self._slots.databases()):
            self._slots.flush(db)
        self._write_map()

    def swap_dbs(self, a: int, b: int) -> None:
        self._check_open()
        if a < 0 or b < 0:
            raise ValueError("database must be 0 or more")
        self._begin()
        self._slots.swap(a, b)
        self._write_map()

    def count(self, db: int = 0) -> int:
        self._check_open()
        table = self._table(db)
        if table is None:
            return 0
        return self._execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def write_batch(self, ops: Sequence[tuple], db: int = 0) -> None:
        """Puts `(key, value)` or `(key, value, expires_at_ms)` and deletes `(key, None)`,
        all or nothing: every write until flush() is one SQL transaction already, so the
        batch commits with it, whole."""
        self._check_open()
        checked = checked_ops(ops)
        for key, value, expires_at_ms in checked:
            if value is None:
                self.delete(key, db)
            else:
                self.put(key, value, expires_at_ms, db)

    def begin_batch(self, size_hint: int = 0) -> None:
        """Nothing to do: every write until flush() is one SQL transaction already."""
        self._check_open()

    def end_batch(self) -> None:
        pass

    def discard_batch(self) -> None:
        """Roll back every write since the last flush (a script stopped half-way by
        SHUTDOWN NOSAVE or SIGTERM; none of them was acknowledged). Only close() may
        follow: the in-memory deadlines still count the rolled-back writes."""
        if self._in_transaction:
            self._execute("ROLLBACK")
            self._in_transaction = False

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def contains(self, key: bytes, db: int = 0) -> bool:
        return self.get(key, db) is not None

    def keys(self, prefix: bytes = b"", db: int = 0) -> Iterator[bytes]:
        """Live keys in key order, fetched a page at a time so writes may interleave."""
        self._check_open()
        prefix = as_bytes(prefix, "prefix")
        last = None
        while True:
            table = self._table(db)  # (again each page: a FLUSHDB may have replaced it)
            if table is None:
                return
            if last is None:
                rows = self._execute(
                    f"SELECT key FROM {table} WHERE key >= ? ORDER BY key LIMIT ?",
                    (prefix, _PAGE)).fetchall()
            else:
                rows = self._execute(
                    f"SELECT key FROM {table} WHERE key > ? ORDER BY key LIMIT ?",
                    (last, _PAGE)).fetchall()
            for (key,) in rows:
                key = bytes(key)
                if not key.startswith(prefix):
                    return
                yield key
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def __len__(self) -> int:
        """Keys in all databases."""
        self._check_open()
        return sum(self.count(db) for db in range(self._slots.databases()))

    def flush(self) -> None:
        """The group-commit barrier: commit the open transaction."""
        self._check_open()
        if self._in_transaction:
            self._execute("COMMIT")
            self._in_transaction = False

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
            self._execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._closed = True
            self._conn.close()
            self._lock.release()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _pragma(self, name: str) -> int:
        return self._execute(f"PRAGMA {name}").fetchone()[0]

    def _file_bytes(self) -> int:
        return sum(
            os.path.getsize(self.path + suffix)
            for suffix in ("", "-wal")
            if os.path.exists(self.path + suffix)
        )

    def stats(self) -> StoreStats:
        self._check_open()
        page = self._pragma("page_size")
        pages = self._pragma("page_count")
        free = self._pragma("freelist_count")
        live, total = (pages - free) * page, self._file_bytes()
        return StoreStats(
            engine=self.engine,
            fsync=self.fsync,
            keys=len(self),
            expiring_keys=sum(len(space.deadlines) for space in self._slots.spaces.values()),
            # live + dead = total: dead is what a compaction gives back, free pages and the
            # write-ahead log alike (the WAL is most of it right after heavy writes)
            live_bytes=live,
            dead_bytes=max(0, total - live),
            total_bytes=total,
            segments=1,
            descriptors=8,  # the database, its write-ahead log and shared memory, a lock
            compactions=self._compactions,
            corrupt_records=0,  # (SQLite checks its pages itself: damage is an error)
            compaction_in_progress=self._plan is not None,
            last_compaction=self._last_compaction,
        )

    # -- compaction in slices (for a server that must keep serving) ------------

    def begin_compaction(self) -> SqliteCompaction:
        """Start reclaiming free pages in slices; see `compaction_step`."""
        self._check_open()
        if self._plan is not None:
            raise CompactionError("a compaction is already in progress")
        self.flush()
        page = self._pragma("page_size")
        free = self._pragma("freelist_count")
        self._plan = SqliteCompaction(self, bytes_before=self._file_bytes(), pages_total=free,
                                      page_size=page, purging=list(self._slots.slots))
        return self._plan

    def compaction_step(self, plan: CompactionJob, pages: int = 64) -> bool:
        """Give back up to `pages` free pages to the file system; True once none are left.

        One `PRAGMA incremental_vacuum(pages)`, a short C call, so a server can
        run one slice per loop pass and stay responsive (a whole VACUUM would
        hold the loop, and a SIGTERM, for as long as it takes to rewrite the file).
        """
        current = self._check_compaction(plan)
        self.flush()
        while current.purging:
            last = self._purge_window(current.purging[0], current.purged_to, pages * 64)
            if last is not None:
                current.purged_to = last
                return False
            current.purging.pop(0)
            current.purged_to = 0
        try:
            # executescript steps the pragma to completion; execute() frees one page.
            self._conn.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc
        remaining = self._pragma("freelist_count")
        current.pages_done = max(current.pages_done, current.pages_total - remaining)
        return remaining == 0

    def finish_compaction(self, plan: CompactionJob) -> CompactionResult:
        """Truncate the WAL and report what the slices reclaimed."""
        current = self._check_compaction(plan)
        self.flush()
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return self._record(current.bytes_before, current.started_at)

    def finish_steps(self, plan: CompactionJob, batch: int = 0
                     ) -> Generator[None, None, CompactionResult]:
        """`finish_compaction` as a generator (one step), as the log engine offers it."""
        self._check_compaction(plan)
        return self._finish_now(plan)

    def _finish_now(self, plan: CompactionJob) -> Generator[None, None, CompactionResult]:
        return self.finish_compaction(plan)
        yield  # (a generator that returns at once)

    def abort_compaction(self, plan: CompactionJob) -> None:
        """Stop between slices; what was reclaimed so far stays reclaimed."""
        self._check_compaction(plan)
        self._plan = None

    def _check_compaction(self, plan: CompactionJob) -> SqliteCompaction:
        """This store's current compaction, which `plan` must be."""
        self._check_open()
        if plan is not self._plan or self._plan is None:
            raise CompactionError("that compaction is not this store's current one")
        return self._plan

    def _record(self, before: int, started_at: float) -> CompactionResult:
        after = self._file_bytes()
        result = CompactionResult(
            bytes_before=before,
            bytes_after=after,
            reclaimed=before - after,
            duration_s=time.monotonic() - started_at,
            keys=len(self),
        )
        self._plan = None
        self._compactions += 1
        self._last_compaction = result.as_dict()
        return result

    def compact(self) -> CompactionResult:
        """Commit, VACUUM and truncate the WAL; report the file sizes around it."""
        self._check_open()
        self.flush()
        started = time.monotonic()
        before = self._file_bytes()
        for slot in self._slots.slots:
            after: int | None = 0
            while after is not None:
                after = self._purge_window(slot, after, 1 << 16)
        self._execute("VACUUM")
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self._record(before, started)

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the store is closed")


def _table(slot: int) -> str:
    """The table of a slot's rows: "kv" for slot 0 (the one table before databases)."""
    return f"kv_{slot}" if slot else "kv"
