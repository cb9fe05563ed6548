"""`kvctl export` and `kvctl import`: the whole keyspace to and from a file of Redis commands.

The file is the Redis protocol itself, one `SET key value [PXAT ms]` per key
-- exactly what `redis-cli --pipe` sends -- so it loads into Redis as it is,
and `kvctl import` loads any such file (from kvctl, or written for
`redis-cli --pipe`) into kvd. It works against Redis too: `kvctl --port 6379
export` takes a Redis server's strings.

Each batch of keys is read in one MULTI/EXEC (value and deadline together), so
every key is exported as it was at one moment; keys deleted or expired meanwhile
are left out, keys that are not strings (from Redis) are counted and skipped. A key
the server cannot read (a damaged record) is never skipped silently: it is named in
`Exported.unreadable`, and the caller fails the export unless told otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import hiredis
import redis

from server.protocol import encode_request

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


def commands_in(source: BinaryIO, progress: Callable[[int], None] | None = None
                ) -> Iterator[list[bytes]]:
    """The commands a protocol file holds, read in chunks (any size of file)."""
    reader = hiredis.Reader()
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            break
        reader.feed(chunk)
        if progress:
            progress(len(chunk))
        while True:
            try:
                command = reader.gets()
            except hiredis.ProtocolError as exc:
                raise MalformedFile(f"not Redis protocol: {exc}") from None
            if command is False:
                break
            if not isinstance(command, list) or not command or \
                    not all(isinstance(arg, bytes) for arg in command):
                raise MalformedFile("not a file of Redis commands (each must be an array of "
                                    "bulk strings)")
            yield command
    if reader.has_data():
        raise MalformedFile("the file ends in the middle of a command")


def load(client: redis.Redis, source: BinaryIO, progress: Callable[[int], None] | None = None
         ) -> Imported:
    """Send every command of `source` (pipelined, in batches) and count the refusals."""
    done = Imported()
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    for command in commands_in(source, progress):
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
