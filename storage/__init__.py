"""kvd's embedded store: bytes in, bytes out, durable once `flush()` returns.

    from storage import open_store
    with open_store("data", engine="log", fsync="always") as db:
        db.put(b"k", b"v")
        db.flush()             # group-commit barrier
        db.get(b"k")           # -> b"v"

Layout of the package, one job per module:

    interface.py    the Store protocol both engines implement, and the compaction job
    record.py       the segment record format (documented there) and its reader
    hints.py        hint files, so start-up reads no data
    keydir.py       record locations packed into one int per key
    slots.py        databases: each one's keys in a slot, the map from database to slot
    layout.py       the names of the files in a data directory; META; the segment list
    private.py      files created 0600 (the directory 0700), never opened through a symlink
    dirlock.py      one process per data directory (fcntl lock)
    logstore.py     the log engine (default): segments + in-memory key directory
    compaction.py   the log engine's crash-safe compaction (begin / run / finish)
    sqlitestore.py  the sqlite engine, the same interface on one SQLite file
    errors.py       every exception the store raises

This package never imports `server` or `client`, and knows nothing of
sockets, signals or processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compaction import CompactionPlan, CompactionResult
from .errors import (
    ClosedError,
    CompactionError,
    CorruptionError,
    FormatError,
    IntegrityError,
    LockedError,
    StorageError,
)
from .interface import CompactionJob, Store, StoreStats
from .layout import FORMAT_VERSION, engine_of, format_of, holds_data
from .logstore import DEFAULT_SEGMENT_SIZE, FSYNC_POLICIES, LogStore

if TYPE_CHECKING:
    from .sqlitestore import SqliteStore

ENGINES = ("log", "sqlite")

if TYPE_CHECKING:
    def _both_engines_are_stores(log: LogStore, sqlite: SqliteStore) -> tuple[Store, Store]:
        return log, sqlite  # mypy checks each engine against the protocol here

__all__ = [
    "ENGINES", "FSYNC_POLICIES", "DEFAULT_SEGMENT_SIZE", "FORMAT_VERSION", "open_store",
    "engine_of", "format_of", "holds_data",
    "Store", "StoreStats", "CompactionJob",
    "LogStore", "SqliteStore", "CompactionPlan", "CompactionResult",
    "StorageError", "CorruptionError", "LockedError", "FormatError", "IntegrityError",
    "CompactionError", "ClosedError",
]


def open_store(
    path: str, engine: str | None = None, fsync: str = "always", *,
    segment_size: int | None = None
) -> Store:
    """Open (creating if needed) the data directory `path` with the given engine; without
    one, the engine the directory was made with (its META), or "log" for a new one. An
    engine that contradicts the directory's is refused (FormatError).

    fsync: "always" (every flush() is fsynced), "everysec" (written on
    flush(), fsynced about once a second), "no" (left to the OS). Every flushed
    write survives a crash of the process under all three; they differ on a
    power loss. segment_size applies to the log engine.
    """
    if engine is None:
        engine = engine_of(path) or "log"
    if engine == "log":
        return LogStore(path, fsync, segment_size or DEFAULT_SEGMENT_SIZE)
    if engine == "sqlite":
        from .sqlitestore import SqliteStore

        return SqliteStore(path, fsync)
    raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")


def __getattr__(name: str) -> object:
    # sqlite-utils takes longer to import than the rest of the store together;
    # only users of the sqlite engine pay for it.
    if name == "SqliteStore":
        from .sqlitestore import SqliteStore

        return SqliteStore
    raise AttributeError(f"module 'storage' has no attribute {name!r}")
