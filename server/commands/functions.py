"""FUNCTION (LOAD DELETE FLUSH LIST DUMP RESTORE STATS KILL HELP), FCALL, FCALL_RO (Redis's
functions.c); the libraries are server/functions.py's, running a function is
server/scripting.py's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..protocol import parse_strict_int
from ..resp import OK, array, bulk, error, integer, status
from ..scripting import BUSY
from .common import help_reply
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

FUNCTION_HELP = [
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME "
    "argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
    "abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
]


def function(ctx: Context, conn: Connection, args: list) -> bytes:
    """(The gate has checked the subcommand and its arity.)"""
    sub = args[1].upper()
    functions = ctx.functions
    if sub == b"LOAD":
        replace = False
        for option in args[2:-1]:
            if option.upper() != b"REPLACE":
                return error(b"ERR Unknown option given: " + option)
            replace = True
        return bulk(functions.load(args[-1], replace))
    if sub == b"DELETE":
        functions.delete(args[2])
        return OK
    if sub == b"FLUSH":
        if len(args) > 3:
            return error("ERR unknown subcommand or wrong number of arguments for 'flush'. "
                         "Try FUNCTION HELP.")
        if len(args) == 3 and args[2].upper() not in (b"SYNC", b"ASYNC"):
            return error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
        functions.flush()
        return OK
    if sub == b"LIST":
        return _list(ctx, conn, args)
    if sub == b"DUMP":
        return bulk(functions.dump())
    if sub == b"RESTORE":
        if len(args) > 4:
            return error("ERR unknown subcommand or wrong number of arguments for 'restore'. "
                         "Try FUNCTION HELP.")
        policy = args[3].upper() if len(args) == 4 else b"APPEND"
        if policy not in (b"FLUSH", b"APPEND", b"REPLACE"):
            return error("ERR Wrong restore policy given, value should be either FLUSH, "
                         "APPEND or REPLACE.")
        functions.restore(args[2], policy)
        return OK
    if sub == b"STATS":
        return _stats(ctx, conn)
    if sub == b"KILL":
        return ctx.scripts.kill(function=True)
    return help_reply("FUNCTION", FUNCTION_HELP)


def _list(ctx: Context, conn: Connection, args: list) -> bytes:
    """FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]."""
    with_code, pattern = False, None
    i = 2
    while i < len(args):
        word = args[i].lower()
        if not with_code and word == b"withcode":
            with_code = True
        elif pattern is None and word == b"libraryname":
            if i >= len(args) - 1:
                return error("ERR library name argument was not given")
            i += 1
            pattern = args[i]
        else:
            return error(b"ERR Unknown argument " + args[i])
        i += 1
    resp = conn.resp
    listed = []
    for library in ctx.functions.matching(pattern):
        described = []
        for fn in library.functions.values():
            described.append(resp.map_of([
                bulk(b"name"), bulk(fn.name),
                bulk(b"description"), resp.bulk_or_null(fn.description),
                bulk(b"flags"), resp.set_of([status(flag.decode()) for flag in fn.flags])]))
        parts = [bulk(b"library_name"), bulk(library.name), bulk(b"engine"), bulk(b"LUA"),
                 bulk(b"functions"), array(described)]
        if with_code:
            parts += [bulk(b"library_code"), bulk(library.code)]
        listed.append(resp.map_of(parts))
    return array(listed)


def _stats(ctx: Context, conn: Connection) -> bytes:
    run = ctx.scripts.running
    if run is not None and not run.script.in_library:
        return BUSY  # (an EVAL runs: as Redis, STATS answers with its -BUSY)
    resp = conn.resp
    running = resp.null
    if run is not None:
        running = resp.map_of([
            bulk(b"name"), bulk(run.script.sha), bulk(b"command"), resp.bulks(list(run.args)),
            bulk(b"duration_ms"), integer(int((time.monotonic() - run.started) * 1000))])
    functions = ctx.functions
    engines = resp.map_of([bulk(b"LUA"), resp.map_of([
        bulk(b"libraries_count"), integer(len(functions.libraries)),
        bulk(b"functions_count"), integer(len(functions.functions))])])
    return resp.map_of([bulk(b"running_script"), running, bulk(b"engines"), engines])


def fcall(ctx: Context, conn: Connection, args: list) -> bytes:
    """FCALL / FCALL_RO function numkeys [key ...] [arg ...]."""
    if ctx.monitors.clients:  # before the function's commands, as Redis
        ctx.monitors.feed(conn, args, conn.db)
    found = ctx.functions.functions.get(args[1].lower())
    if found is None:
        return error("ERR Function not found")
    numkeys = parse_strict_int(args[2])
    if numkeys is None:
        return error("ERR Bad number of keys provided")
    if numkeys > len(args) - 3:
        return error("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        return error("ERR Number of keys can't be negative")
    read_only = args[0].upper() == b"FCALL_RO"
    return ctx.scripts.execute(ctx, conn, found.script, args[3:3 + numkeys],
                               args[3 + numkeys:], read_only, args)


# (A function's reply waits for the group commit if it wrote: scripting.py says so.)
COMMANDS = [
    row("function", function,
        subcommands=["delete", "dump", "flush", "kill", "list", "load", "restore", "stats",
                     "help"]),
    row("fcall", fcall),
    row("fcall_ro", fcall),
]
