"""The server commands: INFO, CONFIG, COMPACT, SHUTDOWN, DEBUG, TIME, LASTSAVE, WAIT, MONITOR,
SLOWLOG, LATENCY."""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING

from ..config import SETTINGS
from ..glob import compile_glob
from ..protocol import parse_strict_int
from ..resp import OK, array, bulk, error, integer, status
from ..settings import config_values, parse_changes
from . import info as info_
from .common import NOT_INTEGER, SYNTAX, c_string, help_reply, unknown_subcommand
from .table import row

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


CONFIG_HELP = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


def config(ctx: Context, conn: Connection, args: list) -> bytes:
    sub = args[1].upper()
    if sub == b"GET":
        return _config_get(ctx, conn, args)
    if sub == b"SET":
        return _config_set(ctx, args)
    if sub == b"RESETSTAT":
        ctx.stats.reset()
        return OK
    if sub == b"REWRITE":  # kvd takes its settings from options and KVD_* variables only
        return error("ERR The server is running without a config file")
    return help_reply("CONFIG", CONFIG_HELP)


def _config_get(ctx: Context, conn: Connection, args: list) -> bytes:
    settings = config_values(SETTINGS, ctx.config, ctx.control.figures())
    found: dict[str, str] = {}
    for pattern in args[2:]:
        # As Redis: a C string (cut at a NUL), looked up by name unless it has a glob
        # character, matched without regard to case.
        pattern = c_string(pattern)
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


def _config_set(ctx: Context, args: list) -> bytes:
    """CONFIG SET name value [name value ...]: all or none, as Redis 7."""
    if len(args) % 2:
        return SYNTAX
    pairs = list(zip(args[2::2], args[3::2]))
    changes = parse_changes(SETTINGS, pairs)
    if isinstance(changes, tuple):
        name, why = changes
        if why is None:
            return error(f"ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
        return error(f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}")
    refused = ctx.control.reconfigure(changes)
    if refused is not None:
        return error(f"ERR CONFIG SET failed - {refused}")
    return OK


def compact(ctx: Context, conn: Connection, args: list) -> bytes:
    ctx.control.request_compaction("COMMAND")
    return status("Background compaction requested")


def shutdown(ctx: Context, conn: Connection, args: list) -> bytes:
    for option in args[1:]:
        if option.upper() not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            return SYNTAX
    if any(option.upper() == b"ABORT" for option in args[1:]):
        return error("ERR kvd cannot abort a shutdown")
    if ctx.scripts.busy:  # (SHUTDOWN is allow_busy)
        if not any(option.upper() == b"NOSAVE" for option in args[1:]):
            return ctx.scripts.busy_reply()  # (only SHUTDOWN NOSAVE ends a busy script)
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


def monitor(ctx: Context, conn: Connection, args: list) -> bytes:
    """From now on this client receives every command the server runs (server/monitor.py)."""
    if conn.tx.executing:  # a transaction expects one reply per command (Redis's DENY BLOCKING)
        return error("ERR MONITOR isn't allowed for DENY BLOCKING client")
    ctx.monitors.add(conn)
    return OK


SLOWLOG_HELP = [
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]


def slowlog(ctx: Context, conn: Connection, args: list) -> bytes:
    sub, log = args[1].upper(), ctx.slowlog
    if sub == b"HELP" and len(args) == 2:
        return help_reply("SLOWLOG", SLOWLOG_HELP)
    if sub == b"RESET" and len(args) == 2:
        log.reset()
        return OK
    if sub == b"LEN" and len(args) == 2:
        return integer(len(log.entries))
    if sub == b"GET" and len(args) <= 3:
        count: int | None = 10
        if len(args) == 3:
            count = parse_strict_int(args[2])
            if count is None or count < -1:
                return error("ERR count should be greater than or equal to -1")
        entries = list(log.entries) if count == -1 else list(log.entries)[:count]
        return array([array([integer(ident), integer(when), integer(micros),
                             array([bulk(arg) for arg in shown]), bulk(peer), bulk(name)])
                      for ident, when, micros, shown, peer, name in entries])
    return unknown_subcommand(args)


LATENCY_HELP = [
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the "
    "specified command names.",
    "    If no commands are specified then all histograms are replied.",
]
LATENCY_DISABLED = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. "
    "You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable "
    "it. If we weren't in a deep space mission I'd suggest to take a look at "
    "https://redis.io/topics/latency-monitor.\n")
