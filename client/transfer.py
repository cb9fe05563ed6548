"""`kvctl export` and `kvctl import`: the whole keyspace to and from a file of Redis commands.

The file is the Redis protocol itself -- each database's SELECT, then per key `SET key
value [PXAT ms]`, or for a collection its HSET/RPUSH/SADD/ZADD and PEXPIREAT in a
MULTI/EXEC -- exactly what `redis-cli --pipe` sends, so it loads into Redis as it is,
and `kvctl import` loads any such file (from kvctl, or written for
`redis-cli --pipe`) into kvd, in the protocol or as inline lines
(`SET greeting "hello world"`), read by the server's own parser. It works
against Redis too: `kvctl --port 6379 export` takes a Redis server's keys.

An import runs data commands only (those that write keys, as Redis flags them,
but no FLUSHALL/FLUSHDB/SWAPDB or other command Redis calls dangerous, and
nothing that blocks), plus RESTORE, SELECT, MULTI/EXEC/DISCARD and PING: a file
from elsewhere must not reconfigure or empty the server. `allow_any` lifts that.

Each batch of keys is read in one MULTI/EXEC (value and deadline together), so
every key is exported as it was at one moment; keys deleted or expired meanwhile
are left out, module values and streams with consumer groups are counted and skipped. A key
the server cannot read (a damaged record) is never skipped silently: it is named in
`Exported.unreadable`, and the caller fails the export unless told otherwise.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

import redis

import server
from server.protocol import ProtocolError, RequestParser, encode_request
from server.rdb import PayloadError, load_libraries
from server.rdb_objects import HASH, LIST, STREAM, STRING, ZSET, Entries, Value, load_payload

from .rdbfile import RdbWriter

BATCH = 1000


@dataclass
class Exported:
    keys: int = 0
    with_ttl: int = 0
    by_db: dict[int, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # what -> keys left out
    unreadable: list[tuple[bytes, str]] = field(default_factory=list)  # (key, the error)
    seconds: float = 0.0


class Key(NamedTuple):
    db: int
    key: bytes
    value: Value
    deadline_ms: int  # 0: none


def keys_of(client: redis.Redis, done: Exported,
            progress: Callable[[int], None] | None = None) -> Iterator[Key]:
    """Every key of every database that holds some, with its value (any type, read by
    DUMP) and deadline; each batch of keys is read in one MULTI/EXEC, so each key is as
    it was at one moment. Keys gone meanwhile are left out; a module value or a stream
    with consumer groups is counted in `done.skipped`, a key the server cannot read in
    `done.unreadable`."""
    for db in _databases(client):
        pool = client.connection_pool
        source = client if db == pool.connection_kwargs.get("db", 0) else redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                 **{**pool.connection_kwargs, "db": db}))
        try:
            keys = source.scan_iter(count=BATCH)
            while batch := list(itertools.islice(keys, BATCH)):
                yield from _read_batch(source, db, batch, done)
                if progress:
                    progress(len(batch))
        finally:
            if source is not client:
                source.close()


def _databases(client: redis.Redis) -> list[int]:
    """The databases holding keys (INFO keyspace), ascending."""
    return sorted(int(name[2:]) for name in client.info("keyspace") if name.startswith("db"))


def _read_batch(client: redis.Redis, db: int, keys: list[bytes], done: Exported
                ) -> Iterator[Key]:
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.execute_command("DUMP", key, NEVER_DECODE=True)
        pipe.execute_command("PEXPIRETIME", key)
    replies = pipe.execute(raise_on_error=False)
    for key, payload, deadline in zip(keys, replies[::2], replies[1::2]):
        if isinstance(payload, redis.ResponseError):  # damaged data, or any failure to read
            done.unreadable.append((key, str(payload)))
            continue
        if payload is None:  # deleted or expired since the SCAN saw it
            continue
        try:
            value = load_payload(payload)
        except PayloadError as exc:  # a Redis module value, a stream with consumer groups
            kind = ("stream with consumer groups" if "consumer groups" in str(exc) else
                    "module value" if "module" in str(exc) else "unreadable value")
            done.skipped[kind] = done.skipped.get(kind, 0) + 1
            continue
        deadline = deadline if isinstance(deadline, int) and deadline > 0 else 0
        done.keys += 1
        done.with_ttl += bool(deadline)
        done.by_db[db] = done.by_db.get(db, 0) + 1
        yield Key(db, key, value, deadline)


def export(client: redis.Redis, out: BinaryIO, progress: Callable[[int], None] | None = None
           ) -> Exported:
    """Write every key of every database (with its deadline) to `out` as the commands
    that make it: SELECT, then SET ... PXAT for a string, and for a collection DEL, its
    HSET/RPUSH/SADD/ZADD (in chunks) and PEXPIREAT inside MULTI/EXEC, so that on import
    each key arrives whole. `progress(n)` after each batch of keys."""
    done = Exported()
    started = time.monotonic()
    db = None
    for item in keys_of(client, done, progress):
        if item.db != db:
            db = item.db
            out.write(encode_request(b"SELECT", b"%d" % db))
        out.write(b"".join(commands_for(item)))
    done.seconds = time.monotonic() - started
    return done


def export_rdb(client: redis.Redis, out: BinaryIO,
               progress: Callable[[int], None] | None = None) -> Exported:
    """Write every key of every database, then the function libraries, to `out` as an RDB
    file (rdbfile.RdbWriter) that redis-server loads at start-up."""
    done = Exported()
    started = time.monotonic()
    writer = RdbWriter(out)
    for item in keys_of(client, done, progress):
        writer.key(item.db, item.key, item.value, item.deadline_ms)
    writer.libraries(load_libraries(client.execute_command("FUNCTION", "DUMP")))
    writer.finish()
    done.seconds = time.monotonic() - started
    return done


def commands_for(item: Key) -> list[bytes]:
    """The encoded commands that recreate one key."""
    key, (kind, data), deadline = item.key, item.value, item.deadline_ms
    if kind == STRING:
        value: bytes = data  # type: ignore[assignment]
        if deadline:
            return [encode_request(b"SET", key, value, b"PXAT", b"%d" % deadline)]
        return [encode_request(b"SET", key, value)]
    if kind == STREAM:
        return _stream_commands(key, data, deadline)  # type: ignore[arg-type]
    items: list = data  # type: ignore[assignment]
    if kind == HASH:
        name, words = b"HSET", [part for pair in items for part in pair]
        step = 2 * CHUNK
    elif kind == ZSET:
        name = b"ZADD"
        words = [part for member, score in items for part in (b"%.17g" % score, member)]
        step = 2 * CHUNK
    else:
        name, words, step = (b"RPUSH" if kind == LIST else b"SADD"), items, CHUNK
    return _whole(key, [encode_request(name, key, *words[i:i + step])
                        for i in range(0, len(words), step)], deadline)


def _whole(key: bytes, writes: list[bytes], deadline: int) -> list[bytes]:
    """The commands that build a collection, in a MULTI/EXEC that first deletes the key
    and ends by giving it its deadline: on import it arrives whole."""
    commands = [encode_request(b"MULTI"), encode_request(b"DEL", key), *writes]
    if deadline:
        commands.append(encode_request(b"PEXPIREAT", key, b"%d" % deadline))
    commands.append(encode_request(b"EXEC"))
    return commands


def _stream_commands(key: bytes, stream: Entries, deadline: int) -> list[bytes]:
    """A stream: an XADD per entry with its ID; a last ID beyond the last entry (entries
    deleted at the end) is set by adding and deleting it, which kvd and Redis both take
    (XSETID is Redis's only); an empty stream by an XADD trimmed to nothing."""
    writes = [encode_request(b"XADD", key, b"%d-%d" % entry_id, *pairs)
              for entry_id, pairs in stream.entries]
    last_entry = stream.entries[-1][0] if stream.entries else (0, 0)
    if stream.last > last_entry:
        last = b"%d-%d" % stream.last
        if stream.entries:
            writes += [encode_request(b"XADD", key, last, b"-", b"-"),
                       encode_request(b"XDEL", key, last)]
        else:
            writes.append(encode_request(b"XADD", key, b"MAXLEN", b"0", last, b"-", b"-"))
    return _whole(key, writes, deadline)


CHUNK = 1000  # elements per HSET/RPUSH/SADD/ZADD of a large collection


@dataclass
class Imported:
    commands: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


class MalformedFile(ValueError):
    """The file is not a sequence of Redis commands."""


class NotData(ValueError):
    """The file holds a command an import does not run (see the module's docstring)."""


ALSO_ALLOWED = frozenset({"restore", "select", "multi", "exec", "discard", "ping"})


@functools.cache
def data_commands() -> frozenset[bytes]:
    """The upper-case names of the commands an import runs, from Redis 7.0's own table."""
    table = json.loads((Path(server.__file__).parent / "commands" /
                        "redis_commands.json").read_text())["commands"]
    names = set(ALSO_ALLOWED)
    for name, described in table.items():
        info = described["info"][1]  # [name, arity, flags, first, last, step, categories...]
        flags = {flag for _, flag in info[2][1]}
        categories = {category for _, category in info[6][1]}
        if ("write" in flags and not flags & {"admin", "blocking"}
                and "@dangerous" not in categories):
            names.add(name)
    return frozenset(name.upper().encode() for name in names)


def commands_in(source: BinaryIO, progress: Callable[[int], None] | None = None
                ) -> Iterator[list[bytes]]:
    """The commands a file holds, in the protocol or as inline lines, read in chunks (any
    size of file) by the parser the server reads its clients with."""
    parser = RequestParser(1 << 31, 1 << 31)
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            break
        if progress:
            progress(len(chunk))
        try:
            requests = parser.feed(chunk)
        except ProtocolError as exc:
            yield from exc.requests
            raise MalformedFile(f"not Redis commands: {exc}") from None
        yield from requests
    if parser.pending:
        raise MalformedFile("the file ends in the middle of a command")


def load(client: redis.Redis, source: BinaryIO, progress: Callable[[int], None] | None = None,
         allow_any: bool = False) -> Imported:
    """Send every command of `source` (pipelined, in batches) and count the refusals.

    Unless `allow_any`, a command that is not a data command stops the import before it
    is sent (raising NotData; `done.commands` were sent before it)."""
    done = Imported()
    started = time.monotonic()
    allowed = None if allow_any else data_commands()
    pipe = client.pipeline(transaction=False)
    for command in commands_in(source, progress):
        if allowed is not None and command[0].upper() not in allowed:
            if len(pipe):
                _send(pipe, done)
            name = command[0].decode(errors="replace")
            raise NotData(f"command {done.commands + 1} is {name}, which is not a data "
                          f"command; the {done.commands} before it were sent. `kvctl import "
                          "--allow-any` runs any command")
        pipe.execute_command(*command, NEVER_DECODE=True)
        if len(pipe) == BATCH:
            _send(pipe, done)
    if len(pipe):
        _send(pipe, done)
    done.seconds = time.monotonic() - started
    return done


def _send(pipe, done: Imported) -> None:
    for reply in pipe.execute(raise_on_error=False):
        done.commands += 1
        if isinstance(reply, redis.ResponseError):
            done.errors += 1
            if len(done.first_errors) < 5:
                done.first_errors.append(str(reply))
