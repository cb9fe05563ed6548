"""The generic keyspace commands (Redis's db.c and expire.c): DEL, EXISTS, KEYS, SCAN,
TYPE, TTL, FLUSHALL..."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..glob import compile_glob
from ..protocol import parse_strict_int
from ..resp import OK, array, bulk, error, integer, status
from .common import NOT_INTEGER, SYNTAX
from .strings import NO_EXPIRY

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

STRING, NONE = status("string"), status("none")


def del_(ctx: Context, conn: Connection, args: list) -> bytes:
    delete = ctx.keyspace.delete
    return integer(sum(1 for key in args[1:] if delete(key)))


def exists(ctx: Context, conn: Connection, args: list) -> bytes:
    found = ctx.keyspace.exists
    return integer(sum(1 for key in args[1:] if found(key)))


def keys(ctx: Context, conn: Connection, args: list) -> bytes:
    pattern = args[1]
    found = ctx.keyspace.keys()
    if pattern != b"*":  # Redis's shortcut: "*" is every key, even the empty one
        match = compile_glob(pattern)
        found = (k for k in found if match(k))
    return conn.resp.bulks(list(found))


def scan(ctx: Context, conn: Connection, args: list) -> bytes:
    cursor = parse_strict_int(args[1])
    if cursor is None or cursor < 0:
        return error("ERR invalid cursor")
    count, match = 10, None
    i = 2
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            return SYNTAX
        if option == b"COUNT":
            count = parse_strict_int(args[i + 1])
            if count is None:
                return NOT_INTEGER
            if count < 1:
                return SYNTAX
        elif option == b"MATCH":
            match = None if args[i + 1] == b"*" else compile_glob(args[i + 1])
        elif option == b"TYPE":
            if args[i + 1].lower() != b"string":
                match = _match_nothing
        else:
            return SYNTAX
        i += 2
    step = ctx.keyspace.scan(cursor, count, match)
    if step is None:
        return error("ERR invalid cursor (unknown or expired; start again from 0)")
    next_cursor, found = step
    return array([bulk(b"%d" % next_cursor), conn.resp.bulks(found)])


def _match_nothing(key: bytes) -> bool:
    return False


def dbsize(ctx: Context, conn: Connection, args: list) -> bytes:
    return integer(len(ctx.keyspace))


def type_(ctx: Context, conn: Connection, args: list) -> bytes:
    return STRING if ctx.keyspace.exists(args[1]) else NONE


def ttl(ctx: Context, conn: Connection, args: list) -> bytes:
    return integer(-1 if ctx.keyspace.exists(args[1]) else -2)  # -1: exists without expiry


def expire(ctx: Context, conn: Connection, args: list) -> bytes:
    return NO_EXPIRY


def flushall(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return SYNTAX
    ctx.keyspace.flush_all()
    return OK


# name, handler, arity, writes
COMMANDS = [
    ("del", del_, -2, True),
    ("unlink", del_, -2, True),
    ("exists", exists, -2, False),
    ("keys", keys, 2, False),
    ("scan", scan, -2, False),
    ("dbsize", dbsize, 1, False),
    ("type", type_, 2, False),
    ("ttl", ttl, 2, False),
    ("pttl", ttl, 2, False),
    ("expire", expire, -3, False),
    ("pexpire", expire, -3, False),
    ("flushdb", flushall, -1, True),
    ("flushall", flushall, -1, True),
]
