"""The sqlite engine: the store's interface on one SQLite file, through sqlite-utils.

Writes open a transaction that `flush()` commits, so the group commit the
server does once per loop pass is one SQLite commit. WAL mode; the fsync
policy maps to `PRAGMA synchronous`: always -> FULL (every commit is synced),
everysec -> NORMAL (commits survive a process crash; a power loss may lose the
last ones), no -> OFF. `auto_vacuum=INCREMENTAL` is set at creation so that
space can later be reclaimed in slices; `compact()` runs a full VACUUM.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator

import sqlite_utils

from .compaction import CompactionResult
from .dirlock import DirectoryLock
from .errors import ClosedError, StorageError
from .layout import SQLITE_FILE, check_meta
from .logstore import FSYNC_POLICIES
from .record import as_bytes, checked_pair

_SYNCHRONOUS = {"always": "FULL", "everysec": "NORMAL", "no": "OFF"}
_PAGE = 1000  # keys fetched per query while iterating


class SqliteStore:
    """A data directory of the sqlite engine, open for reading and writing."""

    engine = "sqlite"

    def __init__(self, directory: str, fsync: str = "always") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        os.makedirs(self.directory, exist_ok=True)
        self._lock = DirectoryLock(self.directory)
        self._closed = False
        self._compactions = 0
        self._last_compaction: dict | None = None
        try:
            check_meta(self.directory, self.engine)
            self.path = os.path.join(self.directory, SQLITE_FILE)
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
            self._db.enable_wal()
            self._db.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[fsync]}")
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        self._in_transaction = False

    def _begin(self) -> None:
        if not self._in_transaction:
            self._conn.execute("BEGIN")
            self._in_transaction = True

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        key, value = checked_pair(key, value)
        self._begin()
        self._execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        row = self._execute("SELECT value FROM kv WHERE key = ?", (as_bytes(key, "key"),)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, key: bytes) -> bool:
        self._check_open()
        self._begin()
        return self._execute("DELETE FROM kv WHERE key = ?", (as_bytes(key, "key"),)).rowcount > 0

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def keys(self, prefix: bytes = b"") -> Iterator[bytes]:
        """Live keys in key order, fetched a page at a time so writes may interleave."""
        self._check_open()
        prefix = as_bytes(prefix, "prefix")
        last = None
        while True:
            if last is None:
                rows = self._execute(
                    "SELECT key FROM kv WHERE key >= ? ORDER BY key LIMIT ?", (prefix, _PAGE)
                ).fetchall()
            else:
                rows = self._execute(
                    "SELECT key FROM kv WHERE key > ? ORDER BY key LIMIT ?", (last, _PAGE)
                ).fetchall()
            for (key,) in rows:
                key = bytes(key)
                if not key.startswith(prefix):
                    return
                yield key
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def __len__(self) -> int:
        self._check_open()
        return self._execute("SELECT count(*) FROM kv").fetchone()[0]

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

    def stats(self) -> dict:
        self._check_open()
        page = self._pragma("page_size")
        pages = self._pragma("page_count")
        free = self._pragma("freelist_count")
        return {
            "engine": self.engine,
            "fsync": self.fsync,
            "keys": len(self),
            "live_bytes": (pages - free) * page,
            "dead_bytes": free * page,
            "total_bytes": self._file_bytes(),
            "segments": 1,
            "compactions": self._compactions,
            "compaction_in_progress": False,
            "last_compaction": self._last_compaction,
        }

    def compact(self) -> CompactionResult:
        """Commit, VACUUM and truncate the WAL; report the file sizes around it."""
        self._check_open()
        self.flush()
        started = time.monotonic()
        before = self._file_bytes()
        self._execute("VACUUM")
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = self._file_bytes()
        result = CompactionResult(
            bytes_before=before,
            bytes_after=after,
            reclaimed=before - after,
            duration_s=time.monotonic() - started,
            keys=len(self),
        )
        self._compactions += 1
        self._last_compaction = result.as_dict()
        return result

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the store is closed")