LATENCY_QUIET = (
    "Dave, no latency spike was observed during the lifetime of this Redis instance, not in "
    "the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and "
    "think things over.\n")


MEMORY_HELP = [
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]


def memory(ctx: Context, conn: Connection, args: list) -> bytes:
    """MEMORY USAGE: what the key costs kvd in memory -- its key directory entry (about
    100 bytes beyond the key, measured: README "Sizing") -- plus the value's bytes, which
    live in the store's files and the page cache rather than the heap, as an estimate
    comparable with Redis's. MEMORY HELP."""
    sub = args[1].upper()
    if sub == b"USAGE" and len(args) >= 3:
        j = 3
        while j < len(args):
            if args[j].upper() == b"SAMPLES" and j + 1 < len(args):
                if parse_strict_int(args[j + 1]) is None:
                    return NOT_INTEGER
                j += 2
            else:
                return SYNTAX
        found = ctx.keyspace.read_any(args[2], counted=False)
        if found is None:
            return conn.resp.null
        return integer(KEY_OVERHEAD + len(args[2]) + len(found[0]))
    if sub == b"HELP" and len(args) == 2:
        return help_reply("MEMORY", MEMORY_HELP)
    return unknown_subcommand(args)


KEY_OVERHEAD = 100


def latency(ctx: Context, conn: Connection, args: list) -> bytes:
    """The latency monitor (server/latency.py). DOCTOR and GRAPH are plain reports, not
    Redis's analysis and sparklines; HISTOGRAM is empty (no per-command histograms)."""
    sub, monitor = args[1].upper(), ctx.latency
    events = monitor.events
    if sub == b"LATEST" and len(args) == 2:
        return array([array([bulk(name.encode()), integer(samples[-1][0]),
                             integer(samples[-1][1]), integer(worst[0])])
                      for name, (samples, worst) in events.items()])
    if sub == b"HISTORY" and len(args) == 3:
        samples, _ = events.get(args[2].decode(errors="replace"), ((), None))
        return array([array([integer(when), integer(ms)]) for when, ms in samples])
    if sub == b"RESET":
        names = None if len(args) == 2 else [a.decode(errors="replace") for a in args[2:]]
        return integer(monitor.reset(names))
    if sub == b"DOCTOR" and len(args) == 2:
        if not events:
            text = LATENCY_DISABLED if monitor.threshold_ms == 0 else LATENCY_QUIET
        else:
            text = "".join(f"{name}: {len(samples)} latency spikes (average "
                           f"{sum(ms for _, ms in samples) // len(samples)}ms); worst all time "
                           f"event {worst[0]}ms\n"
                           for name, (samples, worst) in events.items())
        return conn.resp.verbatim(text.encode())
    if sub == b"GRAPH" and len(args) == 3:
        name = args[2].decode(errors="replace")
        if name not in events:
            return error(b"ERR No samples available for event '" + args[2] + b"'")
        samples, worst = events[name]
        lines = [f"{name} - high {max(ms for _, ms in samples)} ms, low "
                 f"{min(ms for _, ms in samples)} ms (all time high {worst[0]} ms)", "-" * 80]
        lines += [f"{int(time.time()) - when}s ago: {ms} ms" for when, ms in samples]
        return conn.resp.verbatim(("\n".join(lines) + "\n").encode())
    if sub == b"HISTOGRAM":
        return conn.resp.map_of([])
    if sub == b"HELP" and len(args) == 2:
        return help_reply("LATENCY", LATENCY_HELP)
    return unknown_subcommand(args)


COMMANDS = [
    row("info", info),
    row("config", config,
        subcommands=["get", "set", "resetstat", "rewrite", "help"]),
    row("compact", compact),  # kvd's own (table.py describes it)
    row("shutdown", shutdown),
    row("debug", debug),
    row("time", time_),
    row("monitor", monitor),
    row("slowlog", slowlog,
        subcommands=["get", "len", "reset", "help"]),
    row("memory", memory, subcommands=["usage", "help"]),
    row("latency", latency,
        subcommands=["doctor", "graph", "history", "latest", "reset", "histogram", "help"]),
    row("lastsave", lastsave),
    row("wait", wait),
]
