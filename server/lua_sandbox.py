"""The Lua state scripts run in: Lua 5.1 (lupa's, the version Redis embeds), sandboxed
as Redis sandboxes it -- and so that nothing of Python is reachable from a script.

The sandbox itself is Lua (`lua/sandbox.lua`, which says what a script sees), and so
are the libraries Redis links (`lua/cjson.lua`, `cmsgpack.lua`, `struct.lua`,
`bit.lua`): a script only ever holds Lua values, and the libraries' work counts
against the script's instruction hook and memory limit like the script's own.

The server's callbacks (redis.call and the other redis.* functions, the count hook's
tick) are Python functions that only the sandbox's Lua functions call. Each is
guarded here: it never raises into Lua (an error becomes `(False, text)`), it takes
only plain values, and it runs with the memory limit lifted -- lupa pushes a
callback's result into Lua outside any protection of its own, and an allocation
failure there would unwind through Python (the interpreter then deadlocks on its own
lock) -- until the sandbox calls `relimit` right after it returns. The runtime also
refuses every attribute and item of any Python object, should one ever reach Lua.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources

from lupa import lua51

from .lua_bytecode import without_tail_calls

log = logging.getLogger("kvd.scripts")

HOOK_INSTRUCTIONS = 100_000  # as Redis
# Scripts between two garbage collections, as Redis steps its Lua GC every 50 scripts
# (eval.c): the state stays near its live size (INFO used_memory_lua), at a few tens of
# microseconds per collection of the small heap scripts leave.
GC_PERIOD = 50
_LIBRARIES = ("support", "bit", "struct", "cmsgpack", "cjson")
_compiled: dict[str, bytes] = {}  # library -> its code, compiled and stripped (luac -s)


class ScriptError(Exception):
    """An error a callback answers to the script: `text` is its {err=...} text."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text)
        self.text = text


def _lua_source(name: str) -> bytes:
    return resources.files(__package__).joinpath(f"lua/{name}.lua").read_bytes()


def _refuse_attribute(obj: object, name: object, value: object = None) -> object:
    raise AttributeError("not accessible from Lua")


class Sandbox:
    """One Lua state, set up once; a script cache flush starts a new one (SCRIPT FLUSH)."""

    def __init__(self, api: dict[str, object], max_memory: int) -> None:
        self.runtime = lua51.LuaRuntime(encoding=None, register_eval=False,
                                        register_builtins=False,
                                        unpack_returned_tuples=True, max_memory=max_memory,
                                        attribute_handlers=(_refuse_attribute,
                                                            _refuse_attribute))
        self.table_from = self.runtime.table_from
        self.max_memory = max_memory
        self._limited = False  # the memory limit is in force (a script runs)
        self._runs = 0
        values: dict[bytes, object] = {}
        for name, value in api.items():
            values[name.encode()] = self._guarded(value) if callable(value) else value
        values[b"without_tail_calls"] = self._guarded(without_tail_calls)
        values[b"library"] = self._guarded(self._library)
        values[b"relimit"] = self._relimit
        values[b"hook_instructions"] = HOOK_INSTRUCTIONS
        if not _compiled:
            dump = self.runtime.eval(
                b"function(code) return string.dump(loadstring(code, '=lib')) end")
            for name in _LIBRARIES:
                _compiled[name] = without_tail_calls(dump(_lua_source(name)), strip=True)
        loader = self.runtime.eval(b"function(code) return loadstring(code, '=kvd') end")
        chunk = loader(_lua_source("sandbox"))
        (self._prepare, self._run, self._compile, self.classify,
         self.new_table, self._load_library, self._end_load) = chunk(self.table_from(values))
        # Releasing a reference lupa holds into Lua writes the registry's free list, at
        # key 0; made to exist now, so that no release ever allocates (see _guarded).
        self.table_from([]).__len__()
        self.runtime.gccollect()
        self.runtime.set_max_memory(0)

    def _guarded(self, function: Callable) -> Callable:
        """`function` as the sandbox calls it: (True, result) or (False, error text),
        with the memory limit lifted until `relimit`."""
        runtime = self.runtime

        def call(*args):
            runtime.set_max_memory(0)
            try:
                return True, function(*args)
            except ScriptError as exc:
                return False, exc.text
            except Exception as exc:  # a bug: the script gets an error, never Python
                log.exception("a script's call into the server failed")
                return False, b"ERR internal error in a script's call: " + str(exc).encode()

        return call

    @staticmethod
    def _library(name: bytes) -> bytes:
        """A library's compiled code, loaded by the sandbox when a script first uses it."""
        return _compiled[name.decode()]

    def _relimit(self) -> None:
        if self._limited:
            self.runtime.set_max_memory(self.max_memory)

    def compile(self, body: bytes) -> tuple[object, bytes | None]:
        """(the compiled script, None), or (None, the compiler's message)."""
        result = self._compile(body)
        if isinstance(result, tuple):
            return result[0], result[1] if len(result) > 1 else None
        return result, None

    def load_library(self, code: bytes) -> list[tuple] | bytes:
        """Run a function library's code (FUNCTION LOAD): the functions it registered,
        (name, callback, description or False, flags) each, or the error text. Under the
        memory limit, as a script; the load hook (api's load_tick) stops a slow one."""
        self._limited = True
        self.runtime.set_max_memory(self.max_memory)
        try:
            ok, result = self._load_library(code)
        except lua51.LuaError as exc:  # (out of memory, say: outside the load's pcall)
            self.runtime.set_max_memory(0)
            self._end_load()
            message = b"not enough memory" if isinstance(exc, lua51.LuaMemoryError) else str(
                exc).encode()
            return b"Error registering functions: ERR " + message
        finally:
            self._limited = False
            self.runtime.set_max_memory(0)
        if not ok:
            return result
        return [tuple(entry[i] for i in (1, 2, 3, 4)) for entry in result.values()]

    def run(self, function: object, keys: list[bytes], args: list[bytes],
            as_function: bool = False) -> tuple:
        """(True, result) or (False, error) of a compiled script (or, `as_function`, of a
        library's function: FCALL hands it KEYS and ARGV as its arguments).

        The memory limit holds only while the script runs: lupa pushes values into
        Lua outside any protected call, where running out of memory aborts the
        process, so KEYS and ARGV are made first, without the limit, and whatever the
        script leaves behind is collected afterwards."""
        self._prepare(as_function, len(keys), *keys, *args)
        self._limited = True
        self.runtime.set_max_memory(self.max_memory)
        try:
            return self._run(function, as_function)
        finally:
            self._limited = False
            self.runtime.set_max_memory(0)
            self._runs += 1
            if self._runs % GC_PERIOD == 0 or self.memory() > self.max_memory // 2:
                self.runtime.gccollect()

    def memory(self) -> int:
        """Bytes the Lua state uses."""
        used = self.runtime.get_memory_used()
        return used if used is not None else 0
