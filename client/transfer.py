"""`kvctl export` and `kvctl import`: the whole keyspace to and from a file of Redis commands.

The file is the Redis protocol itself, one `SET key value [PXAT ms]` per key
-- exactly what `redis-cli --pipe` sends -- so it loads into Redis as it is,
and `kvctl import` loads any such file (from kvctl, or written for
`redis-cli --pipe`) into kvd, in the protocol or as inline lines
(`SET greeting "hello world"`), read by the server's own parser. It works
against Redis too: `kvctl --port 6379 export` takes a Redis server's strings.

An import runs data commands only (those that write keys, as Redis flags them,
but no FLUSHALL/FLUSHDB/SWAPDB or other command Redis calls dangerous, and
nothing that blocks), plus RESTORE, SELECT, MULTI/EXEC/DISCARD and PING: a file
from elsewhere must not reconfigure or empty the server. `allow_any` lifts that.

Each batch of keys is read in one MULTI/EXEC (value and deadline together), so
every key is exported as it was at one moment; keys deleted or expired meanwhile
are left out, keys that are not strings (from Redis) are counted and skipped. A key
the server cannot read (a damaged record) is never skipped silently: it is named in
`Exported.unreadable`, and the caller fails the export unless told otherwise.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import redis

import server
from server.protocol import ProtocolError, RequestParser, encode_request

BATCH = 1000


@dataclass
class Exported:
    keys: int = 0
    with_ttl: int = 0
    skipped: int = 0  # not strings
    unreadable: list[tuple[bytes, str]] = field(default_factory=list)  # (key, the error)
    seconds: float = 0.0


def export(client: redis.Redis, out: BinaryIO, progress: Callable[[int], None] | None = None
           ) -> Exported:
    """Write every string key (with its deadline) to `out`; `progress(n)` after each batch."""
    done = Exported()
    started = time.monotonic()
    batch: list[bytes] = []
    for key in client.scan_iter(count=BATCH):
        batch.append(key)
        if len(batch) == BATCH:
            _export_batch(client, batch, out, done)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        _export_batch(client, batch, out, done)
        if progress:
            progress(len(batch))
    done.seconds = time.monotonic() - started
    return done


def _export_batch(client: redis.Redis, keys: list[bytes], out: BinaryIO, done: Exported) -> None:
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.execute_command("GET", key, NEVER_DECODE=True)
        pipe.execute_command("PEXPIRETIME", key)
    replies = pipe.execute(raise_on_error=False)
    lines = []
    for key, value, deadline in zip(keys, replies[::2], replies[1::2]):
        if isinstance(value, redis.ResponseError):
            if str(value).startswith("WRONGTYPE"):  # a Redis list, hash...
                done.skipped += 1
            else:  # damaged data, or any other failure to read it
                done.unreadable.append((key, str(value)))
            continue
        if value is None:  # deleted or expired since the SCAN saw it
            continue
        if isinstance(deadline, int) and deadline > 0:
            lines.append(encode_request(b"SET", key, value, b"PXAT", b"%d" % deadline))
            done.with_ttl += 1
        else:
            lines.append(encode_request(b"SET", key, value))
        done.keys += 1
    out.write(b"".join(lines))


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
