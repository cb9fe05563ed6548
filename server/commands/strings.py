"""The string commands (Redis's t_string.c): GET, SET and friends, counters, MSET."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import longdouble, notify
from ..keyspace import STRING, now_ms
from ..lcs import LcsTable
from ..protocol import parse_strict_int
from ..resp import OK, ONE, ZERO, array, bulk, error, integer
from .common import (
    INT64_MAX,
    INT64_MIN,
    NOT_FLOAT,
    NOT_INTEGER,
    SYNTAX,
    c_string,
    invalid_expire,
    keyword,
    wrong_arity,
)
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

OVERFLOW = error("ERR increment or decrement would overflow")
TOO_LONG = error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
EMPTY = bulk(b"")

# SET's and GETEX's options (Redis's parseExtendedStringArgumentsOrReply): which each
# excludes, and which command may take it.
_EXPIRY_UNITS = {b"EX": (1000, True), b"PX": (1, True), b"EXAT": (1000, False),
                 b"PXAT": (1, False)}  # ms per unit, relative to now
_EXCLUDES = {
    b"NX": {b"XX"}, b"XX": {b"NX"}, b"GET": set(),
    b"KEEPTTL": {b"PERSIST", b"EX", b"EXAT", b"PX", b"PXAT"},
    b"PERSIST": {b"EX", b"EXAT", b"PX", b"PXAT", b"KEEPTTL"},
    **{unit: {b"KEEPTTL", b"PERSIST", b"EX", b"EXAT", b"PX", b"PXAT"} - {unit}
       for unit in _EXPIRY_UNITS},
}
_SET_ONLY, _GET_ONLY = {b"NX", b"XX", b"GET", b"KEEPTTL"}, {b"PERSIST"}


class _Options:
    __slots__ = ("flags", "expire", "unit")

    def __init__(self) -> None:
        self.flags: set[bytes] = set()
        self.expire: bytes | None = None
        self.unit = b""


def parse_options(args: list, first: int, for_set: bool) -> _Options | bytes:
    """The options from args[first:], or Redis's syntax error reply."""
    options = _Options()
    j = first
    while j < len(args):
        opt = c_string(args[j]).upper()  # Redis reads each as a C string
        has_next = j + 1 < len(args)
        if (opt not in _EXCLUDES or _EXCLUDES[opt] & options.flags
                or opt in (_GET_ONLY if for_set else _SET_ONLY)
                or (opt in _EXPIRY_UNITS and not has_next)):
            return SYNTAX
        options.flags.add(opt)
        if opt in _EXPIRY_UNITS:
            options.unit, options.expire = opt, args[j + 1]
            j += 1
        j += 1
    return options


