"""The command table: Redis command name -> one small function per command.

Every handler is `handler(server, conn, args) -> bytes` and returns the
encoded reply; `args[0]` is the command name as the client sent it. The
table records each command's arity (Redis's convention: n means exactly n
arguments including the name, -n means at least n) and whether it writes, so
the loop knows which replies hang on the pass's group commit.

Semantics follow Redis 7.0 for the string commands kvd has. kvd has no key
expiry: options that would set one are refused with an error, never ignored.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, NamedTuple

from . import info
from .glob import compile_glob
from .protocol import (
    EMPTY_ARRAY,
    NIL,
    OK,
    PONG,
    array,
    bulk,
    bulk_or_nil,
    encode,
    error,
    integer,
    parse_strict_int,
    status,
)

if TYPE_CHECKING:
    from .connection import Connection
    from .server import Server

Handler = Callable[["Server", "Connection", list], bytes]

REDIS_VERSION = "7.0.0"  # the Redis whose command semantics kvd follows

NOT_INTEGER = error("ERR value is not an integer or out of range")
SYNTAX = error("ERR syntax error")
OVERFLOW = error("ERR increment or decrement would overflow")
NO_EXPIRY = error(
    "ERR kvd does not support key expiry (EX, PX, EXAT, PXAT, EXPIRE...); nothing was written"
)
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class Command(NamedTuple):
    name: str
    handler: Handler
    arity: int
    write: bool


def wrong_arity(name: bytes) -> bytes:
    return error(f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}' command")


def unknown_command(args: list[bytes]) -> bytes:
    """Redis 7's text, with the first arguments quoted (at most 128 bytes of them),
    byte for byte as the client sent them.

    Redis formats them with C's %.*s, so each stops at its first NUL byte.
    """
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + arg.split(b"\0", 1)[0][: 128 - len(shown)] + b"' "
    name = args[0].split(b"\0", 1)[0][:128]
    return error(b"ERR unknown command '" + name + b"', with args beginning with: " + shown)


def check_key(server: Server, key: bytes) -> bytes | None:
    """An error reply if `key` exceeds --max-key-size, else None."""
    if len(key) > server.config.max_key_size:
        return error(f"ERR key is too large ({len(key)} bytes; --max-key-size is "
                     f"{server.config.max_key_size})")
    return None


def check_value(server: Server, value: bytes) -> bytes | None:
    if len(value) > server.config.max_value_size:
        return error(f"ERR value is too large ({len(value)} bytes; --max-value-size is "
                     f"{server.config.max_value_size})")
    return None


# -- strings ------------------------------------------------------------------

def cmd_get(server: Server, conn: Connection, args: list) -> bytes:
    value = server.store.get(args[1])
    if value is None:
        server.stats.keyspace_misses += 1
        return NIL
    server.stats.keyspace_hits += 1
    return b"$%d\r\n%s\r\n" % (len(value), value)


def cmd_set(server: Server, conn: Connection, args: list) -> bytes:
    key, value = args[1], args[2]
    if len(args) == 3:  # the plain SET every benchmark sends
        config = server.config
        if len(key) > config.max_key_size or len(value) > config.max_value_size:
            return check_key(server, key) or check_value(server, value)
        server.store.put(key, value)
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
    refused = check_key(server, key) or check_value(server, value)
    if refused:
        return refused
    store = server.store
    old = store.get(key) if get else None
    exists = old is not None if get else (key in store)
    if (nx and exists) or (xx and not exists):
        return bulk_or_nil(old) if get else NIL
    store.put(key, value)
    return bulk_or_nil(old) if get else OK


def cmd_getset(server: Server, conn: Connection, args: list) -> bytes:
    refused = check_key(server, args[1]) or check_value(server, args[2])
    if refused:
        return refused
    old = server.store.get(args[1])
    server.store.put(args[1], args[2])
    return bulk_or_nil(old)


def cmd_getdel(server: Server, conn: Connection, args: list) -> bytes:
    old = server.store.get(args[1])
    if old is not None:
        server.store.delete(args[1])
    return bulk_or_nil(old)


def cmd_del(server: Server, conn: Connection, args: list) -> bytes:
    delete = server.store.delete
    return integer(sum(1 for key in args[1:] if delete(key)))


def cmd_exists(server: Server, conn: Connection, args: list) -> bytes:
    store = server.store
    return integer(sum(1 for key in args[1:] if key in store))


def cmd_mget(server: Server, conn: Connection, args: list) -> bytes:
    get = server.store.get
    return array([get(key) for key in args[1:]])


def cmd_mset(server: Server, conn: Connection, args: list) -> bytes:
    if len(args) % 2 == 0:
        return wrong_arity(args[0])
    pairs = list(zip(args[1::2], args[2::2]))
    for key, value in pairs:  # all or nothing: check every pair before writing any
        refused = check_key(server, key) or check_value(server, value)
        if refused:
            return refused
    put = server.store.put
    for key, value in pairs:
        put(key, value)
    return OK


def cmd_append(server: Server, conn: Connection, args: list) -> bytes:
    key = args[1]
    value = (server.store.get(key) or b"") + args[2]
    refused = check_key(server, key) or check_value(server, value)
    if refused:
        return refused
    server.store.put(key, value)
    return integer(len(value))


def cmd_strlen(server: Server, conn: Connection, args: list) -> bytes:
    value = server.store.get(args[1])
    return integer(0 if value is None else len(value))


def _incr(server: Server, key: bytes, delta: int) -> bytes:
    old = server.store.get(key)
    current = 0 if old is None else parse_strict_int(old)
    if current is None:
        return NOT_INTEGER
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        return OVERFLOW
    refused = check_key(server, key)
    if refused:
        return refused
    server.store.put(key, b"%d" % result)
    return integer(result)


def cmd_incr(server: Server, conn: Connection, args: list) -> bytes:
    return _incr(server, args[1], 1)


def cmd_decr(server: Server, conn: Connection, args: list) -> bytes:
    return _incr(server, args[1], -1)


def cmd_incrby(server: Server, conn: Connection, args: list) -> bytes:
    delta = parse_strict_int(args[2])
    return NOT_INTEGER if delta is None else _incr(server, args[1], delta)


def cmd_decrby(server: Server, conn: Connection, args: list) -> bytes:
    delta = parse_strict_int(args[2])
    if delta is None:
        return NOT_INTEGER
    if delta == INT64_MIN:
        return error("ERR decrement would overflow")
    return _incr(server, args[1], -delta)


# -- keyspace -------------------------------------------------------------------

def cmd_keys(server: Server, conn: Connection, args: list) -> bytes:
    pattern = args[1]
    keys = server.store.keys()
    if pattern != b"*":
        match = compile_glob(pattern)
        keys = (k for k in keys if match(k))
    return array(list(keys))


class ScanCursors:
    """Server-side snapshots behind SCAN cursors.

    The key directory has no stable order under writes, so a cursor names a
    snapshot of the keys taken when the scan began, plus a position in it:
    every key present for the whole scan is returned exactly once; keys
    deleted meanwhile are skipped. A snapshot costs a pointer (8 bytes) per
    key, so what scans may hold is bounded: at most `limit` scans, and at most
    `HELD_PER_KEY` times the keyspace (plus a floor) in all; the least recently
    used scans are forgotten first. A forgotten cursor is an error, never a
    silent restart.
    """

    HELD_PER_KEY = 8
    HELD_FLOOR = 1 << 16

    def __init__(self, limit: int = 128) -> None:
        self._snapshots: OrderedDict[int, list[bytes]] = OrderedDict()
        self._next_id = 1
        self._limit = limit
        self._held = 0  # keys in all snapshots

    def clear(self) -> None:
        self._snapshots.clear()
        self._held = 0

    def step(self, store, cursor: int, count: int, match) -> tuple[int, list[bytes]] | None:
        if cursor == 0:
            scan_id = self._next_id
            self._next_id = self._next_id % 0x7FFFFFFF + 1
            snapshot = list(store.keys())
            self._snapshots[scan_id] = snapshot
            self._held += len(snapshot)
            position = 0
        else:
            scan_id, position = cursor >> 32, cursor & 0xFFFFFFFF
            snapshot = self._snapshots.get(scan_id)
            if snapshot is None:
                return None
            self._snapshots.move_to_end(scan_id)
        budget = self.HELD_PER_KEY * len(snapshot) + self.HELD_FLOOR
        while len(self._snapshots) > self._limit or (self._held > budget and
                                                     len(self._snapshots) > 1):
            self._forget(next(iter(self._snapshots)))
        end = min(position + count, len(snapshot))
        keys = [k for k in snapshot[position:end] if k in store and (match is None or match(k))]
        if end >= len(snapshot):
            self._forget(scan_id)
            return 0, keys
        return scan_id << 32 | end, keys

    def _forget(self, scan_id: int) -> None:
        snapshot = self._snapshots.pop(scan_id, None)
        if snapshot is not None:
            self._held -= len(snapshot)


def cmd_scan(server: Server, conn: Connection, args: list) -> bytes:
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
    step = server.scans.step(server.store, cursor, count, match)
    if step is None:
        return error("ERR invalid cursor (unknown or expired; start again from 0)")
    next_cursor, keys = step
    return b"*2\r\n" + bulk(b"%d" % next_cursor) + array(keys)


def _match_nothing(key: bytes) -> None:
    return None


def cmd_dbsize(server: Server, conn: Connection, args: list) -> bytes:
    return integer(len(server.store))


def cmd_type(server: Server, conn: Connection, args: list) -> bytes:
    return b"+string\r\n" if args[1] in server.store else b"+none\r\n"


def cmd_ttl(server: Server, conn: Connection, args: list) -> bytes:
    return integer(-1 if args[1] in server.store else -2)  # -1: exists without expiry


def cmd_expire(server: Server, conn: Connection, args: list) -> bytes:
    return NO_EXPIRY


def cmd_flushall(server: Server, conn: Connection, args: list) -> bytes:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return SYNTAX
    store = server.store
    for key in list(store.keys()):
        store.delete(key)
    server.scans.clear()
    return OK


# -- connection and server --------------------------------------------------------

def cmd_ping(server: Server, conn: Connection, args: list) -> bytes:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return bulk(args[1])
    return wrong_arity(args[0])


def cmd_echo(server: Server, conn: Connection, args: list) -> bytes:
    return bulk(args[1])


def cmd_select(server: Server, conn: Connection, args: list) -> bytes:
    index = parse_strict_int(args[1])
    if index is None:
        return NOT_INTEGER
    return OK if index == 0 else error("ERR DB index is out of range")


def cmd_quit(server: Server, conn: Connection, args: list) -> bytes:
    conn.closing = True
    return OK


def cmd_info(server: Server, conn: Connection, args: list) -> bytes:
    sections = [a.decode(errors="replace").lower() for a in args[1:]]
    return bulk(info.render(server, sections).encode())


def cmd_command(server: Server, conn: Connection, args: list) -> bytes:
    sub = args[1].upper() if len(args) > 1 else b""
    if sub == b"COUNT":
        return integer(len(COMMANDS))
    if sub in (b"", b"DOCS", b"INFO", b"LIST"):
        # Enough for redis-cli and redis-benchmark to start; they work without the details.
        if sub == b"LIST":
            return array([c.name.encode() for c in COMMANDS.values()])
        return EMPTY_ARRAY
    return error(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP.")


def cmd_config(server: Server, conn: Connection, args: list) -> bytes:
    sub = args[1].upper()
    if sub == b"GET" and len(args) >= 3:
        settings = info.config_values(server)
        found: dict[str, str] = {}
        for pattern in args[2:]:
            # As Redis: a C string (cut at a NUL), looked up by name unless it has a
            # glob character, matched without regard to case.
            pattern = pattern.split(b"\0", 1)[0]
            if not any(c in pattern for c in b"[*?"):
                name = pattern.decode(errors="replace").lower()
                if name in settings:
                    found[name] = settings[name]
                continue
            match = compile_glob(pattern, nocase=True)
            for name, value in settings.items():
                if match(name.encode()):
                    found[name] = value
        flat: list[bytes] = []
        for name, value in found.items():
            flat += [name.encode(), value.encode()]
        return array(flat)
    if sub == b"RESETSTAT" and len(args) == 2:
        server.stats.reset()
        return OK
    if sub == b"SET":
        return error("ERR kvd does not change settings at run time; restart it with the option "
                     "(see kvd start --help)")
    if sub == b"GET":
        return wrong_arity(b"config|get")
    return error(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CONFIG HELP.")


def cmd_client(server: Server, conn: Connection, args: list) -> bytes:
    sub = args[1].upper()
    if sub == b"SETNAME" and len(args) == 3:
        if any(c <= 32 or c > 126 for c in args[2]):
            return error("ERR Client names cannot contain spaces, newlines or special characters.")
        conn.name = args[2]
        return OK
    if sub == b"SETINFO" and len(args) == 4:
        attribute = args[2].upper()
        if attribute == b"LIB-NAME":
            conn.lib_name = args[3]
        elif attribute == b"LIB-VER":
            conn.lib_ver = args[3]
        else:
            return error(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
        return OK
    if sub == b"GETNAME" and len(args) == 2:
        return bulk(conn.name) if conn.name else NIL
    if sub == b"ID" and len(args) == 2:
        return integer(conn.id)
    if sub == b"INFO" and len(args) == 2:
        return bulk(conn.client_info().encode() + b"\n")
    if sub == b"LIST" and len(args) == 2:
        return bulk("".join(c.client_info() + "\n" for c in server.clients.values()).encode())
    return error(f"ERR unknown subcommand or wrong number of arguments for "
                 f"'{args[1].decode(errors='replace')}'. Try CLIENT HELP.")


def _check_password(server: Server, conn: Connection, username: bytes, password: bytes) -> bytes:
    """As Redis's ACL sees it: the only user is "default", which takes any password
    when none is configured and the configured one otherwise."""
    if username == b"default" and (server.password is None or
                                   server.password_matches(password)):
        conn.parser.unauthenticated = False  # authenticated: Redis's full request limits
        return OK
    return error("WRONGPASS invalid username-password pair or user is disabled.")


def cmd_auth(server: Server, conn: Connection, args: list) -> bytes:
    if len(args) == 2:
        if server.password is None:  # only the one-argument form says so
            return error("ERR AUTH <password> called without any password configured for "
                         "the default user. Are you sure your configuration is correct?")
        return _check_password(server, conn, b"default", args[1])
    if len(args) == 3:
        return _check_password(server, conn, args[1], args[2])
    return SYNTAX


def cmd_hello(server: Server, conn: Connection, args: list) -> bytes:
    """HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only, as DESIGN.md fixes."""
    i = 1
    if len(args) > 1:
        version = parse_strict_int(args[1])
        if version is None:
            return error("ERR Protocol version is not an integer or out of range")
        if version != 2:
            return error("NOPROTO unsupported protocol version")
        i = 2
    name = None
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            reply = _check_password(server, conn, args[i + 1], args[i + 2])
            if reply != OK:
                return reply
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            return error(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'")
    if server.password is not None and not conn.authenticated:
        return error("NOAUTH HELLO must be called with the client already authenticated, "
                     "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
                     "authenticate the client and select the RESP protocol version at the same time")
    if name is not None:
        conn.name = name
    return encode([
        "server", "redis", "version", REDIS_VERSION, "proto", 2, "id", conn.id,
        "mode", "standalone", "role", "master", "modules", [],
    ])


DEBUG_NOT_ALLOWED = error(
    'ERR DEBUG command not allowed. If the enable-debug-command option is set to "local", you '
    "can run it from a local connection, otherwise you need to set this option in the "
    "configuration file, and then restart the server.")
_STRTOD = re.compile(rb"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _strtod(text: bytes) -> float:
    """C's strtod as Redis calls it: the longest number at the start, 0 if there is none."""
    found = _STRTOD.match(text)
    value = float(found.group()) if found else 0.0
    return value if math.isfinite(value) else 0.0


