"""The server commands: INFO, CONFIG, COMPACT, SHUTDOWN, DEBUG."""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING

from ..glob import compile_glob
from ..protocol import parse_strict_int
from ..resp import OK, array, bulk, error, integer, status
from . import info as info_
from .common import NOT_INTEGER, SYNTAX, unknown_subcommand, wrong_arity

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

DEBUG_NOT_ALLOWED = error(
    'ERR DEBUG command not allowed. If the enable-debug-command option is set to "local", you '
    "can run it from a local connection, otherwise you need to set this option in the "
    "configuration file, and then restart the server.")
_STRTOD = re.compile(rb"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def info(ctx: Context, conn: Connection, args: list) -> bytes:
    sections = [a.decode(errors="replace").lower() for a in args[1:]]
    return conn.resp.verbatim(info_.render(ctx, sections).encode())


def config(ctx: Context, conn: Connection, args: list) -> bytes:
    sub = args[1].upper()
    if sub == b"GET" and len(args) >= 3:
        settings = info_.config_values(ctx)
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
        return conn.resp.map(found.items())
    if sub == b"RESETSTAT" and len(args) == 2:
        ctx.stats.reset()
        return OK
    if sub == b"SET":
        return error("ERR kvd does not change settings at run time; restart it with the option "
                     "(see kvd start --help)")
    if sub == b"GET":
        return wrong_arity(b"config|get")
    return error(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CONFIG HELP.")


def compact(ctx: Context, conn: Connection, args: list) -> bytes:
    ctx.control.request_compaction("COMMAND")
    return status("Background compaction requested")


def shutdown(ctx: Context, conn: Connection, args: list) -> bytes:
    for option in args[1:]:
        if option.upper() not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            return SYNTAX
    if any(option.upper() == b"ABORT" for option in args[1:]):
        return error("ERR kvd cannot abort a shutdown")
    if ctx.scripts is not None and ctx.scripts.busy:  # SHUTDOWN NOSAVE (only that gets here)
        ctx.scripts.stop("SHUTDOWN NOSAVE")
    ctx.control.request_shutdown("SHUTDOWN command")
    return OK


def _strtod(text: bytes) -> float:
    """C's strtod as Redis calls it: the longest number at the start, 0 if there is none."""
    found = _STRTOD.match(text)
    value = float(found.group()) if found else 0.0
    return value if math.isfinite(value) else 0.0


def debug_refusal(ctx: Context, conn: Connection) -> bytes | None:
    """Redis's protected-command check for DEBUG (also made when MULTI queues one)."""
    allowed = ctx.config.enable_debug_command
    if allowed == "no" or (allowed == "local" and not conn.is_local()):
        return DEBUG_NOT_ALLOWED
    return None


def debug(ctx: Context, conn: Connection, args: list) -> bytes:
    """DEBUG SLEEP seconds: block the whole loop, on purpose (to see the watchdog at work).
    Off unless --enable-debug-command allows it, as in Redis 7."""
    refused = debug_refusal(ctx, conn)
    if refused:
        return refused
    if args[1].upper() == b"SLEEP" and len(args) == 3:
        time.sleep(max(0.0, _strtod(args[2])))
        return OK
    return unknown_subcommand(args)


def time_(ctx: Context, conn: Connection, args: list) -> bytes:
    """[seconds, microseconds] of the server's clock."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return array([bulk(b"%d" % seconds), bulk(b"%d" % micros)])


def lastsave(ctx: Context, conn: Connection, args: list) -> bytes:
    """When writes were last made durable (every acknowledged write is saved)."""
    return integer(ctx.stats.last_save)


def wait(ctx: Context, conn: Connection, args: list) -> bytes:
    """WAIT numreplicas timeout: kvd has no replicas, so 0 at once -- waiting for
    replicas that cannot exist would only hold the client until its timeout."""
    if parse_strict_int(args[1]) is None:
        return NOT_INTEGER
    timeout = parse_strict_int(args[2])
    if timeout is None:
        return error("ERR timeout is not an integer or out of range")
    if timeout < 0:
        return error("ERR timeout is negative")
    return integer(0)


# name, handler, arity, writes
COMMANDS = [
    ("info", info, -1, False),
    ("config", config, -2, False),
    ("compact", compact, 1, False),
    ("shutdown", shutdown, -1, False),
    ("debug", debug, -2, False),
    ("time", time_, 1, False),
    ("lastsave", lastsave, 1, False),
    ("wait", wait, 3, False),
]