def deadline_of(options: _Options, command: str) -> int | bytes:
    """The absolute deadline (Unix ms) the options give, or Redis's error reply
    (getExpireMillisecondsOrReply)."""
    amount = parse_strict_int(options.expire or b"")
    if amount is None:
        return NOT_INTEGER
    per_unit, relative = _EXPIRY_UNITS[options.unit]
    if amount <= 0 or (per_unit == 1000 and amount > INT64_MAX // 1000):
        return invalid_expire(command)
    amount *= per_unit
    if relative:
        amount += now_ms()
        if amount > INT64_MAX:  # C's overflow, which Redis sees as a non-positive result
            return invalid_expire(command)
    return amount


def get(ctx: Context, conn: Connection, args: list) -> bytes:
    value = ctx.keyspace.read(args[1])
    return conn.resp.null if value is None else bulk(value)


def set_(ctx: Context, conn: Connection, args: list) -> bytes:
    key, value = args[1], args[2]
    keyspace = ctx.keyspace
    if len(args) == 3:  # the plain SET every benchmark sends
        keyspace.put(key, value)
        if keyspace.events.flags:
            keyspace.notify(notify.STRING, b"set", key)
        return OK
    options = parse_options(args, 3, for_set=True)
    if isinstance(options, bytes):
        return options
    return _set(ctx, conn, key, value, options, "set")


def _set(ctx: Context, conn: Connection, key: bytes, value: bytes, options: _Options,
         command: str) -> bytes:
    """setGenericCommand: SET with options, SETEX, PSETEX."""
    keyspace, flags = ctx.keyspace, options.flags
    deadline = 0
    if options.expire is not None:
        given = deadline_of(options, command)
        if isinstance(given, bytes):
            return given
        deadline = given
    keyspace.check_sizes(key, value)
    get = b"GET" in flags
    old = keyspace.read(key) if get else None
    if b"NX" in flags or b"XX" in flags:
        exists = old is not None if get else (key in keyspace)
        if (b"NX" in flags) == exists:
            return conn.resp.bulk_or_null(old) if get else conn.resp.null
    if b"KEEPTTL" in flags:
        deadline = keyspace.deadline(key)
    keyspace.put(key, value, deadline)
    keyspace.notify(notify.STRING, b"set", key)
    if options.expire is not None:
        keyspace.notify(notify.GENERIC, b"expire", key)
    return conn.resp.bulk_or_null(old) if get else OK


def setex(ctx: Context, conn: Connection, args: list) -> bytes:
    options = _Options()
    options.unit, options.expire = (b"EX" if args[0].upper() == b"SETEX" else b"PX"), args[2]
    return _set(ctx, conn, args[1], args[3], options, args[0].decode(errors="replace").lower())


def getex(ctx: Context, conn: Connection, args: list) -> bytes:
    """GETEX key [EX|PX|EXAT|PXAT time | PERSIST]: GET that sets or removes the TTL."""
    options = parse_options(args, 2, for_set=False)
    if isinstance(options, bytes):
        return options
    keyspace, key = ctx.keyspace, args[1]
    value = keyspace.read(key)
    if value is None:
        return conn.resp.null
    if options.expire is not None:
        deadline = deadline_of(options, "getex")
        if isinstance(deadline, bytes):
            return deadline
        keyspace.set_deadline(key, deadline)
    elif b"PERSIST" in options.flags and keyspace.deadline(key):
        keyspace.set_deadline(key, 0)
    return bulk(value)


def setnx(ctx: Context, conn: Connection, args: list) -> bytes:
    """SET ... NX answering 1 or 0 (older lock recipes, redis-py's setnx)."""
    keyspace = ctx.keyspace
    keyspace.check_sizes(args[1], args[2])
    if args[1] in keyspace:  # a lookup to write: no hit or miss counted, as Redis
        return ZERO
    keyspace.put(args[1], args[2])
    keyspace.notify(notify.STRING, b"set", args[1])
    return ONE


def getset(ctx: Context, conn: Connection, args: list) -> bytes:
    ctx.keyspace.check_sizes(args[1], args[2])
    old = ctx.keyspace.read(args[1])
    ctx.keyspace.put(args[1], args[2])
    ctx.keyspace.notify(notify.STRING, b"set", args[1])
    return conn.resp.bulk_or_null(old)


def getdel(ctx: Context, conn: Connection, args: list) -> bytes:
    old = ctx.keyspace.read(args[1])
    if old is not None:
        ctx.keyspace.remove(args[1])
    return conn.resp.bulk_or_null(old)


def mget(ctx: Context, conn: Connection, args: list) -> bytes:
    return conn.resp.bulks(ctx.keyspace.read_many(args[1:], others_as_none=True))


def mset(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) % 2 == 0:
        return wrong_arity(args[0])
    ctx.keyspace.write_batch(list(zip(args[1::2], args[2::2])))
    _tell_set(ctx, args[1::2])
    return OK


def msetnx(ctx: Context, conn: Connection, args: list) -> bytes:
    """All or none: 0 if any key exists, else every pair is written as one batch."""
    if len(args) % 2 == 0:
        return wrong_arity(args[0])
    keyspace = ctx.keyspace
    if any(key in keyspace for key in args[1::2]):
        return ZERO
    keyspace.write_batch(list(zip(args[1::2], args[2::2])))
    _tell_set(ctx, args[1::2])
    return ONE


def _tell_set(ctx: Context, keys: list) -> None:
    if ctx.keyspace.events.flags:
        for key in keys:
            ctx.keyspace.notify(notify.STRING, b"set", key)


def append(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    old = ctx.keyspace.peek(key)
    value = (old or b"") + args[2]
    ctx.keyspace.put(key, value, ctx.keyspace.deadline(key), raw=old is not None)
    ctx.keyspace.notify(notify.STRING, b"append", key)
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
    ctx.keyspace.put(key, b"%d" % result, ctx.keyspace.deadline(key))
    ctx.keyspace.notify(notify.STRING, b"incrby", key)
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


def incrbyfloat(ctx: Context, conn: Connection, args: list) -> bytes:
    """Added and printed as Redis does, in C's long double (server/longdouble.py)."""
    keyspace, key = ctx.keyspace, args[1]
    old = keyspace.peek(key)
    value = longdouble.parse(old) if old is not None else 0
    increment = longdouble.parse(args[2])
    if value is None or increment is None:
        return NOT_FLOAT
    if isinstance(value, float) or isinstance(increment, float):  # an infinity
        return error("ERR increment would produce NaN or Infinity")
    result = longdouble.round_extended(value + increment)
    if isinstance(result, float):
        return error("ERR increment would produce NaN or Infinity")
    text = longdouble.format_human(result)
    keyspace.put(key, text, keyspace.deadline(key))
    keyspace.notify(notify.STRING, b"incrbyfloat", key)
    return bulk(text)


def range_of(length: int, start: int, end: int) -> tuple[int, int]:
    """Redis's start/end arithmetic for GETRANGE and BITCOUNT: negative counts from the
    end, both clamped into the string; start > end means empty."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    start, end = max(start, 0), max(end, 0)
    return start, min(end, length - 1)


def getrange(ctx: Context, conn: Connection, args: list) -> bytes:
    """GETRANGE / SUBSTR key start end (inclusive offsets)."""
    start, end = parse_strict_int(args[2]), parse_strict_int(args[3])
    if start is None or end is None:
        return NOT_INTEGER
    value = ctx.keyspace.read(args[1])
    if value is None or (start < 0 and end < 0 and start > end):
        return EMPTY
    start, end = range_of(len(value), start, end)
    return EMPTY if start > end else bulk(value[start:end + 1])


def setrange(ctx: Context, conn: Connection, args: list) -> bytes:
    offset, patch = parse_strict_int(args[2]), args[3]
    if offset is None:
        return NOT_INTEGER
    if offset < 0:
        return error("ERR offset is out of range")
    keyspace, key = ctx.keyspace, args[1]
    old = keyspace.peek(key)
    if not patch:
        return integer(0 if old is None else len(old))
    if offset + len(patch) > ctx.config.max_value_size:
        return TOO_LONG
    old = old or b""
    value = old[:offset].ljust(offset, b"\0") + patch + old[offset + len(patch):]
    keyspace.put(key, value, keyspace.deadline(key), raw=True)
    keyspace.notify(notify.STRING, b"setrange", key)
    return integer(len(value))


def lcs(ctx: Context, conn: Connection, args: list) -> bytes:
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN] (Redis's lcsCommand)."""
    keyspace = ctx.keyspace
    first, second = keyspace.read_any(args[1]), keyspace.read_any(args[2])
    if (first and first[1] != STRING) or (second and second[1] != STRING):
        return error("ERR The specified keys must contain string values")
    a, b = (first or (b"", 0))[0], (second or (b"", 0))[0]
    want_len = want_idx = with_len = False
    min_len = 0
    j = 3
    while j < len(args):
        option = keyword(args[j])
        if option == b"idx":
            want_idx = True
        elif option == b"len":
            want_len = True
        elif option == b"withmatchlen":
            with_len = True
        elif option == b"minmatchlen" and j + 1 < len(args):
            parsed = parse_strict_int(args[j + 1])
            if parsed is None:
                return NOT_INTEGER
            min_len = parsed
            min_len = max(min_len, 0)
            j += 1
        else:
            return SYNTAX
        j += 1
    if want_len and want_idx:
        return error("ERR If you want both the length and indexes, please just use IDX.")
    if (len(a) + 1) * (len(b) + 1) * 4 > ctx.config.max_value_size:  # Redis's table bound
        return error("ERR Insufficient memory, transient memory for LCS exceeds "
                     "proto-max-bulk-len")
    table = LcsTable(a, b)
    if want_len:
        return integer(table.length)
    if not want_idx:
        return bulk(table.common())
    matches = []
    for (a_start, a_end), (b_start, b_end) in table.ranges():
        match_len = a_end - a_start + 1
        if min_len == 0 or match_len >= min_len:
            entry = [array([integer(a_start), integer(a_end)]),
                     array([integer(b_start), integer(b_end)])]
            if with_len:
                entry.append(integer(match_len))
            matches.append(array(entry))
    return conn.resp.map_of([bulk(b"matches"), array(matches),
                             bulk(b"len"), integer(table.length)])


COMMANDS = [
    row("get", get),
    row("set", set_),
    row("setex", setex),
    row("psetex", setex),
    row("getex", getex),
    row("getset", getset),
    row("setnx", setnx),
    row("getdel", getdel),
    row("mget", mget),
    row("mset", mset),
    row("msetnx", msetnx),
    row("incrbyfloat", incrbyfloat),
    row("getrange", getrange),
    row("substr", getrange),
    row("setrange", setrange),
    row("lcs", lcs),
    row("append", append),
    row("strlen", strlen),
    row("incr", incr),
    row("decr", decr),
    row("incrby", incrby),
    row("decrby", decrby),
]
