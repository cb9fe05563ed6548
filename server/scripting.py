"""Lua scripts (Redis 7.0's EVAL family): the script cache, running a script, and a
script that runs too long.

A script runs inside the command that started it, in the loop's one thread:
nothing else runs meanwhile, and its writes form one write batch on disk (begun
before it runs, ended after), acknowledged with the pass's group commit like
any write -- after a crash a script is there whole or not at all. The commands
it calls (`redis.call`) pass the scripts' own gate (dispatch.py): not every
command is allowed from a script, and none that writes from a read-only one.

Past the busy threshold (`--busy-reply-threshold`, Redis's 5 s) the Lua hook
lets the loop serve the other clients between instructions (Control's
`serve_while_busy`): they get -BUSY for everything but SCRIPT KILL, SHUTDOWN
NOSAVE and a few connection commands, and signals are read. SCRIPT KILL
stops a script that has not written; a script that has written can only be
ended with the server (SHUTDOWN NOSAVE, SIGTERM), which then exits at once
without its writes: on disk the script never ran (ScriptAbandoned).

Replies cross into Lua as Redis converts them (its reply parser, fed the
reply bytes of the command), and the script's result back (luaReplyToRedisReply).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from lupa import lua51

from .errors import CommandError
from .keyspace import now_ms
from .lua_sandbox import Sandbox, ScriptError
from .resp import ENCODERS, ONE, RESP2, array, bulk, error, integer
from .transaction import Transaction

if TYPE_CHECKING:
    from .config import Config
    from .connection import Connection
    from .databases import Databases
    from .keyspace import Keyspace

log = logging.getLogger("kvd.scripts")

lua_type = lua51.lua_type
NOSCRIPT = error("NOSCRIPT No matching script. Please use EVAL.")
BUSY = error("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
             "SHUTDOWN NOSAVE.")
BUSY_FUNCTION = error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or "
                      "SHUTDOWN NOSAVE.")
LOAD_TIMEOUT_S = 0.5  # a library's code runs at most this long at FUNCTION LOAD, as Redis
NOTBUSY = error("NOTBUSY No scripts in execution right now.")
UNKILLABLE = error("UNKILLABLE Sorry the script already executed write commands against the "
                   "dataset. You can either wait the script termination or kill the server in "
                   "a hard way using the SHUTDOWN NOSAVE command.")
SHEBANG_FLAGS = frozenset({b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster",
                           b"allow-cross-slot-keys"})
MAX_REPLY_DEPTH = 200  # nested tables in a script's result (Redis: its Lua stack)
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_LOG_LEVELS = (logging.DEBUG, logging.DEBUG, logging.INFO, logging.WARNING)


class BusyServer(Protocol):
    def serve_while_busy(self, caller: Connection) -> None: ...


class Host(Protocol):
    """What running a script needs of the server: the commands' Context is one."""

    keyspace: Keyspace  # the current database's (SELECT changes it)

    @property
    def databases(self) -> Databases: ...

    @property
    def control(self) -> BusyServer: ...

    @property
    def script_call(self) -> Callable[[Run, list[bytes]], bytes]:
        """The gate of redis.call: (run, args) -> reply."""

    @property
    def lookup(self) -> Callable[[bytes], object | None]:
        """A command by name, or None."""


class ScriptAbandoned(BaseException):
    """A script that had written was stopped by SHUTDOWN NOSAVE or a signal: its writes
    were dropped unwritten and the server must exit now, serving nothing more (the
    keys in memory hold half a script). A BaseException, so no command's error
    handling catches it."""


class Script(NamedTuple):
    sha: bytes  # 40 lower-case hex digits; a library function's name (functions.py)
    body: bytes
    function: object  # the compiled Lua function
    compat: bool  # no shebang line: Redis's eval compatibility mode
    no_writes: bool  # `#!lua flags=no-writes`
    in_library: bool = False  # a function FCALL runs (functions.py), not EVAL's


class ScriptClient:
    """The client a script's commands run as (Redis's lua_client): the protocol the
    script chose with redis.setresp, and no transaction of its own."""

    __slots__ = ("resp", "tx", "db")
    subscriptions = 0  # (a script subscribes to nothing: PING answers as usual)

    def __init__(self, db: int = 0) -> None:
        self.resp = RESP2
        self.tx = Transaction()
        self.db = db  # SELECT in a script changes the script's database, not the caller's

    def describe(self) -> str:
        return "a script"


