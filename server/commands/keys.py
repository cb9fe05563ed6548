"""The generic keyspace commands (Redis's db.c and expire.c): DEL, EXISTS, KEYS, SCAN,
TYPE, TTL, FLUSHALL..."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import notify
from ..glob import compile_glob
from ..keyspace import LIST, STREAM, STRING, TYPE_NAMES, ZSET, now_ms
from ..protocol import parse_strict_int
from ..resp import OK, ONE, ZERO, array, bulk, error, integer, status
from . import hashes
from .common import (
    DB_OUT_OF_RANGE,
    INT64_MAX,
    INT64_MIN,
    NOT_INTEGER,
    SYNTAX,
    c_string,
    help_reply,
    invalid_expire,
    keyword,
    parse_db_index,
    scan_options,
)
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

NONE = status("none")
TYPE_REPLIES = {kind: status(name) for kind, name in TYPE_NAMES.items()}
NO_SUCH_KEY = error("ERR no such key")
SAME_OBJECT = error("ERR source and destination objects are the same")
OBJECT_HELP = [
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
]


def del_(ctx: Context, conn: Connection, args: list) -> bytes:
    remove = ctx.keyspace.remove
    return integer(sum(1 for key in args[1:] if remove(key)))


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
    options = scan_options(args, 2, with_type=True)
    if isinstance(options, bytes):
        return options
    match = options.match
    if options.type_name is not None:  # the name first, then the type, as Redis
        kind_match = _type_filter(ctx, TYPE_CODES.get(options.type_name))
        named = match
        match = kind_match if named is None else (
            lambda key: named(key) and kind_match(key))
    step = ctx.keyspace.scan(cursor, options.count, match)
    if step is None:
        return error("ERR invalid cursor (unknown or expired; start again from 0)")
    next_cursor, found = step
    return array([bulk(b"%d" % next_cursor), conn.resp.bulks(found)])


def _type_filter(ctx: Context, wanted: int | None) -> Callable[[bytes], bool]:
    """SCAN's TYPE: Redis looks each key up to see its type, a keyspace hit each."""
    keyspace = ctx.keyspace

    def of_type(key: bytes) -> bool:
        keyspace.stats.keyspace_hits += 1
        return wanted is not None and keyspace.type_of(key) == wanted
    return of_type


TYPE_CODES = {name.encode(): kind for kind, name in TYPE_NAMES.items()}


def dbsize(ctx: Context, conn: Connection, args: list) -> bytes:
    return integer(len(ctx.keyspace))


def type_(ctx: Context, conn: Connection, args: list) -> bytes:
    if not ctx.keyspace.exists(args[1]):
        return NONE
    return TYPE_REPLIES[ctx.keyspace.type_of(args[1])]


