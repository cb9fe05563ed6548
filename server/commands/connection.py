"""The connection commands: PING, ECHO, SELECT, QUIT, AUTH, HELLO, CLIENT."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..blocking import UNBLOCKED_ERROR
from ..connection import REPLY_OFF, REPLY_SKIP_NEXT
from ..context import REDIS_VERSION
from ..pause import ALL, WRITE
from ..protocol import parse_strict_int
from ..resp import ENCODERS, OK, ONE, PONG, ZERO, array, bulk, error, integer, status
from .common import (
    DB_OUT_OF_RANGE,
    NOT_INTEGER,
    SYNTAX,
    c_string,
    help_reply,
    parse_db_index,
    unknown_subcommand,
    wrong_arity,
)
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

WRONGPASS = error("WRONGPASS invalid username-password pair or user is disabled.")


def ping(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) <= 2 and conn.resp.version == 2 and conn.subscriptions:
        return array([bulk(b"pong"), bulk(args[1] if len(args) == 2 else b"")])
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return bulk(args[1])
    return wrong_arity(args[0])


def echo(ctx: Context, conn: Connection, args: list) -> bytes:
    return bulk(args[1])


def select(ctx: Context, conn: Connection, args: list) -> bytes:
    index = parse_db_index(args[1])
    if index is None:
        return NOT_INTEGER
    if not 0 <= index < len(ctx.databases):
        return DB_OUT_OF_RANGE
    conn.db = index
    ctx.keyspace = ctx.databases[index]
    return OK


def reset(ctx: Context, conn: Connection, args: list) -> bytes:
    """RESET (Redis's clearClientConnectionState): the connection as new -- out of MULTI,
    WATCH, MONITOR, every subscription and CLIENT REPLY OFF; database 0, RESP2, no name,
    and unauthenticated again if a password is set."""
    conn.tx.discard(ctx.keyspace.watches)
    ctx.monitors.discard(conn)
    ctx.pubsub.forget(conn)
    conn.db = 0
    ctx.keyspace = ctx.databases[0]
    conn.resp = ENCODERS[2]
    conn.name = b""
    conn.muted = ""
    conn.parser.unauthenticated = ctx.auth.required
    return status("RESET")


def quit_(ctx: Context, conn: Connection, args: list) -> bytes:
    conn.closing = True
    return OK


def _authenticate(ctx: Context, conn: Connection, username: bytes, password: bytes) -> bytes:
    if not ctx.auth.check(username, password):
        return WRONGPASS
    conn.parser.unauthenticated = False  # authenticated: Redis's full request limits
    return OK


def auth(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) == 2:
        if not ctx.auth.required:  # only the one-argument form says so
            return error("ERR AUTH <password> called without any password configured for "
                         "the default user. Are you sure your configuration is correct?")
        return _authenticate(ctx, conn, b"default", args[1])
    if len(args) == 3:
        return _authenticate(ctx, conn, args[1], args[2])
    return SYNTAX


def hello(ctx: Context, conn: Connection, args: list) -> bytes:
    """HELLO [protover [AUTH user pass] [SETNAME name]], as Redis 7.0: switches the
    connection's protocol (2 or 3) once everything else succeeded, and reports."""
    version: int | None = 0
    if len(args) > 1:
        version = parse_strict_int(args[1])
        if version is None:
            return error("ERR Protocol version is not an integer or out of range")
        if version not in ENCODERS:
            return error("NOPROTO unsupported protocol version")
    i = 2
    while i < len(args):
        option, more = args[i].upper(), len(args) - 1 - i
        if option == b"AUTH" and more >= 2:
            reply = _authenticate(ctx, conn, args[i + 1], args[i + 2])
            if reply != OK:
                return reply
            i += 3
        elif option == b"SETNAME" and more:
            refused = _set_name(conn, args[i + 1])  # applied at once, as Redis does
            if refused:
                return refused
            i += 2
        else:
            return error(b"ERR Syntax error in HELLO option '" + c_string(args[i])
                         + b"'")
    if ctx.auth.required and not conn.authenticated:
        return error("NOAUTH HELLO must be called with the client already authenticated, "
                     "otherwise the HELLO AUTH <user> <pass> option can be used to "
                     "authenticate the client and select the RESP protocol version at the "
                     "same time")
    if version:
        conn.resp = ENCODERS[version]
    return conn.resp.map([
        ("server", "redis"), ("version", REDIS_VERSION), ("proto", conn.resp.version),
        ("id", conn.id), ("mode", "standalone"), ("role", "master"), ("modules", []),
    ])


def _set_name(conn: Connection, name: bytes) -> bytes | None:
    """Redis's clientSetNameOrReply: the error, or None once the name is set."""
    if any(c <= 32 or c > 126 for c in name):
        return error("ERR Client names cannot contain spaces, newlines or special characters.")
    conn.name = name
    return None


def client(ctx: Context, conn: Connection, args: list) -> bytes:
    sub = args[1].upper()
    if sub == b"SETNAME" and len(args) == 3:
        return _set_name(conn, args[2]) or OK
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
        return bulk(conn.name) if conn.name else conn.resp.null
    if sub == b"ID" and len(args) == 2:
        return integer(conn.id)
    if sub == b"INFO" and len(args) == 2:
        return conn.resp.verbatim(conn.client_info(_command_name(ctx, args)).encode() + b"\n")
    if sub == b"LIST" and len(args) == 2:
        listing = "".join(  # the caller's command is this one, as Redis shows it
            c.client_info(_command_name(ctx, args if c is conn else c.last_command)) + "\n"
            for c in ctx.control.connections())
        return conn.resp.verbatim(listing.encode())
    if sub == b"KILL":
        return _client_kill(ctx, conn, args)
    if sub == b"PAUSE" and len(args) in (3, 4):
        return _client_pause(ctx, args)
    if sub == b"UNBLOCK" and len(args) in (3, 4):
        return _client_unblock(ctx, args)
    if sub == b"UNPAUSE" and len(args) == 2:
        ctx.pause.unpause()
        return OK
    if sub == b"NO-EVICT" and len(args) == 3:
        setting = args[2].upper()
        if setting not in (b"ON", b"OFF"):
            return SYNTAX
        conn.no_evict = setting == b"ON"
        return OK
    if sub == b"REPLY" and len(args) == 3:
        return _client_reply(conn, args[2].upper())
    if sub == b"HELP":
        return help_reply("CLIENT", CLIENT_HELP)
    return unknown_subcommand(args)


def _client_reply(conn: Connection, mode: bytes) -> bytes:
    """CLIENT REPLY ON|OFF|SKIP: OFF and SKIP answer nothing (the gate drops the replies
    that follow: dispatch.py); SKIP does nothing under OFF, as in Redis."""
    if mode == b"ON":
        conn.muted = ""
        return OK
    if mode == b"OFF":
        conn.muted = REPLY_OFF
    elif mode == b"SKIP":
        if conn.muted != REPLY_OFF:
            conn.muted = REPLY_SKIP_NEXT
    else:
        return SYNTAX
    return b""


def _client_unblock(ctx: Context, args: list) -> bytes:
    """CLIENT UNBLOCK id [TIMEOUT|ERROR]: a client waiting in a blocking command gets its
    timeout reply (or an UNBLOCKED error) now; 1 if there was one, else 0."""
    reason = args[3].upper() if len(args) == 4 else b"TIMEOUT"
    if reason not in (b"TIMEOUT", b"ERROR"):
        return error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    client_id = parse_strict_int(args[2])
    if client_id is None:
        return NOT_INTEGER
    blocking = ctx.databases.blocking
    for other in ctx.control.connections():
        if other.id == client_id and other.blocked:
            done = (blocking.time_out(other) if reason == b"TIMEOUT"
                    else blocking.unblock(other, UNBLOCKED_ERROR))
            return ONE if done else ZERO
    return ZERO


CLIENT_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")


def _client_kill(ctx: Context, conn: Connection, args: list) -> bytes:
    """CLIENT KILL addr, or CLIENT KILL with filters (Redis 7.0's networking.c; MAXAGE is
    Redis 7.4's): the clients matching all of them are closed, the caller only with
    SKIPME no (or the old form), after its reply."""
    old_form = len(args) == 3
    addr = laddr = None
    client_id = max_age = 0
    kind: bytes | None = None
    skip_me = not old_form
    if old_form:
        addr = args[2]
    else:
        if len(args) % 2:  # an option without its value
            return SYNTAX
        for i in range(2, len(args), 2):
            option, value = args[i].upper(), args[i + 1]
            if option == b"ID":
                number = parse_strict_int(value)
                if number is None or number < 1:
                    return error("ERR client-id should be greater than 0")
                client_id = number
            elif option == b"TYPE":
                kind = value.lower()
                if kind not in CLIENT_TYPES:
                    return error(b"ERR Unknown client type '" + c_string(value) + b"'")
            elif option == b"ADDR":
                addr = value
            elif option == b"LADDR":
                laddr = value
            elif option == b"USER":
                if value != b"default":  # the one user there is without ACLs
                    return error(b"ERR No such user '" + c_string(value) + b"'")
            elif option == b"SKIPME":
                if value.lower() not in (b"yes", b"no"):
                    return SYNTAX
                skip_me = value.lower() == b"yes"
            elif option == b"MAXAGE":
                number = parse_strict_int(value)
                if number is None:
                    return NOT_INTEGER
                max_age = number
            else:
                return SYNTAX
    now = time.monotonic()
    killed = 0
    for client in list(ctx.control.connections()):
        if addr is not None and client.addr.encode() != addr:
            continue
        if laddr is not None and client.local_address().encode() != laddr:
            continue
        if kind is not None and kind != (b"pubsub" if client.subscriptions else b"normal"):
            continue  # (kvd has no replicas or masters)
        if client_id and client.id != client_id:
            continue
        if max_age and now - client.created <= max_age:
            continue
        if client is conn:
            if skip_me:
                continue
            conn.closing = True  # after this reply
        else:
            ctx.control.kill(client)
        killed += 1
    if old_form:
        return OK if killed else error("ERR No such client")
    return integer(killed)


def _client_pause(ctx: Context, args: list) -> bytes:
    """CLIENT PAUSE timeout [WRITE|ALL] (pause.py)."""
    mode = ALL
    if len(args) == 4:
        named = args[3].upper()
        if named not in (b"WRITE", b"ALL"):
            return error("ERR CLIENT PAUSE mode must be WRITE or ALL")
        mode = WRITE if named == b"WRITE" else ALL
    timeout_ms = parse_strict_int(args[2])
    if timeout_ms is None:
        return error("ERR timeout is not an integer or out of range")
    if timeout_ms < 0:
        return error("ERR timeout is negative")
    ctx.pause.pause(mode, time.monotonic() + timeout_ms / 1000)
    return OK


def _command_name(ctx: Context, args: list[bytes]) -> str:
    """Redis's cmd= of CLIENT LIST: the full name of a client's last command
    ("client|list" for a subcommand), NULL before any."""
    command = ctx.lookup(args[0]) if args else None
    if command is None:
        return "NULL"
    if command.subcommands and len(args) > 1:
        return f"{command.name}|{args[1].decode(errors='replace').lower()}"
    return command.name


CLIENT_HELP = [
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * MAXAGE <maxage>",
    "      Kill connections older than the specified age.",
    "LIST",
    "    Return information about client connections.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
]


COMMANDS = [
    row("ping", ping),
    row("echo", echo),
    row("select", select),
    row("quit", quit_),
    row("reset", reset),
    row("auth", auth),
    row("hello", hello),
    row("client", client,
        subcommands=["getname", "id", "info", "kill", "list", "no-evict", "pause", "reply",
                     "setname", "unblock", "unpause", "help"],
        extra_subcommands={"setinfo": (4, ["noscript", "loading", "stale"])}),
]