class Run:
    """The script running now."""

    __slots__ = ("ctx", "caller", "client", "script", "read_only", "started", "wrote", "busy",
                 "killed", "abandoned", "counted", "args")

    def __init__(self, ctx: Host, caller: Connection, script: Script, read_only: bool,
                 args: list[bytes] = ()) -> None:  # type: ignore[assignment]
        self.args = args  # the command that runs it (FUNCTION STATS shows it)
        self.ctx = ctx
        self.caller = caller
        self.client = ScriptClient(caller.db)
        self.script = script
        self.read_only = read_only
        self.started = time.monotonic()
        self.wrote = False
        self.busy = False  # past the busy threshold: others are answered -BUSY
        self.killed = False
        self.abandoned = False
        # The error texts its commands answered: counted in INFO errorstats when they
        # were answered, so not again if the script ends with one (Redis's
        # ignore_error_stats_update).
        self.counted: set[bytes] = set()


def sha1hex(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def error_text(reply: bytes) -> bytes:
    """An error as a script sees it in `{err=...}` (Redis's luaPushErrorBuff): "-CODE
    message" keeps its code, anything else is an ERR; no trailing CR/LF."""
    if reply[:1] == b"-":
        code, sep, message = reply[1:].partition(b" ")
        if not sep:
            code, message = b"ERR", reply[1:]
    else:
        code, message = b"ERR", reply
    return code + b" " + message.strip(b"\r\n")


def _c_long_long(number: float) -> int:
    """C's (long long) cast of a double on x86-64: out of range or NaN gives INT64_MIN."""
    if not math.isfinite(number) or not INT64_MIN <= number < 2.0**63:
        return INT64_MIN
    return int(number)


def _shebang(body: bytes) -> tuple[int, bool, bool]:
    """(length of the shebang line, compat mode, no-writes); raises CommandError."""
    if not body.startswith(b"#!"):
        return 0, True, False
    end = body.find(b"\n")
    if end < 0:
        raise CommandError(error("ERR Invalid script shebang"))
    parts = body[:end].split()
    if not parts:
        raise CommandError(error("ERR Invalid engine in script shebang"))
    if parts[0] != b"#!lua":
        raise CommandError(error(b"ERR Unexpected engine in script shebang: " + parts[0]))
    no_writes = False
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise CommandError(error(b"ERR Unknown lua shebang option: " + part))
        for flag in part[6:].split(b","):
            if flag not in SHEBANG_FLAGS:
                raise CommandError(error(b"ERR Unexpected flag in script shebang: " + flag))
            no_writes |= flag == b"no-writes"
    return end, False, no_writes


class Scripts:
    """The script cache (in memory only: empty after a restart, as in Redis) and the
    Lua state the scripts run in."""

    def __init__(self, config: Config, version: str) -> None:
        self.config = config
        self.version = version
        self.cache: dict[bytes, Script] = {}
        self.running: Run | None = None
        # The last script's error reply if its text was already counted in INFO errorstats
        # (the gate compares by identity).
        self.counted_reply: bytes | None = None
        self._sandbox = self._new_sandbox()
        self._active = self._sandbox  # the Lua state of what runs now (replies go there)
        # The library functions' own Lua state (functions.py), as Redis keeps them apart
        # from EVAL's: SCRIPT FLUSH leaves them, FUNCTION FLUSH starts it anew.
        self.function_sandbox = self._new_sandbox()
        self.load_started = 0.0  # when the library FUNCTION LOAD runs began

    def _new_sandbox(self) -> Sandbox:
        major, minor, patch = (int(part) for part in self.version.split("."))
        api = {
            "call": self._call_raising, "pcall": self._call, "sha1hex": self._sha1hex,
            "log": self._log, "setresp": self._setresp, "set_repl": self._set_repl,
            "acl_check_cmd": self._acl_check_cmd, "tick": self._tick,
            "load_tick": self._load_tick,
            "version": self.version.encode(),
            "version_num": major << 16 | minor << 8 | patch,
        }
        return Sandbox(api, self.config.script_memory)

    # -- the cache --------------------------------------------------------------------

    def load(self, body: bytes) -> Script:
        """The cached script with this body, compiled and cached if new (SCRIPT LOAD,
        EVAL); CommandError if it does not compile."""
        sha = sha1hex(body)
        script = self.cache.get(sha)
        if script is not None:
            return script
        skip, compat, no_writes = _shebang(body)
        # The shebang line is skipped but its line feed kept: line numbers stay the user's.
        function, message = self._sandbox.compile(body[skip:])
        if function is None:
            raise CommandError(error(b"ERR Error compiling script (new function): "
                                     + (message or b"syntax error")))
        script = self.cache[sha] = Script(sha, body, function, compat, no_writes)
        return script

    def get(self, sha: bytes) -> Script | None:
        return self.cache.get(sha.lower())

    def may_write(self, args: list[bytes]) -> bool:
        """Whether EVAL or EVALSHA `args` may write (Redis's evalGetCommandFlags): unless
        the script's shebang says no-writes; an unknown or malformed one may."""
        if args[0].lower() == b"evalsha":
            script = self.get(args[1])
            return script is None or script.compat or not script.no_writes
        try:
            _, compat, no_writes = _shebang(args[1])
        except CommandError:
            return True
        return compat or not no_writes

    def flush(self) -> None:
        """SCRIPT FLUSH: forget every script and start a fresh Lua state."""
        self.cache.clear()
        self._sandbox = self._new_sandbox()

    def new_function_sandbox(self) -> None:
        """FUNCTION FLUSH: a fresh Lua state for library functions."""
        self.function_sandbox = self._new_sandbox()

    def _load_tick(self) -> bool:
        """The load hook's question: has the library's code run too long?"""
        return time.monotonic() - self.load_started > LOAD_TIMEOUT_S

    def memory(self) -> tuple[int, int, int]:
        """(bytes EVAL's Lua state uses, bytes of cached script bodies, bytes the library
        functions' Lua state uses)."""
        return (self._sandbox.memory(), sum(len(s.body) + 40 for s in self.cache.values()),
                self.function_sandbox.memory())

    # -- running ------------------------------------------------------------------------

    def execute(self, ctx: Host, conn: Connection, script: Script, keys: list[bytes],
                args: list[bytes], read_only: bool, command: list[bytes] = ()  # type: ignore
                ) -> bytes:
        """Run `script` (or a library's function) for `conn`; its reply, in the protocol
        of `conn`."""
        if not script.compat and not script.no_writes and read_only:
            return error("ERR Can not execute a script with write flag using *_ro command.")
        run = Run(ctx, conn, script, read_only or script.no_writes, command)
        sandbox = self._active = (self.function_sandbox if script.in_library
                                  else self._sandbox)
        keyspace, databases = ctx.keyspace, ctx.databases
        self.running = run
        databases.freeze(now_ms())
        keyspace.begin_batch()
        try:
            result = sandbox.run(script.function, keys, args, script.in_library)
        except lua51.LuaMemoryError:
            result = (False, b"not enough memory")
        finally:
            self.running = None
            databases.freeze(0)
            ctx.keyspace = keyspace  # a SELECT in the script was the script's only
            if run.abandoned:
                keyspace.discard_batch()
            else:
                keyspace.end_batch()
        if run.abandoned:
            raise ScriptAbandoned(script.sha.decode())
        if run.busy:
            log.warning("the slow script %s finished after %.1f s", script.sha.decode(),
                        time.monotonic() - run.started)
        if run.wrote:  # its reply waits for the group commit, as a write's
            conn.write_slots.append(len(conn.replies))
        ok = result[0]
        value = result[1] if len(result) > 1 else None
        if ok:
            reply = self._reply(value, conn.resp, run.client.resp.version, 0)
        else:
            reply = self._failure(value, script.sha)
        if reply[:1] == b"-" and any(reply.startswith(b"-" + text) for text in run.counted):
            self.counted_reply = reply  # the gate counts it as EVAL's failure only
        return reply

    def _failure(self, value: Any, sha: bytes) -> bytes:
        """The reply for a script that raised an error (luaCallFunction's)."""
        if lua_type(value) != "table":
            message = value if isinstance(value, bytes) else str(value).encode()
            return error(b"ERR Error running script " + sha + b", " + message[:100])
        message, source, line = value[b"err"], value[b"source"], value[b"line"]
        if not isinstance(message, bytes):
            message = b"" if message is None else str(message).encode()
        if source is not None and line is not None:
            message += b" script: %s, on %s:%d." % (sha, source, line)
        return error(message)

    # -- the script's result -------------------------------------------------------------

    def _reply(self, value: Any, enc, script_resp: int, depth: int) -> bytes:
        kind = type(value)
        if kind is bytes:
            return bulk(value)
        if kind is int:
            return integer(value if INT64_MIN <= value <= INT64_MAX else INT64_MIN)
        if kind is float:
            return integer(_c_long_long(value))
        if kind is bool:
            if script_resp == 2:
                return ONE if value else enc.null
            return enc.boolean(value)
        if value is None or lua_type(value) != "table":
            return enc.null
        if depth >= MAX_REPLY_DEPTH:
            return error("ERR reached lua stack limit")
        parts = self._active.classify(value)
        kind = parts[0]
        if kind == b"err":
            return error(parts[1])
        if kind == b"ok":
            return b"+" + parts[1].replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
        if kind == b"double":
            return enc.double(float(parts[1]))
        if kind == b"big_number":
            return enc.big_number(parts[1].replace(b"\r", b" ").replace(b"\n", b" "))
        if kind == b"verbatim":
            return enc.verbatim_as(parts[1], parts[2])
        items = list(parts[2].values()) if parts[1] else []
        encoded = [self._reply(item, enc, script_resp, depth + 1) for item in items]
        if kind == b"map":
            return enc.map_of(encoded)
        if kind == b"set":
            return enc.set_of(encoded)
        return array(encoded)

    # -- redis.call and the other functions scripts call ------------------------------

    def _command(self, args: tuple) -> bytes:
        run = self.running
        if run is None:
            return error("ERR redis.call/pcall can only be called inside a script invocation")
        if not args:
            return error("ERR Please specify at least one argument for this redis lib call")
        argv = []
        for arg in args:
            kind = type(arg)
            if kind is bytes:
                argv.append(arg)
            elif kind is int or kind is float:
                argv.append(b"%.17g" % arg)  # as Redis, not Lua's own %.14g
            else:
                return error("ERR Lua redis lib command arguments must be strings or integers")
        reply = run.ctx.script_call(run, argv)
        if reply[:1] == b"-":
            run.counted.add(error_text(reply[:-2]))
        return reply

    def _call(self, *args) -> object:
        """redis.pcall: the reply, an error as an {err=...} table."""
        return self._to_lua(self._command(args))

    def _call_raising(self, *args) -> object:
        """redis.call: the reply; an error is raised into the script."""
        reply = self._command(args)
        if reply[:1] == b"-":
            raise ScriptError(error_text(reply[:-2]))
        return self._to_lua(reply)

    def _to_lua(self, reply: bytes) -> object:
        first = reply[:1]
        if first == b"$":
            if reply[1:2] == b"-":
                return False
            return reply[reply.index(b"\r\n") + 2:-2]
        if first == b":":
            return int(reply[1:-2])
        if first == b"+":
            return self._active.new_table(b"ok", reply[1:-2])
        if first == b"-":
            return self._active.new_table(b"err", error_text(reply[:-2]))
        return self._parse(reply, 0)[0]

    def _parse(self, data: bytes, pos: int) -> tuple[object, int]:
        """One RESP2/RESP3 reply at `pos` as a Lua value (redisProtocolToLuaType)."""
        end = data.index(b"\r\n", pos)
        kind, line, after = data[pos:pos + 1], data[pos + 1:end], end + 2
        if kind == b"$" or kind == b"=":
            size = int(line)
            if size < 0:
                return False, after
            text = data[after:after + size]
            if kind == b"=":
                return self._active.new_table(b"verbatim", text[:3], text[4:]), after + size + 2
            return text, after + size + 2
        if kind == b":":
            return int(line), after
        if kind == b"+":
            return self._active.new_table(b"ok", line), after
        if kind == b"-":
            return self._active.new_table(b"err", error_text(b"-" + line)), after
        if kind == b"_":
            return None, after
        if kind == b"#":
            return line == b"t", after
        if kind == b",":
            return self._active.new_table(b"double", float(line)), after
        if kind == b"(":
            return self._active.new_table(b"big_number", line), after
        if kind in (b"*", b"~", b"%", b"|"):
            count = int(line)
            if count < 0:
                return False, after
            if kind == b"%" or kind == b"|":
                count *= 2
            items = []
            pos = after
            for _ in range(count):
                item, pos = self._parse(data, pos)
                items.append(item)
            if kind == b"*":
                return self._active.table_from(items), pos
            if kind == b"~":
                members = self._active.table_from(dict.fromkeys(items, True))
                return self._active.new_table(b"set", members), pos
            if kind == b"|":  # an attribute: skipped, the reply follows it
                return self._parse(data, pos)
            pairs = dict(zip(items[0::2], items[1::2]))
            return self._active.new_table(b"map", self._active.table_from(pairs)), pos
        raise ValueError(f"unexpected reply type {kind!r}")

    def _sha1hex(self, *args) -> bytes:
        if len(args) != 1:
            raise ScriptError(b"ERR wrong number of arguments")
        value = args[0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = b"%.14g" % value
        return sha1hex(value if isinstance(value, bytes) else b"")

    def _log(self, *args) -> None:
        if len(args) < 2:
            raise ScriptError(b"ERR redis.log() requires two arguments or more.")
        level = args[0]
        if isinstance(level, bytes):
            try:
                level = float(level)
            except ValueError:
                level = None
        if not isinstance(level, (int, float)) or isinstance(level, bool):
            raise ScriptError(b"ERR First argument must be a number (log level).")
        if not 0 <= int(level) <= 3:
            raise ScriptError(b"ERR Invalid debug level.")
        parts = [p if isinstance(p, bytes) else b"%.14g" % p for p in args[1:]
                 if isinstance(p, (bytes, int, float)) and not isinstance(p, bool)]
        log.log(_LOG_LEVELS[int(level)], "script: %s", b" ".join(parts).decode(errors="replace"))

    def _setresp(self, *args) -> None:
        run = self.running
        if run is None:
            raise ScriptError(b"ERR redis.setresp can only be called inside a script invocation")
        if len(args) != 1:
            raise ScriptError(b"ERR redis.setresp() requires one argument.")
        try:
            resp = int(float(args[0]))
        except (TypeError, ValueError):
            resp = 0
        if resp not in (2, 3):
            raise ScriptError(b"ERR RESP version must be 2 or 3.")
        run.client.resp = ENCODERS[resp]

    def _set_repl(self, *args) -> None:
        if len(args) != 1:
            raise ScriptError(b"ERR redis.set_repl() requires two arguments.")
        if args[0] not in (0, 1, 2, 3):
            raise ScriptError(b"ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, "
                             b"REPL_ALL or REPL_NONE.")

    def _acl_check_cmd(self, *args) -> bool:
        run = self.running
        if not args:
            raise ScriptError(b"ERR Please specify at least one argument for this redis lib call")
        name = args[0] if isinstance(args[0], bytes) else b""
        if run is None or run.ctx.lookup(name) is None:
            raise ScriptError(b"ERR Invalid command passed to redis.acl_check_cmd()")
        return True

    # -- a script that runs too long ----------------------------------------------------

    def _tick(self) -> bool:
        """The Lua hook, every few instructions: whether the script must stop. Past the
        busy threshold, the loop serves the others (and signals) from here."""
        run = self.running
        if run is None:
            return False
        if not run.busy:
            threshold = self.config.busy_reply_threshold
            if not threshold or (time.monotonic() - run.started) * 1000 < threshold:
                return False
            run.busy = True
            log.warning("slow script detected: %s still running after %d ms; other clients get "
                        "-BUSY until it ends, %s KILL stops it%s", run.script.sha.decode(),
                        threshold, "FUNCTION" if run.script.in_library else "SCRIPT",
                        " (it has written: only SHUTDOWN NOSAVE or SIGTERM)" if run.wrote else "")
        run.ctx.control.serve_while_busy(run.caller)
        return run.killed

    @property
    def busy(self) -> bool:
        """A script runs past the busy threshold: the others are answered -BUSY."""
        return self.running is not None and self.running.busy

    def busy_reply(self) -> bytes:
        """-BUSY, naming the KILL that would stop what runs (Redis's two texts)."""
        run = self.running
        return BUSY_FUNCTION if run is not None and run.script.in_library else BUSY

    def kill(self, function: bool = False) -> bytes:
        """SCRIPT KILL (or, `function`, FUNCTION KILL): each stops only its own kind."""
        run = self.running
        if run is None:
            return NOTBUSY
        if run.wrote:
            return UNKILLABLE
        if run.script.in_library != function:
            return BUSY_FUNCTION if function is False else BUSY
        run.killed = True
        log.warning("the script %s is stopped by %s KILL", run.script.sha.decode(),
                    "FUNCTION" if function else "SCRIPT")
        return b"+OK\r\n"

    def stop(self, reason: str) -> None:
        """The server shuts down (SHUTDOWN NOSAVE, SIGTERM) while a script is busy: stop it;
        if it has written, drop its writes and make the server exit at once."""
        run = self.running
        if run is None or run.killed:  # (a script SCRIPT KILL stopped has not written)
            return
        run.killed = True
        if run.wrote:
            run.abandoned = True
            log.warning("%s: stopping the script %s, which has written; its writes are dropped "
                        "and kvd exits at once", reason, run.script.sha.decode())
        else:
            log.warning("%s: stopping the script %s", reason, run.script.sha.decode())