def cmd_debug(server: Server, conn: Connection, args: list) -> bytes:
    """DEBUG SLEEP seconds: block the whole loop, on purpose (to see the watchdog at work).
    Off unless --enable-debug-command allows it, as in Redis 7."""
    allowed = server.config.enable_debug_command
    if allowed == "no" or (allowed == "local" and not conn.is_local()):
        return DEBUG_NOT_ALLOWED
    if args[1].upper() == b"SLEEP" and len(args) == 3:
        time.sleep(max(0.0, _strtod(args[2])))
        return OK
    return error(b"ERR unknown subcommand or wrong number of arguments for '"
                 + args[1].split(b"\0", 1)[0][:128] + b"'. Try DEBUG HELP.")


def cmd_compact(server: Server, conn: Connection, args: list) -> bytes:
    server.request_compaction("COMMAND")
    return status("Background compaction requested")


def cmd_shutdown(server: Server, conn: Connection, args: list) -> bytes:
    for option in args[1:]:
        if option.upper() not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            return SYNTAX
    if any(option.upper() == b"ABORT" for option in args[1:]):
        return error("ERR kvd cannot abort a shutdown")
    server.request_shutdown("SHUTDOWN command")
    return OK


def _table() -> dict[bytes, Command]:
    specs: list[tuple[str, Handler, int, bool]] = [
        ("get", cmd_get, 2, False),
        ("set", cmd_set, -3, True),
        ("getset", cmd_getset, 3, True),
        ("getdel", cmd_getdel, 2, True),
        ("del", cmd_del, -2, True),
        ("unlink", cmd_del, -2, True),
        ("exists", cmd_exists, -2, False),
        ("mget", cmd_mget, -2, False),
        ("mset", cmd_mset, -3, True),
        ("append", cmd_append, 3, True),
        ("strlen", cmd_strlen, 2, False),
        ("incr", cmd_incr, 2, True),
        ("decr", cmd_decr, 2, True),
        ("incrby", cmd_incrby, 3, True),
        ("decrby", cmd_decrby, 3, True),
        ("keys", cmd_keys, 2, False),
        ("scan", cmd_scan, -2, False),
        ("dbsize", cmd_dbsize, 1, False),
        ("type", cmd_type, 2, False),
        ("ttl", cmd_ttl, 2, False),
        ("pttl", cmd_ttl, 2, False),
        ("expire", cmd_expire, -3, False),
        ("pexpire", cmd_expire, -3, False),
        ("flushdb", cmd_flushall, -1, True),
        ("flushall", cmd_flushall, -1, True),
        ("ping", cmd_ping, -1, False),
        ("echo", cmd_echo, 2, False),
        ("select", cmd_select, 2, False),
        ("quit", cmd_quit, -1, False),
        ("info", cmd_info, -1, False),
        ("command", cmd_command, -1, False),
        ("config", cmd_config, -2, False),
        ("client", cmd_client, -2, False),
        ("auth", cmd_auth, -2, False),
        ("hello", cmd_hello, -1, False),
        ("compact", cmd_compact, 1, False),
        ("debug", cmd_debug, -2, False),
        ("shutdown", cmd_shutdown, -1, False),
    ]
    return {name.encode(): Command(name, fn, arity, write) for name, fn, arity, write in specs}


COMMANDS: dict[bytes, Command] = _table()
# Exact-case lookups first: clients send upper case, people type lower case.
LOOKUP: dict[bytes, Command] = {**COMMANDS, **{k.upper(): v for k, v in COMMANDS.items()}}
# Commands a client may send before AUTH when a password is set.
BEFORE_AUTH = frozenset({b"auth", b"hello", b"quit"})
