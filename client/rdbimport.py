"""`kvctl import dump.rdb`: a Redis RDB file's keys into the server, every type kvd has,
each database to its number, TTLs kept -- as one RESTORE per key (ABSTTL, REPLACE), so
each key arrives whole or not at all -- and its function libraries with FUNCTION
RESTORE. Keys already expired are left out, as Redis leaves them out when it loads the
file; module values and streams with consumer groups are counted and left out (kvd has
neither yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from server.rdb import dump_libraries
from server.rdb_objects import STRING, dump_payload

from .rdbfile import Entry, Library, read_rdb

BATCH = 500


@dataclass
class RdbImported:
    keys: int = 0
    by_db: dict[int, int] = field(default_factory=dict)
    expired: int = 0  # already past their deadline: left out
    empty: int = 0  # empty collections (Redis leaves them out too)
    skipped: dict[str, int] = field(default_factory=dict)  # what was left out -> count
    libraries: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_rdb(client: redis.Redis, path: str,
             progress: Callable[[int], None] | None = None) -> RdbImported:
    """Import the RDB file at `path`; RdbError, before anything is sent, for a file that
    is not one, whose checksum is wrong or that cannot be read to its end (it is read
    through once before the import); `progress(bytes)` as the file is imported."""
    done = RdbImported()
    started = time.monotonic()
    for _ in read_rdb(path):  # the whole file read once first: a damaged one sends nothing
        pass
    pipe = client.pipeline(transaction=False)
    batch_db: int | None = None
    libraries: list[bytes] = []
    sent: list[Entry] = []
    now = time.time() * 1000
    read = 0
    for item in read_rdb(path):
        if progress and item.end - read >= 1 << 20:
            progress(item.end - read)
            read = item.end
        if isinstance(item, Library):
            libraries.append(item.code)
            continue
        if item.value is None:
            done.skipped[item.skipped] = done.skipped.get(item.skipped, 0) + 1
            continue
        if item.deadline_ms and item.deadline_ms <= now:
            done.expired += 1
            continue
        if item.value.kind != STRING and not item.value.data:
            done.empty += 1
            continue
        if batch_db != item.db or len(sent) >= BATCH:
            _send(pipe, sent, done)
            pipe.execute_command("SELECT", item.db)  # (each batch on its own connection)
            batch_db = item.db
        payload = b"".join(dump_payload(item.value))
        pipe.execute_command("RESTORE", item.key, item.deadline_ms, payload, "REPLACE",
                             *(["ABSTTL"] if item.deadline_ms else []))
        sent.append(item)
    _send(pipe, sent, done)
    if libraries:
        try:
            client.execute_command("FUNCTION", "RESTORE", dump_libraries(libraries), "REPLACE")
            done.libraries = len(libraries)
        except redis.ResponseError as refused:
            _error(done, f"function libraries: {refused}")
    done.seconds = time.monotonic() - started
    return done


def _send(pipe, sent: list[Entry], done: RdbImported) -> None:
    if not len(pipe):
        return
    replies = pipe.execute(raise_on_error=False)
    for entry, reply in zip(sent, replies[1:]):  # (the first answers the SELECT)
        if isinstance(reply, redis.ResponseError):
            _error(done, f"db {entry.db} key {entry.key!r}: {reply}")
        else:
            done.keys += 1
            done.by_db[entry.db] = done.by_db.get(entry.db, 0) + 1
    sent.clear()


def _error(done: RdbImported, text: str) -> None:
    done.errors += 1
    if len(done.first_errors) < 5:
        done.first_errors.append(text)
