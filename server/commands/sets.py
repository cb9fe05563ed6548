"""The set commands (Redis's t_set.c): SADD SREM SCARD SISMEMBER SMISMEMBER SMEMBERS
SRANDMEMBER SPOP SMOVE SINTER SINTERCARD SINTERSTORE SUNION SUNIONSTORE SDIFF SDIFFSTORE
SSCAN.

A set is stored as a hash whose fields are its members and whose values are empty
(hashes.py's two forms): packed whole while it has at most `set-max-intset-entries`
members and 32 KiB, then split into one element record per member, for good. A packed
set of integers only is what Redis 7.0 keeps in an intset (OBJECT ENCODING says intset,
and its members list in numeric order, as Redis lists an intset's); any other is a
hashtable. A set left empty is deleted.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..keyspace import SET
from ..protocol import parse_strict_int
from ..resp import ONE, ZERO, array, bulk, error, integer
from .common import (
    SYNTAX,
    parse_limit,
    parse_random_count,
    random_picks,
)
from .hashes import (
    INVALID_CURSOR,
    Hash,
    _for_write,
    parse_cursor,
    read,
    replace,
    scan_step,
    write,
)
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context
    from ..keyspace import Keyspace

NOT_POSITIVE = error("ERR value is out of range, must be positive")


def members(found: Hash | None) -> list[bytes]:
    """A set's members in the order Redis lists them: an intset's in numeric order."""
    if found is None:
        return []
    names = list(found.fields)
    if not found.converted:
        names.sort(key=int)
    return names


def read_set(keyspace: Keyspace, key: bytes, counted: bool = True) -> Hash | None:
    return read(keyspace, key, counted, kind=SET)


def store_set(ctx: Context, key: bytes, result: list[bytes], event: bytes) -> None:
    """`key` becomes a new set of `result` (whatever it held, and without a deadline), or
    is deleted if `result` is empty: one batch."""
    replace(ctx, key, Hash(dict.fromkeys(result, b"")), SET, event)


# -- the commands -----------------------------------------------------------------------

def sadd(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    found = _for_write(ctx, key, SET)
    fields = found.fields
    added = 0
    for member in args[2:]:
        ctx.keyspace.check_sizes(key, member)
        if member not in fields:
            fields[member] = b""
            added += 1
    if added:
        write(ctx, key, found, SET, b"sadd")
    return integer(added)


def srem(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    if read_set(ctx.keyspace, key, counted=False) is None:
        return ZERO
    found = _for_write(ctx, key, SET)
    removed = 0
    for member in args[2:]:
        if member in found.fields:
            del found.fields[member]
            removed += 1
    if removed:
        write(ctx, key, found, SET, b"srem")
    return integer(removed)


def scard(ctx: Context, conn: Connection, args: list) -> bytes:
    found = read_set(ctx.keyspace, args[1])
    return integer(0 if found is None else len(found.fields))


def sismember(ctx: Context, conn: Connection, args: list) -> bytes:
    found = read_set(ctx.keyspace, args[1])
    return ONE if found is not None and args[2] in found.fields else ZERO


def smismember(ctx: Context, conn: Connection, args: list) -> bytes:
    found = read_set(ctx.keyspace, args[1])
    fields = found.fields if found is not None else {}
    return array([ONE if member in fields else ZERO for member in args[2:]])


def smembers(ctx: Context, conn: Connection, args: list) -> bytes:
    return conn.resp.set_of([bulk(m) for m in members(read_set(ctx.keyspace, args[1]))])


def srandmember(ctx: Context, conn: Connection, args: list) -> bytes:
    """SRANDMEMBER key [count]: a positive count, distinct members (all if there are no
    more); a negative one, that many picks that may repeat."""
    if len(args) > 3:
        return SYNTAX
    if len(args) == 2:
        found = read_set(ctx.keyspace, args[1])
        if found is None:
            return conn.resp.null
        return bulk(random.choice(list(found.fields)))
    parsed = parse_random_count(args, None)
    if isinstance(parsed, bytes):
        return parsed
    count = parsed[0]
    found = read_set(ctx.keyspace, args[1])
    if found is None or count == 0:
        return array([])
    # (all of them, when asked for as many: in Redis's order)
    return conn.resp.bulks(random_picks(members(found), count))


def spop(ctx: Context, conn: Connection, args: list) -> bytes:
    """SPOP key [count]: members removed at random (a set reply with a count)."""
    if len(args) > 3:
        return SYNTAX
    count = None
    if len(args) == 3:
        count = parse_strict_int(args[2])
        if count is None or count < 0:
            return NOT_POSITIVE
    key = args[1]
    found = read_set(ctx.keyspace, key, counted=False)
    if found is None:
        return conn.resp.null if count is None else conn.resp.set_of([])
    if count == 0:
        return conn.resp.set_of([])
    found = _for_write(ctx, key, SET)
    names = members(found)
    chosen = names if (count or 1) >= len(names) else random.sample(names, count or 1)
    for member in chosen:
        del found.fields[member]
    write(ctx, key, found, SET, b"spop")
    if count is None:
        return bulk(chosen[0])
    return conn.resp.set_of([bulk(m) for m in chosen])


def smove(ctx: Context, conn: Connection, args: list) -> bytes:
    source, destination, member = args[1], args[2], args[3]
    keyspace = ctx.keyspace
    origin = read_set(keyspace, source, counted=False)
    if origin is None:  # (before the destination's type is looked at, as Redis)
        return ZERO
    target = read_set(keyspace, destination, counted=False)  # (WRONGTYPE before anything)
    if source == destination:
        return ONE if member in origin.fields else ZERO
    if member not in origin.fields:
        return ZERO
    keyspace.begin_batch()
    try:
        changed = _for_write(ctx, source, SET)
        del changed.fields[member]
        write(ctx, source, changed, SET, b"srem")
        if target is None or member not in target.fields:
            receiving = _for_write(ctx, destination, SET)
            receiving.fields[member] = b""
            write(ctx, destination, receiving, SET, b"sadd")
    finally:
        keyspace.end_batch()
    return ONE


def _combined(ctx: Context, keys: list[bytes], how: str, limit: int = 0) -> list[bytes]:
    """SINTER's, SUNION's or SDIFF's members of `keys` (WRONGTYPE for any other type);
    SINTER stops at `limit` members if it is not 0."""
    keyspace = ctx.keyspace
    sets = [read_set(keyspace, key) for key in keys]
    if how == "inter":
        if any(found is None for found in sets):
            return []
        ordered = sorted(sets, key=lambda found: len(found.fields))  # type: ignore
        result = []
        for member in members(ordered[0]):
            if all(member in other.fields for other in ordered[1:]):  # type: ignore
                result.append(member)
                if limit and len(result) >= limit:
                    break
        return result
    if how == "union":
        seen: dict[bytes, None] = {}
        for found in sets:
            seen.update(dict.fromkeys(members(found)))
        return list(seen)
    first, rest = sets[0], [found for found in sets[1:] if found is not None]
    return [m for m in members(first) if not any(m in other.fields for other in rest)]


def combine(ctx: Context, conn: Connection, args: list) -> bytes:
    """SINTER, SUNION, SDIFF key [key ...] (a set reply)."""
    how = args[0].lower().decode()[1:]
    return conn.resp.set_of([bulk(m) for m in _combined(ctx, args[1:], how)])


def combine_store(ctx: Context, conn: Connection, args: list) -> bytes:
    """SINTERSTORE, SUNIONSTORE, SDIFFSTORE destination key [key ...]: the size of the
    result, stored (or the destination deleted if it is empty)."""
    how = args[0].lower().decode()[1:-5]
    result = _combined(ctx, args[2:], how)
    store_set(ctx, args[1], result, args[0].lower())
    return integer(len(result))


def sintercard(ctx: Context, conn: Connection, args: list) -> bytes:
    """SINTERCARD numkeys key [key ...] [LIMIT limit]."""
    numkeys = parse_strict_int(args[1])
    if numkeys is None or numkeys < 1:
        return error("ERR numkeys should be greater than 0")
    if numkeys > len(args) - 2:
        return error("ERR Number of keys can't be greater than number of args")
    limit = parse_limit(args, 2 + numkeys)
    if isinstance(limit, bytes):
        return limit
    return integer(len(_combined(ctx, args[2:2 + numkeys], "inter", limit)))


def sscan(ctx: Context, conn: Connection, args: list) -> bytes:
    """SSCAN key cursor [MATCH pattern] [COUNT count]: a packed set answers whole with
    cursor 0 (as Redis for an intset); a split one a step at a time."""
    cursor = parse_cursor(args[2])
    if cursor is None:
        return INVALID_CURSOR
    found = read_set(ctx.keyspace, args[1])
    if found is None:
        return array([bulk(b"0"), array([])])
    step = scan_step(ctx, args, cursor, found.fields, lambda: members(found))
    if isinstance(step, bytes):
        return step
    return array([bulk(b"%d" % step[0]), conn.resp.bulks(step[1])])


COMMANDS = [
    row("sadd", sadd),
    row("srem", srem),
    row("scard", scard),
    row("sismember", sismember),
    row("smismember", smismember),
    row("smembers", smembers),
    row("srandmember", srandmember),
    row("spop", spop),
    row("smove", smove),
    row("sinter", combine),
    row("sunion", combine),
    row("sdiff", combine),
    row("sinterstore", combine_store),
    row("sunionstore", combine_store),
    row("sdiffstore", combine_store),
    row("sintercard", sintercard),
    row("sscan", sscan),
]