def ttl(ctx: Context, conn: Connection, args: list) -> bytes:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 no key, -1 no deadline."""
    if not ctx.keyspace.exists(args[1]):
        return integer(-2)
    deadline = ctx.keyspace.deadline(args[1])
    if not deadline:
        return integer(-1)
    name = args[0].upper()
    left = max(0, deadline if name.endswith(b"EXPIRETIME") else deadline - now_ms())
    return integer(left if name.startswith(b"P") else (left + 500) // 1000)


_EXPIRE_FLAGS = (b"NX", b"XX", b"GT", b"LT")
_EXPIRE_BASE = {b"EXPIRE": (1000, True), b"PEXPIRE": (1, True), b"EXPIREAT": (1000, False),
                b"PEXPIREAT": (1, False)}  # ms per unit, relative to now


def expire(ctx: Context, conn: Connection, args: list) -> bytes:
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX|XX|GT|LT] (expireGenericCommand)."""
    flags = set()
    for option in args[3:]:
        opt = c_string(option).upper()
        if opt not in _EXPIRE_FLAGS:
            return error(b"ERR Unsupported option " + c_string(option))
        flags.add(opt)
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        return error("ERR NX and XX, GT or LT options at the same time are not compatible")
    if {b"GT", b"LT"} <= flags:
        return error("ERR GT and LT options at the same time are not compatible")
    when = parse_strict_int(args[2])
    if when is None:
        return NOT_INTEGER
    per_unit, relative = _EXPIRE_BASE[args[0].upper()]
    name = args[0].decode(errors="replace").lower()
    if per_unit == 1000 and not -(-INT64_MIN // 1000) <= when <= INT64_MAX // 1000:  # C's /
        return invalid_expire(name)
    when *= per_unit
    base = now_ms() if relative else 0
    if when > INT64_MAX - base:
        return invalid_expire(name)
    when += base
    keyspace, key = ctx.keyspace, args[1]
    if key not in keyspace:
        return ZERO
    if flags:
        current = keyspace.deadline(key) or None  # None: no deadline, "infinite"
        if (b"NX" in flags and current is not None) or (b"XX" in flags and current is None):
            return ZERO
        if b"GT" in flags and (current is None or when <= current):
            return ZERO
        if b"LT" in flags and current is not None and when >= current:
            return ZERO
    if when <= 0:  # passed long ago (set_deadline would read 0 as "none"): it goes
        keyspace.remove(key)
        return ONE
    keyspace.set_deadline(key, when)  # (one already passed deletes the key, as in Redis 7)
    return ONE


def persist(ctx: Context, conn: Connection, args: list) -> bytes:
    keyspace, key = ctx.keyspace, args[1]
    if key in keyspace and keyspace.deadline(key):
        keyspace.set_deadline(key, 0)
        return ONE
    return ZERO


def flushall(ctx: Context, conn: Connection, args: list) -> bytes:
    """FLUSHDB and FLUSHALL [ASYNC|SYNC]: one small write whatever the databases hold, so
    both are synchronous (and durable with the pass's group commit)."""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return SYNTAX
    if args[0].upper() == b"FLUSHDB":
        ctx.keyspace.flush()
    else:
        ctx.databases.flush_all()
    return OK


def rename(ctx: Context, conn: Connection, args: list) -> bytes:
    """RENAME / RENAMENX: the value and its TTL move to the new name, in one batch."""
    keyspace, source, target = ctx.keyspace, args[1], args[2]
    only_new = args[0].upper() == b"RENAMENX"
    if source not in keyspace:  # a lookup to write: not counted, as Redis
        return NO_SUCH_KEY
    if source == target:
        return ZERO if only_new else OK
    if only_new and target in keyspace:
        return ZERO
    keyspace.check_sizes(target)
    keyspace.rename(source, target)
    keyspace.notify(notify.GENERIC, b"rename_from", source)
    keyspace.notify(notify.GENERIC, b"rename_to", target)
    return ONE if only_new else OK


def copy(ctx: Context, conn: Connection, args: list) -> bytes:
    """COPY source destination [DB db] [REPLACE]."""
    replace = False
    destination = ctx.keyspace
    j = 3
    while j < len(args):
        option = keyword(args[j])
        if option == b"replace":
            replace = True
        elif option == b"db" and j + 1 < len(args):
            index = parse_db_index(args[j + 1])
            if index is None:
                return NOT_INTEGER
            if not 0 <= index < len(ctx.databases):
                return DB_OUT_OF_RANGE
            destination = ctx.databases[index]
            j += 1
        else:
            return SYNTAX
        j += 1
    keyspace, source, target = ctx.keyspace, args[1], args[2]
    if source == target and destination is keyspace:
        return SAME_OBJECT
    if keyspace.read_any(source) is None:
        return ZERO
    if target in destination and not replace:
        return ZERO
    keyspace.copy_to(source, destination, target, counted=False)
    destination.notify(notify.GENERIC, b"copy_to", target)
    return ONE


def touch(ctx: Context, conn: Connection, args: list) -> bytes:
    """The keys that exist (kvd keeps no access times for TOUCH to update)."""
    found = ctx.keyspace.exists
    return integer(sum(1 for key in args[1:] if found(key)))


def randomkey(ctx: Context, conn: Connection, args: list) -> bytes:
    return conn.resp.bulk_or_null(ctx.keyspace.random_key())


def object_(ctx: Context, conn: Connection, args: list) -> bytes:
    """OBJECT: the encoding Redis would report for the value (string_encoding), one
    reference; kvd tracks neither access times nor frequencies."""
    sub = args[1].upper()
    if sub == b"HELP":
        return help_reply("OBJECT", OBJECT_HELP)
    if not ctx.keyspace.exists(args[2]):
        return conn.resp.null
    if sub == b"ENCODING":
        found = ctx.keyspace.read_any(args[2], counted=False)
        if found is None:
            return conn.resp.null
        if found[1] != STRING:
            return bulk(collection_encoding(ctx, args[2], found))
        if args[2] in ctx.keyspace.built_in_place:
            return bulk(b"raw")
        return bulk(string_encoding(found[0]))
    if sub == b"REFCOUNT":
        return ONE
    if sub == b"FREQ":
        return error("ERR An LFU maxmemory policy is not selected, access frequency not "
                     "tracked. Please note that when switching between policies at runtime LRU "
                     "and LFU data will take some time to adjust.")
    return error("ERR kvd does not track access times: OBJECT IDLETIME is not available")


def collection_encoding(ctx: Context, key: bytes, found: tuple[bytes, int]) -> bytes:
    """OBJECT ENCODING of a value of another type than string (`found`: the value of
    `key` and its type)."""
    if found[1] == LIST:
        return b"quicklist"  # (Redis 7.0's only list encoding)
    if found[1] == STREAM:
        return b"stream"
    if ctx.keyspace.collection_version(key):
        return b"skiplist" if found[1] == ZSET else b"hashtable"
    return hashes.encoding(found[0], found[1])


def string_encoding(value: bytes) -> bytes:
    """The encoding Redis reports for a string set as a whole (its tryObjectEncoding): int
    for a decimal integer as Redis prints it, embstr up to 44 bytes, raw beyond. A value
    built in place (APPEND, SETRANGE, SETBIT...) is raw, as Redis's (keyspace.put)."""
    if len(value) <= 20:
        number = parse_strict_int(value)
        if number is not None and b"%d" % number == value:
            return b"int"
    return b"embstr" if len(value) <= 44 else b"raw"


def move(ctx: Context, conn: Connection, args: list) -> bytes:
    """MOVE key db: the value and its TTL go to database `db` unless the key is there
    already; one batch."""
    index = parse_db_index(args[2])
    if index is None:
        return NOT_INTEGER
    if not 0 <= index < len(ctx.databases):
        return DB_OUT_OF_RANGE
    keyspace, key = ctx.keyspace, args[1]
    target = ctx.databases[index]
    if target is keyspace:
        return SAME_OBJECT
    if key not in keyspace or key in target:  # lookups to write: not counted, as Redis
        return ZERO
    keyspace.move_to(target, key)
    keyspace.notify(notify.GENERIC, b"move_from", key)
    target.notify(notify.GENERIC, b"move_to", key)
    return ONE


def swapdb(ctx: Context, conn: Connection, args: list) -> bytes:
    """SWAPDB a b: O(1), one small write (storage/slots.py)."""
    first, second = parse_db_index(args[1]), parse_db_index(args[2])
    if first is None:
        return error("ERR invalid first DB index")
    if second is None:
        return error("ERR invalid second DB index")
    count = len(ctx.databases)
    if not (0 <= first < count and 0 <= second < count):
        return DB_OUT_OF_RANGE
    if first != second:
        ctx.databases.swap(first, second)
    return OK


COMMANDS = [
    row("del", del_),
    row("unlink", del_),
    row("exists", exists),
    row("keys", keys),
    row("scan", scan),
    row("dbsize", dbsize),
    row("type", type_),
    row("ttl", ttl),
    row("pttl", ttl),
    row("expiretime", ttl),
    row("pexpiretime", ttl),
    row("expire", expire),
    row("pexpire", expire),
    row("expireat", expire),
    row("pexpireat", expire),
    row("persist", persist),
    row("rename", rename),
    row("renamenx", rename),
    row("copy", copy),
    row("touch", touch),
    row("randomkey", randomkey),
    row("object", object_,
        subcommands=["encoding", "freq", "idletime", "refcount", "help"]),
    row("move", move),
    row("swapdb", swapdb),
    row("flushdb", flushall),
    row("flushall", flushall),
]
