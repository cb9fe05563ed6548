"""Lua 5.1 bytecode: a compiled script with its tail calls made plain calls.

Redis's Lua libraries are C functions, and a C function called in tail position
(`return bit.band(x)`) keeps its caller's frame, so an error in it names the
script's line. kvd's libraries are written in Lua (so that a script only ever holds
Lua values, and their work counts against the script's limits), and a Lua function
called in tail position replaces its caller's frame: the line would be lost. So a
compiled script has each OP_TAILCALL turned into OP_CALL; the OP_RETURN that the
compiler always puts after a tail call (`RETURN A 0`) returns the same values.
The one difference a script can see: unbounded tail recursion now ends, like
ordinary recursion, in a "stack overflow" error after some 20,000 levels.

The layout read here is lundump.c's (Lua 5.1): a header, then each function's
source, line range, sizes, code, constants, nested functions and debug data.
"""

from __future__ import annotations

import struct

OP_CALL, OP_TAILCALL = 28, 29
_OPCODE_MASK = 0x3F
_SIGNATURE = b"\x1bLua\x51\x00"


class BytecodeError(ValueError):
    """Not a Lua 5.1 chunk this module can read."""


class _Reader:
    """Walks a chunk function by function; patches tail calls in place and, when
    `strip`, copies everything but the debug data to `out` (luac -s)."""

    def __init__(self, chunk: bytearray, strip: bool = False) -> None:
        self.chunk = chunk
        if chunk[:6] != _SIGNATURE or len(chunk) < 12:
            raise BytecodeError("not a Lua 5.1 binary chunk")
        little, int_size, size_t_size, instruction_size, number_size = chunk[6:11]
        order = "<" if little else ">"
        sizes = {4: "i", 8: "q"}
        if int_size not in sizes or size_t_size not in sizes or instruction_size != 4:
            raise BytecodeError("unexpected sizes in the chunk header")
        self.int = struct.Struct(order + sizes[int_size])
        self.size_t = struct.Struct(order + sizes[size_t_size].upper())
        self.instruction = struct.Struct(order + "I")
        self.number_size = number_size
        self.pos = 12
        self.strip = strip
        self.out = bytearray(chunk[:12])
        self._copied = 12  # chunk[:_copied] is accounted for in `out`

    def _copy(self) -> None:
        """Bring `out` up to the current position (when stripping)."""
        if self.strip:
            self.out += self.chunk[self._copied:self.pos]
            self._copied = self.pos

    def _skip(self, replacement: bytes) -> None:
        """What lies between the last copy and here is left out, `replacement` instead."""
        self.out += replacement
        self._copied = self.pos

    def integer(self) -> int:
        value = self.int.unpack_from(self.chunk, self.pos)[0]
        self.pos += self.int.size
        return value

    def skip_string(self) -> None:
        length = self.size_t.unpack_from(self.chunk, self.pos)[0]
        self.pos += self.size_t.size + length

    def function(self) -> None:
        """Read one function (and those nested in it), patching its tail calls."""
        self.skip_string()  # source (kept: loaded, a stripped one becomes "=?")
        self.pos += 2 * self.int.size + 4  # line range; upvalues, parameters, vararg, stack
        count = self.integer()
        for _ in range(count):
            (instruction,) = self.instruction.unpack_from(self.chunk, self.pos)
            if instruction & _OPCODE_MASK == OP_TAILCALL:
                self.instruction.pack_into(self.chunk, self.pos,
                                           instruction & ~_OPCODE_MASK | OP_CALL)
            self.pos += 4
        for _ in range(self.integer()):  # constants
            kind = self.chunk[self.pos]
            self.pos += 1
            if kind == 1:  # boolean
                self.pos += 1
            elif kind == 3:  # number
                self.pos += self.number_size
            elif kind == 4:  # string
                self.skip_string()
            elif kind != 0:  # nil
                raise BytecodeError(f"unknown constant type {kind}")
        for _ in range(self.integer()):
            self.function()
        self._copy()
        lines = self.integer()  # (read before `self.pos +=` reads the position)
        self.pos += lines * self.int.size  # line info
        for _ in range(self.integer()):  # local variables
            self.skip_string()
            self.pos += 2 * self.int.size
        for _ in range(self.integer()):  # upvalue names
            self.skip_string()
        if self.pos > len(self.chunk):
            raise BytecodeError("truncated chunk")
        if self.strip:
            self._skip(self.int.pack(0) * 3)


def without_tail_calls(chunk: bytes, strip: bool = False) -> bytes:
    """`chunk` (string.dump's output) with every tail call made a plain call, and
    without its debug data (line numbers, names of locals and upvalues) when `strip`."""
    reader = _Reader(bytearray(chunk), strip)
    reader.function()
    if reader.pos != len(reader.chunk):
        raise BytecodeError("trailing bytes after the main function")
    if strip:
        reader._copy()
        return bytes(reader.out)
    return bytes(reader.chunk)
