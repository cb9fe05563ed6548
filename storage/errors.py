"""Every exception the store raises, in one place.

One type per kind of failure a caller can act on: the server turns each into
a clear reply or start-up message, and nothing else escapes the store.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of all errors raised by `storage`."""


class CorruptionError(StorageError):
    """A record or file fails its checksum where a torn tail cannot explain it.

    Carries the file and byte offset so that an operator can inspect it; the
    store never serves or silently skips corrupt data.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt data in {path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class LockedError(StorageError):
    """Another process (or another open store in this one) holds the data directory."""

    def __init__(self, path: str, holder_pid: int | None) -> None:
        who = f"PID {holder_pid}" if holder_pid else "another process"
        super().__init__(f"data directory {path} is in use by {who}")
        self.path = path
        self.holder_pid = holder_pid


class IntegrityError(StorageError):
    """The data directory's files are not the ones it recorded (a segment missing, or
    one that is not its own): opening it would lose or resurrect keys silently."""


class FormatError(StorageError):
    """The directory holds data of another engine or an unknown format version."""


class CompactionError(StorageError):
    """A compaction could not begin, run or finish; the store is unchanged by it."""


class ClosedError(StorageError):
    """The store was used after close()."""
