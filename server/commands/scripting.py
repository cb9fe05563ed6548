"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT (Redis's eval.c); the engine is
server/scripting.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol import parse_strict_int
from ..resp import OK, array, bulk, error, integer
from ..scripting import NOSCRIPT
from .common import NOT_INTEGER, help_reply
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

SCRIPT_HELP = [
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
]


def _eval(ctx: Context, conn: Connection, args: list, by_sha: bool, read_only: bool) -> bytes:
    if ctx.monitors.clients:  # before the script's commands
        ctx.monitors.feed(conn, args, conn.db)
    numkeys = parse_strict_int(args[2])
    if numkeys is None:
        return NOT_INTEGER
    if numkeys > len(args) - 3:
        return error("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        return error("ERR Number of keys can't be negative")
    scripts = ctx.scripts
    if by_sha:
        script = scripts.get(args[1]) if len(args[1]) == 40 else None
        if script is None:
            return NOSCRIPT
    else:
        script = scripts.load(args[1])
    return scripts.execute(ctx, conn, script, args[3:3 + numkeys], args[3 + numkeys:],
                           read_only)


def eval_(ctx: Context, conn: Connection, args: list) -> bytes:
    return _eval(ctx, conn, args, by_sha=False, read_only=False)


def evalsha(ctx: Context, conn: Connection, args: list) -> bytes:
    return _eval(ctx, conn, args, by_sha=True, read_only=False)


def eval_ro(ctx: Context, conn: Connection, args: list) -> bytes:
    return _eval(ctx, conn, args, by_sha=False, read_only=True)


def evalsha_ro(ctx: Context, conn: Connection, args: list) -> bytes:
    return _eval(ctx, conn, args, by_sha=True, read_only=True)


def script(ctx: Context, conn: Connection, args: list) -> bytes:
    """(The gate has checked the subcommand and its arity.)"""
    sub = args[1].upper()
    scripts = ctx.scripts
    if sub == b"LOAD":
        return bulk(scripts.load(args[2]).sha)
    if sub == b"EXISTS":
        return array([integer(scripts.get(sha) is not None) for sha in args[2:]])
    if sub == b"FLUSH":
        if len(args) > 3 or (len(args) == 3 and args[2].upper() not in (b"SYNC", b"ASYNC")):
            return error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
        scripts.flush()
        return OK
    if sub == b"KILL":
        return scripts.kill()
    if sub == b"DEBUG":
        if args[2].upper() not in (b"YES", b"SYNC", b"NO"):
            return error("ERR Use SCRIPT DEBUG YES/SYNC/NO")
        if args[2].upper() == b"NO":
            return OK
        return error("ERR kvd has no Lua debugger (SCRIPT DEBUG YES|SYNC)")
    return help_reply("SCRIPT", SCRIPT_HELP)


# (A script's reply waits for the group commit if it wrote: scripting.py says so.)
COMMANDS = [
    row("eval", eval_),
    row("evalsha", evalsha),
    row("eval_ro", eval_ro),
    row("evalsha_ro", evalsha_ro),
    row("script", script,
        subcommands=["debug", "exists", "flush", "kill", "load", "help"]),
]
