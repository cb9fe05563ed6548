"""The string commands (Redis's t_string.c): GET, SET and friends, counters, MSET."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import parse_strict_int
from ..resp import OK, bulk, error, integer
from .common import INT64_MAX, INT64_MIN, NOT_INTEGER, SYNTAX, wrong_arity

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

OVERFLOW = error("ERR increment or decrement would overflow")
NO_EXPIRY = error(
    "ERR kvd does not support key expiry (EX, PX, EXAT, PXAT, EXPIRE...); nothing was written"
)


def get(ctx: Context, conn: Connection, args: list) -> bytes:
    value = ctx.keyspace.read(args[1])
    return conn.resp.null if value is None else bulk(value)


def set_(ctx: Context, conn: Connection, args: list) -> bytes:
    key, value = args[1], args[2]
    keyspace = ctx.keyspace
    if len(args) == 3:  # the plain SET every benchmark sends
        keyspace.put(key, value)
        return OK
    nx = xx = get = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"NX" and not xx:
            nx = True
        elif option == b"XX" and not nx:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL":
            pass  # no key has a TTL, so keeping it is what already happens
        elif option in (b"EX", b"PX", b"EXAT", b"PXAT") and i + 1 < len(args):
            return NO_EXPIRY
        else:
            return SYNTAX
        i += 1
    keyspace.check_sizes(key, value)
    old = keyspace.read(key) if get else None
    exists = old is not None if get else (key in keyspace)
    if (nx and exists) or (xx and not exists):
        return conn.resp.bulk_or_null(old) if get else conn.resp.null
    keyspace.put(key, value)
    return conn.resp.bulk_or_null(old) if get else OK


def getset(ctx: Context, conn: Connection, args: list) -> bytes:
    ctx.keyspace.check_sizes(args[1], args[2])
    old = ctx.keyspace.read(args[1])
    ctx.keyspace.put(args[1], args[2])
    return conn.resp.bulk_or_null(old)


def getdel(ctx: Context, conn: Connection, args: list) -> bytes:
    old = ctx.keyspace.read(args[1])
    if old is not None:
        ctx.keyspace.delete(args[1])
    return conn.resp.bulk_or_null(old)


def mget(ctx: Context, conn: Connection, args: list) -> bytes:
    return conn.resp.bulks(ctx.keyspace.read_many(args[1:]))


def mset(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) % 2 == 0:
        return wrong_arity(args[0])
    ctx.keyspace.write_batch(list(zip(args[1::2], args[2::2])))
    return OK


def append(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    value = (ctx.keyspace.peek(key) or b"") + args[2]
    ctx.keyspace.put(key, value)
    return integer(len(value))


def strlen(ctx: Context, conn: Connection, args: list) -> bytes:
    value = ctx.keyspace.read(args[1])
    return integer(0 if value is None else len(value))


def _add(ctx: Context, key: bytes, delta: int) -> bytes:
    old = ctx.keyspace.peek(key)
    current = 0 if old is None else parse_strict_int(old)
    if current is None:
        return NOT_INTEGER
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        return OVERFLOW
    ctx.keyspace.put(key, b"%d" % result)
    return integer(result)


def incr(ctx: Context, conn: Connection, args: list) -> bytes:
    return _add(ctx, args[1], 1)


def decr(ctx: Context, conn: Connection, args: list) -> bytes:
    return _add(ctx, args[1], -1)


def incrby(ctx: Context, conn: Connection, args: list) -> bytes:
    delta = parse_strict_int(args[2])
    return NOT_INTEGER if delta is None else _add(ctx, args[1], delta)


def decrby(ctx: Context, conn: Connection, args: list) -> bytes:
    delta = parse_strict_int(args[2])
    if delta is None:
        return NOT_INTEGER
    if delta == INT64_MIN:
        return error("ERR decrement would overflow")
    return _add(ctx, args[1], -delta)


# name, handler, arity, writes
COMMANDS = [
    ("get", get, 2, False),
    ("set", set_, -3, True),
    ("getset", getset, 3, True),
    ("getdel", getdel, 2, True),
    ("mget", mget, -2, False),
    ("mset", mset, -3, True),
    ("append", append, 3, True),
    ("strlen", strlen, 2, False),
    ("incr", incr, 2, True),
    ("decr", decr, 2, True),
    ("incrby", incrby, 3, True),
    ("decrby", decrby, 3, True),
]
