"""What a store is, to its users: the protocol both engines implement.

The server, kvctl's tools and the tests program against `Store` and `CompactionJob`,
never against an engine's class: a new engine is a class that satisfies these (mypy
checks both engines against them, tests/storage/test_contract.py runs the same
behaviour tests on both), and nothing outside `storage/` branches on the engine.

Keys and values are bytes. A write is visible to reads at once and durable once
`flush()` returns (group commit). Deadlines are absolute Unix milliseconds, 0 for
none; a put replaces the deadline, as Redis's SET does. Every key lives in a database
(`db`, 0 by default; docs/data-model.md): the databases share the log and the batches,
and FLUSHDB, FLUSHALL and SWAPDB cost one small write whatever they hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .compaction import CompactionResult
    from .deadlines import Deadlines


class KeyTypes(Protocol):
    """The types of a database's keys that are not strings, as a dict of them would
    answer (the sqlite engine's is one; the log engine reads its key directory)."""

    def __len__(self) -> int:
        """How many keys are not strings (0: all are; the keyspace's fast test)."""

    def __contains__(self, key: object) -> bool: ...

    def get(self, key: bytes, default: int, /) -> int: ...


@dataclasses.dataclass(frozen=True)
class StoreStats:
    """A store's figures (`kvctl stats`, INFO persistence, `kvd check`)."""

    engine: str
    fsync: str
    keys: int  # in all databases
    expiring_keys: int
    # live + dead = total: dead is what a compaction would give back
    live_bytes: int
    dead_bytes: int
    total_bytes: int
    segments: int
    descriptors: int  # the most file descriptors the store holds
    compactions: int
    corrupt_records: int  # damaged records met (and logged) since open
    compaction_in_progress: bool
    last_compaction: dict | None  # CompactionResult.as_dict() of the last one
    mapped_segments: int = 0  # (the log engine: sealed segments mapped now)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class CompactionJob(Protocol):
    """A compaction begun by `Store.begin_compaction`, driven by its owner.

    If `forks`, the middle runs in a forked child as `run(progress)` (the log engine:
    it copies live records into new segments, reading only immutable files); else the
    owner calls `step()` once per loop pass until it returns True (the sqlite engine:
    a SQLite connection must not cross a fork). Either way the owner then advances
    `Store.finish_steps(job)` to apply it, or calls `Store.abort_compaction(job)`.
    """

    forks: bool
    started_at: float

    @property
    def bytes_total(self) -> int: ...

    @property
    def description(self) -> str:
        """For the log: what the job covers."""

    def run(self, progress: Callable[[int, int], None] | None = None) -> None: ...

    def step(self) -> bool: ...


class Store(Protocol):
    engine: str
    fsync: str
    # The largest record ever held (bytes): a reader of many keys learns from it whether
    # their values could be large (Keyspace.read_many).
    largest_value: int

    # -- data ------------------------------------------------------------------------

    def get(self, key: bytes, db: int = 0) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, expires_at_ms: int = 0, db: int = 0,
            kind: int = 0) -> None:
        """`kind`: the value's type, 0 a string, 1-4 another type packed whole by the
        caller (hash, list, set, sorted set); kept with the record and in memory."""

    def types_of(self, db: int) -> KeyTypes:
        """Database `db`'s non-string keys and their types (read only; replaced by a flush
        or swap of the database)."""

    def type_of(self, key: bytes, db: int = 0) -> int:
        """The type of `key`'s value (0: a string, or no such key); no disk access."""

    def put_many(self, pairs: Sequence[tuple[bytes, bytes]], db: int = 0) -> None:
        """put() of each pair without a deadline, in order (not one batch); on an error
        the exception's `items_written` says how many were written."""

    def delete(self, key: bytes, db: int = 0) -> bool: ...

    def expire(self, key: bytes, expires_at_ms: int, db: int = 0) -> bool:
        """A new deadline for an existing key, without rewriting its value."""

    def deadline(self, key: bytes, db: int = 0) -> int: ...

    def forget_expired(self, key: bytes, db: int = 0) -> None:
        """Drop, from memory only, a key whose deadline has passed."""

    @property
    def deadlines(self) -> Deadlines:
        """Database 0's keys that have a deadline."""

    def deadlines_of(self, db: int) -> Deadlines: ...

    def contains(self, key: bytes, db: int = 0) -> bool: ...

    def __contains__(self, key: bytes) -> bool:
        """Whether database 0 holds `key`."""

    def __len__(self) -> int:
        """Keys in all databases."""

    def count(self, db: int = 0) -> int:
        """Keys in database `db`."""

    def keys(self, prefix: bytes = b"", db: int = 0) -> Iterator[bytes]: ...

    # -- collections of element records (docs/data-model.md) ----------------------------

    def collection_version(self, key: bytes, db: int = 0) -> int:
        """The version of `key` if its value is element records, else 0; from memory."""

    def create_collection(self, key: bytes, kind: int, expires_at_ms: int = 0,
                          db: int = 0) -> None:
        """Make `key` an empty collection of type `kind` under a new version: one small
        write, whatever the key held (the old elements are never seen again)."""

    def put_element(self, key: bytes, field: bytes | int, value: bytes, db: int = 0) -> None:
        """One element of a collection made by create_collection (ValueError otherwise);
        a list's elements are named by int positions, without a gap."""

    def delete_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        """Remove one element; the key stays, even empty (the caller deletes it)."""

    def get_elements(self, key: bytes, fields: Sequence, db: int = 0) -> list[bytes | None]:
        """get_element() of each of `fields`, in one call."""

    def element_range(self, key: bytes, db: int = 0) -> tuple[int, int]:
        """A list's positions [head, tail): index i is at head + i."""

    def get_element(self, key: bytes, field: bytes | int, db: int = 0) -> bytes | None: ...

    def has_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        """Whether the element exists, without reading its value."""

    def element_count(self, key: bytes, db: int = 0) -> int: ...

    def element_names(self, key: bytes, db: int = 0) -> list[bytes]:
        """The elements' names, in no set order (as a Redis hashtable's)."""

    # -- databases ---------------------------------------------------------------------

    def databases(self) -> int:
        """How many databases were ever written to (the highest number + 1)."""

    def open_databases(self, count: int) -> None:
        """Map databases 0 to count - 1 now: their deadlines objects then stay the same
        until a flush or swap of them."""

    def flush_db(self, db: int) -> None: ...

    def flush_all(self) -> None: ...

    def swap_dbs(self, a: int, b: int) -> None: ...

    # -- batches and durability --------------------------------------------------------

    def write_batch(self, ops: Sequence[tuple], db: int = 0) -> None:
        """Puts `(key, value[, expires_at_ms])` and deletes `(key, None)`, all or nothing
        on disk."""

    def begin_batch(self, size_hint: int = 0) -> None:
        """Every write until end_batch() is one atomic batch (batches nest)."""

    def end_batch(self) -> None: ...

    def discard_batch(self) -> None:
        """Drop the open batch's writes; only close() may follow."""

    def flush(self) -> None:
        """The group-commit barrier: everything so far is written (and fsynced under
        fsync="always") when this returns."""

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def functions(self) -> bytes:
        """The server's function libraries (a FUNCTION DUMP payload), b"" if none."""

    def save_functions(self, payload: bytes) -> None:
        """Replace the function libraries, durably, before returning (b"": none)."""

    def stats(self) -> StoreStats: ...

    # -- compaction --------------------------------------------------------------------

    def begin_compaction(self) -> CompactionJob: ...

    def finish_steps(self, job: CompactionJob, batch: int = 4096
                     ) -> Generator[None, None, CompactionResult]:
        """Apply a completed job a step at a time (the owner serves between steps); the
        generator returns the result."""

    def abort_compaction(self, job: CompactionJob) -> None: ...

    def compact(self) -> CompactionResult:
        """Begin, run and finish a compaction here, blocking."""
