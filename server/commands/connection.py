"""The connection commands: PING, ECHO, SELECT, QUIT, AUTH, HELLO, CLIENT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..context import REDIS_VERSION
from ..protocol import parse_strict_int
from ..resp import ENCODERS, OK, PONG, bulk, error, integer
from .common import NOT_INTEGER, SYNTAX, c_string, help_reply, unknown_subcommand, wrong_arity
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

WRONGPASS = error("WRONGPASS invalid username-password pair or user is disabled.")


def ping(ctx: Context, conn: Connection, args: list) -> bytes:
    if len(args) == 1:
        return PONG
    if len(args) == 2:
        return bulk(args[1])
    return wrong_arity(args[0])


def echo(ctx: Context, conn: Connection, args: list) -> bytes:
    return bulk(args[1])


def select(ctx: Context, conn: Connection, args: list) -> bytes:
    index = parse_strict_int(args[1])
    if index is None:
        return NOT_INTEGER
    return OK if index == 0 else error("ERR DB index is out of range")


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
    if sub == b"HELP":
        return help_reply("CLIENT", CLIENT_HELP)
    return unknown_subcommand(args)


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
    "LIST",
    "    Return information about client connections.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
]


COMMANDS = [
    row("ping", ping),
    row("echo", echo),
    row("select", select),
    row("quit", quit_),
    row("auth", auth),
    row("hello", hello),
    row("client", client,
        subcommands=["getname", "id", "info", "list", "setname", "help"],
        extra_subcommands={"setinfo": (4, ["noscript", "loading", "stale"])}),
]
