"""Redis 7 function libraries (Redis's functions.c): FUNCTION LOAD compiles a library and
runs its code once, which registers its functions with `redis.register_function`; FCALL
runs one of them as a script (scripting.py: the same atomicity, write batch, busy
threshold and sandbox as EVAL, in a Lua state of their own).

Unlike EVAL's script cache, libraries are data: they are durable, kept in the data
directory (the store's `functions`: FUNCTION DUMP's payload, rewritten whole and
fsynced on every change before the command answers) and loaded again at start-up --
after a restart, a SIGKILL or a compaction, which does not touch them. FLUSHALL leaves
them, as in Redis; FUNCTION FLUSH removes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import rdb
from .errors import CommandError, StartupError
from .glob import compile_glob
from .protocol import split_inline
from .resp import error
from .scripting import Script

if TYPE_CHECKING:
    from storage import Store

    from .scripting import Scripts

log = logging.getLogger("kvd.scripts")

FLAG_ORDER = (b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster",
              b"allow-cross-slot-keys")  # as FUNCTION LIST shows them
ENGINE = b"LUA"


@dataclass
class Function:
    name: bytes
    library: bytes
    description: bytes | None
    flags: tuple[bytes, ...]
    script: Script  # what FCALL runs (scripting.py)


@dataclass
class Library:
    name: bytes
    code: bytes  # as loaded, shebang line included (FUNCTION LIST WITHCODE, DUMP)
    functions: dict[bytes, Function] = field(default_factory=dict)


def _fail(message: str | bytes) -> CommandError:
    return CommandError(error(message if isinstance(message, bytes) else message.encode()))


def parse_shebang(code: bytes) -> tuple[bytes, bytes]:
    """(engine, library name) of a library's first line (functionExtractLibMetaData)."""
    if not code.startswith(b"#!"):
        raise _fail("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise _fail("ERR Invalid library metadata")
    parts = split_inline(code[:end])  # (quotes and escapes, as Redis's sdssplitargs)
    if not parts:
        raise _fail("ERR Invalid library metadata")
    engine, name = parts[0][2:], None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise _fail("ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise _fail(b"ERR Invalid metadata value given: " + part)
    if name is None:
        raise _fail("ERR Library name was not given")
    return engine, name


def _valid_name(name: bytes) -> bool:
    return bool(name) and all(c == 95 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122
                              for c in name)


class Functions:
    """The libraries and their functions; durable through the store. FCALL finds a
    function whatever the case of its name (`functions` is keyed by the lower-case name,
    as Redis's dictionary compares them); library names are exact."""

    def __init__(self, scripts: Scripts, store: Store) -> None:
        self.scripts = scripts
        self.store = store
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}
        payload = store.functions()
        if payload:
            try:
                codes = rdb.load_libraries(payload)
                for code in codes:
                    self._add(self._compile(code), self.libraries, self.functions)
            except (rdb.PayloadError, CommandError) as exc:
                reason = exc.reply.decode(errors="replace")[1:].strip() if isinstance(
                    exc, CommandError) else str(exc)
                raise StartupError(f"the function libraries kept in the data directory do not "
                                   f"load: {reason}") from None
            log.info("%d function libraries loaded (%d functions)", len(self.libraries),
                     len(self.functions))

    def may_write(self, args: list[bytes]) -> bool:
        """Whether FCALL (or EVAL/EVALSHA) `args` may write, for CLIENT PAUSE WRITE: unless
        the function has the no-writes flag; an unknown one may."""
        if args[0].lower() != b"fcall":
            return self.scripts.may_write(args)
        found = self.functions.get(args[1].lower()) if len(args) > 1 else None
        return found is None or not found.script.no_writes

    # -- changes (each one durable before it is applied in memory) --------------------------

    def load(self, code: bytes, replace: bool) -> bytes:
        """FUNCTION LOAD: the library's name; CommandError with Redis's text."""
        name = self._checked(code)
        if name in self.libraries and not replace:
            raise _fail(b"ERR Library '" + name + b"' already exists")
        library = self._compile(code, name)
        libraries, functions = self._without([name])
        self._add(library, libraries, functions)
        self._commit(libraries, functions)
        return name

    def delete(self, name: bytes) -> None:
        if name not in self.libraries:
            raise _fail("ERR Library not found")
        self._commit(*self._without([name]))

    def flush(self) -> None:
        self._commit({}, {})
        self.scripts.new_function_sandbox()

    def restore(self, payload: bytes, policy: bytes) -> None:
        """FUNCTION RESTORE payload FLUSH|APPEND|REPLACE."""
        try:
            codes = rdb.load_libraries(payload)
        except rdb.PayloadError as exc:
            raise _fail(str(exc)) from None
        incoming: dict[bytes, Library] = {}
        incoming_functions: dict[bytes, Function] = {}
        for code in codes:
            self._add(self._compile(code), incoming, incoming_functions)
        libraries: dict[bytes, Library]
        functions: dict[bytes, Function]
        if policy == b"FLUSH":
            libraries, functions = {}, {}
        else:
            clashing = [name for name in incoming if name in self.libraries]
            if clashing and policy == b"APPEND":
                raise _fail(b"ERR Library " + clashing[0] + b" already exists")
            libraries, functions = self._without(clashing)
        for library in incoming.values():
            self._add(library, libraries, functions)
        self._commit(libraries, functions)

    def dump(self) -> bytes:
        return rdb.dump_libraries([library.code for library in self.libraries.values()])

    def matching(self, pattern: bytes | None) -> Iterable[Library]:
        """FUNCTION LIST's libraries, those whose name matches `pattern` if given."""
        matches = compile_glob(pattern, nocase=True) if pattern is not None else None
        return [library for library in self.libraries.values()
                if matches is None or matches(library.name)]

    # -- the parts ----------------------------------------------------------------------

    @staticmethod
    def _checked(code: bytes) -> bytes:
        """The library's name, once its first line is found right (Redis's order)."""
        engine, name = parse_shebang(code)
        if not _valid_name(name):
            raise _fail("ERR Library names can only contain letters, numbers, or "
                        "underscores(_) and must be at least one character long")
        if engine.upper() != ENGINE:
            raise _fail(b"ERR Engine '" + engine + b"' not found")
        return name

    def _compile(self, code: bytes, name: bytes | None = None) -> Library:
        """Run a library's code in the functions' Lua state: its registered functions."""
        if name is None:
            name = self._checked(code)
        body = code[code.index(b"\n"):]  # (the shebang's line feed kept: lines stay right)
        self.scripts.load_started = time.monotonic()
        registered = self.scripts.function_sandbox.load_library(body)
        if isinstance(registered, bytes):
            raise _fail(b"ERR " + registered)
        if not registered:
            raise _fail("ERR No functions registered")
        library = Library(name, code)
        for function_name, callback, description, flags in registered:
            named = {bytes(flag) for flag in flags.values()}
            library.functions[function_name] = Function(
                function_name, name, description or None,
                tuple(flag for flag in FLAG_ORDER if flag in named),
                Script(function_name, b"", callback, False, b"no-writes" in named, True))
        return library

    def _without(self, names: Iterable[bytes]) -> tuple[dict, dict]:
        """Copies of the libraries and the function index without the libraries `names`."""
        gone = set(names)
        libraries = {name: lib for name, lib in self.libraries.items() if name not in gone}
        functions = {key: fn for key, fn in self.functions.items() if fn.library not in gone}
        return libraries, functions

    @staticmethod
    def _add(library: Library, libraries: dict, functions: dict) -> None:
        """Add `library` to these tables (in place); CommandError on a name clash."""
        if library.name in libraries:
            raise _fail(b"ERR Library " + library.name + b" already exists")
        for name in library.functions:
            if name.lower() in functions:
                raise _fail(b"ERR Function " + name + b" already exists")
        libraries[library.name] = library
        for name, function in library.functions.items():
            functions[name.lower()] = function

    def _commit(self, libraries: dict, functions: dict) -> None:
        """Make the new tables durable (the data directory's copy), then current."""
        payload = (rdb.dump_libraries([lib.code for lib in libraries.values()])
                   if libraries else b"")
        try:
            self.store.save_functions(payload)
        except OSError as exc:
            log.error("the function libraries could not be written: %s", exc)
            raise _fail(f"ERR kvd could not write its function libraries to the data "
                        f"directory ({exc.strerror or exc}); nothing changed") from None
        self.libraries, self.functions = libraries, functions
