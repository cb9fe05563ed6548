"""The libraries Redis links into its Lua, which lupa's Lua does not have: `cjson`,
`cmsgpack`, `bit` (LuaBitOp) and `struct`, as small Python equivalents.

A function fails by raising LibraryError: Lua sees an error object, which the
sandbox's error handler turns into the C libraries' message, prefixed with the
script's line as their `luaL_error` does. Output formats follow the C libraries Redis
ships: cjson writes numbers with %.14g and escapes `/`; cmsgpack picks the
smallest encoding (a float32 when it loses nothing); bit works on signed
32-bit integers, rounding as LuaBitOp does.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import struct as pystruct
from typing import Callable

import msgpack
from lupa import lua51

lua_type = lua51.lua_type


class LibraryError(Exception):
    """A library function's error message, raised into the script."""


class Libraries:
    """The library functions, bound to one Lua state (to build tables in it)."""

    def __init__(self, table_from: Callable) -> None:
        self.table_from = table_from  # the Lua state's: builds tables in it
        self.null = None  # cjson.null, a userdata the sandbox makes (set by it)

    def tables(self) -> dict[str, dict[bytes, Callable]]:
        return {
            "cjson": {b"encode": self.cjson_encode, b"decode": self.cjson_decode},
            "cmsgpack": {b"pack": self.msgpack_pack, b"unpack": self.msgpack_unpack},
            "bit": {b"tohex": _tohex, **{name.encode(): _bit(fn, name)
                                         for name, fn in _BIT.items()}},
            "struct": {b"pack": _struct_pack, b"unpack": _struct_unpack, b"size": _struct_size},
        }

    # -- cjson --------------------------------------------------------------------

    def cjson_encode(self, *args):
        if len(args) != 1:
            raise LibraryError("bad argument #1 to 'encode' (expected 1 argument)")
        try:
            return _json_value(args[0], 0)
        except ValueError as exc:
            raise LibraryError(str(exc))

    def cjson_decode(self, *args):
        if len(args) != 1 or not isinstance(args[0], (bytes, int, float)):
            raise LibraryError("bad argument #1 to 'decode' (string expected)")
        text = args[0] if isinstance(args[0], bytes) else str(args[0]).encode()
        try:
            value = json.loads(text.decode("utf-8", errors="surrogateescape"),
                               parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise LibraryError(f"Expected value but found invalid token ({exc})")
        return self._lua(value)

    def _lua(self, value):
        """A decoded JSON value as Lua values (tables built in the Lua state)."""
        if value is None:
            return self.null
        if isinstance(value, str):
            return value.encode("utf-8", errors="surrogateescape")
        if isinstance(value, list):
            return self.table_from([self._lua(v) for v in value])
        if isinstance(value, dict):
            return self.table_from({k.encode("utf-8", errors="surrogateescape"): self._lua(v)
                                    for k, v in value.items()})
        return value

    # -- cmsgpack -------------------------------------------------------------------

    def msgpack_pack(self, *args):
        if not args:
            raise LibraryError("MessagePack pack needs input.")
        out = bytearray()
        try:
            for arg in args:
                _mp_pack(arg, out, 0)
        except ValueError as exc:
            raise LibraryError(str(exc))
        return bytes(out)

    def msgpack_unpack(self, *args):
        if len(args) != 1 or not isinstance(args[0], bytes):
            raise LibraryError("bad argument #1 to 'unpack' (string expected)")
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(args[0])
        try:
            values = [self._lua_msgpack(v) for v in unpacker]
        except (ValueError, msgpack.UnpackException) as exc:
            raise LibraryError(f"Bad data format in input. ({exc})")
        return tuple(values)

    def _lua_msgpack(self, value):
        if isinstance(value, (list, tuple)):
            return self.table_from([self._lua_msgpack(v) for v in value])
        if isinstance(value, dict):
            return self.table_from({k: self._lua_msgpack(v) for k, v in value.items()
                                    if k is not None})
        return value


def _no_constant(name: str):
    raise ValueError(f"invalid token '{name}'")


# -- cjson encoding -------------------------------------------------------------------

_ESCAPES = {i: "\\u%04x" % i for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r",
                 0x22: '\\"', 0x5C: "\\\\", 0x2F: "\\/", 0x7F: "\\u007f"})
_ESCAPE_TABLE = {k: v.encode() for k, v in _ESCAPES.items()}


def _json_string(value: bytes) -> bytes:
    return b'"' + b"".join(_ESCAPE_TABLE.get(b, bytes((b,))) for b in value) + b'"'


def _json_number(value: float) -> bytes:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("Cannot serialise number: must not be NaN or Inf")
    return (b"%.14g" % value)


def _json_value(value, depth: int) -> bytes:
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return _json_number(value)
    if isinstance(value, bytes):
        return _json_string(value)
    kind = lua_type(value)
    if kind == "table":
        if depth >= 1000:
            raise ValueError(f"Cannot serialise, excessive nesting ({depth + 1})")
        items = list(value.items())
        length = _array_length(items)
        if length is not None:
            slots = dict(items)
            return b"[" + b",".join(_json_value(slots.get(i), depth + 1)
                                    for i in range(1, length + 1)) + b"]"
        parts = []
        for key, item in items:
            if isinstance(key, (int, float)) and not isinstance(key, bool):
                key = _json_number(key)
            elif not isinstance(key, bytes):
                raise ValueError("Cannot serialise " + str(lua_type(key) or "boolean")
                                 + ": table key must be a number or string")
            parts.append(_json_string(key) + b":" + _json_value(item, depth + 1))
        return b"{" + b",".join(parts) + b"}"
    if kind == "userdata":
        return b"null"  # cjson.null
    raise ValueError(f"Cannot serialise {kind}: type not supported")


def _highest_index(items: list) -> int | None:
    """The largest key of a table's (key, value) pairs if every key is a positive
    integer (an array, perhaps with holes), else None."""
    highest = 0
    for key, _ in items:
        if isinstance(key, bool) or not isinstance(key, (int, float)) or key < 1 \
                or key != int(key):
            return None
        highest = max(highest, int(key))
    return highest


def _array_length(items: list) -> int | None:
    """cjson's test: keys all positive integers, not excessively sparse -> the length."""
    if not items:
        return None  # an empty table is an object, as cjson writes it
    highest = _highest_index(items)
    if highest is None:
        return None
    if highest > len(items) * 2 and highest > 10:
        raise ValueError("Cannot serialise table: excessively sparse array")
    return highest


# -- cmsgpack packing (lua_cmsgpack.c's choices of encoding) ----------------------------

def _mp_pack(value, out: bytearray, depth: int) -> None:
    if value is None:
        out += b"\xc0"
    elif value is True:
        out += b"\xc3"
    elif value is False:
        out += b"\xc2"
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)
                                         or abs(value) >= 2**63):
            single = pystruct.unpack(">f", pystruct.pack(">f", value))[0] if math.isfinite(
                value) and abs(value) < 3.4e38 else None
            if single == value or (math.isnan(value)):
                out += b"\xca" + pystruct.pack(">f", value)
            else:
                out += b"\xcb" + pystruct.pack(">d", value)
        else:
            _mp_int(int(value), out)
    elif isinstance(value, bytes):
        n = len(value)
        if n < 32:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += b"\xd9" + bytes((n,))
        elif n <= 0xFFFF:
            out += b"\xda" + pystruct.pack(">H", n)
        else:
            out += b"\xdb" + pystruct.pack(">I", n)
        out += value
    elif lua_type(value) == "table":
        if depth >= 16:  # cmsgpack's LUACMSGPACK_MAX_NESTING: deeper tables become nil
            out += b"\xc0"
            return
        items = list(value.items())
        length = _mp_array_length(items)
        if length is not None:
            slots = dict(items)
            _mp_header(length, out, 0x90, b"\xdc", b"\xdd")
            for i in range(1, length + 1):
                _mp_pack(slots.get(i), out, depth + 1)
        else:
            _mp_header(len(items), out, 0x80, b"\xde", b"\xdf")
            for key, item in items:
                _mp_pack(key, out, depth + 1)
                _mp_pack(item, out, depth + 1)
    else:
        out += b"\xc0"  # functions, userdata: nil, as cmsgpack


def _mp_array_length(items: list) -> int | None:
    """cmsgpack's test: an array if its keys are exactly 1..n."""
    if not items:
        return 0
    highest = _highest_index(items)
    return highest if highest == len(items) else None


def _mp_header(n: int, out: bytearray, fix: int, b16: bytes, b32: bytes) -> None:
    if n < 16:
        out.append(fix | n)
    elif n <= 0xFFFF:
        out += b16 + pystruct.pack(">H", n)
    else:
        out += b32 + pystruct.pack(">I", n)


def _mp_int(n: int, out: bytearray) -> None:
    if n >= 0:
        if n <= 127:
            out.append(n)
        elif n <= 0xFF:
            out += b"\xcc" + bytes((n,))
        elif n <= 0xFFFF:
            out += b"\xcd" + pystruct.pack(">H", n)
        elif n <= 0xFFFFFFFF:
            out += b"\xce" + pystruct.pack(">I", n)
        else:
            out += b"\xcf" + pystruct.pack(">Q", n)
    elif n >= -32:
        out += pystruct.pack(">b", n)
    elif n >= -128:
        out += b"\xd0" + pystruct.pack(">b", n)
    elif n >= -32768:
        out += b"\xd1" + pystruct.pack(">h", n)
    elif n >= -(2**31):
        out += b"\xd2" + pystruct.pack(">i", n)
    else:
        out += b"\xd3" + pystruct.pack(">q", n)


# -- bit (LuaBitOp) --------------------------------------------------------------------

def _tobit(x: float) -> int:
    n = int(round(x)) & 0xFFFFFFFF  # LuaBitOp adds 2^52+2^51: round half to even
    return n - (1 << 32) if n & 0x80000000 else n


def _signed(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def _rol(x: int, n: int) -> int:
    n &= 31
    x &= 0xFFFFFFFF
    return _signed((x << n) | (x >> (32 - n)))


_BIT = {
    "tobit": lambda x: x,
    "bnot": lambda x: _signed(~x),
    "band": lambda x, *r: _signed(functools.reduce(operator.and_, r, x)),
    "bor": lambda x, *r: _signed(functools.reduce(operator.or_, r, x)),
    "bxor": lambda x, *r: _signed(functools.reduce(operator.xor, r, x)),
    "lshift": lambda x, n: _signed(x << (n & 31)),
    "rshift": lambda x, n: _signed((x & 0xFFFFFFFF) >> (n & 31)),
    "arshift": lambda x, n: _signed(x >> (n & 31)),
    "rol": _rol,
    "ror": lambda x, n: _rol(x, 32 - (n & 31)),
    "bswap": lambda x: _signed(int.from_bytes((x & 0xFFFFFFFF).to_bytes(4, "little"), "big")),
}
_BIT_ARITY = {"tobit": 1, "bnot": 1, "bswap": 1, "lshift": 2, "rshift": 2, "arshift": 2,
              "rol": 2, "ror": 2}


def _bit(fn: Callable, name: str) -> Callable:
    """A LuaBitOp function: every argument a number, normalised to a signed 32-bit int."""
    def call(*args):
        numbers = []
        for i in range(max(len(args), _BIT_ARITY.get(name, 1))):
            number = _number(args[i]) if i < len(args) else None
            if number is None:
                raise _typerror(name, i + 1, "number", _got(args, i))
            numbers.append(_tobit(number))
        return fn(*numbers)

    return call


def _tohex(*args):
    x = _number(args[0]) if args else None
    if x is None:
        raise _typerror("tohex", 1, "number", _got(args, 0))
    n = _tobit(_number(args[1])) if len(args) > 1 and _number(args[1]) is not None else 8
    digits = "0123456789abcdef"
    if n < 0:
        n, digits = -n, "0123456789ABCDEF"
    n = min(n, 8)
    value = _tobit(x) & 0xFFFFFFFF
    text = "".join(digits[(value >> (4 * i)) & 15] for i in range(n - 1, -1, -1))
    return text.encode()


def _number(arg) -> float | None:
    if isinstance(arg, bool) or arg is None:
        return None
    if isinstance(arg, (int, float)):
        return arg
    if isinstance(arg, bytes):
        try:
            return float(arg.strip()) if not arg.strip().lower().startswith(b"0x") \
                else float(int(arg.strip(), 16))
        except ValueError:
            return None
    return None


def _typerror(function: str, position: int, expected: str, got: str) -> LibraryError:
    """Lua's luaL_typerror, for argument `position` (from 1) of `function`."""
    return LibraryError(f"bad argument #{position} to '{function}' ({expected} expected, got {got})")


def _got(args: tuple, index: int) -> str:
    """The type of args[index] as luaL_check* names it; "no value" past the last one."""
    return "no value" if index >= len(args) else _type_name(args[index])


def _type_name(arg) -> str:
    if arg is None:
        return "nil"
    if isinstance(arg, bool):
        return "boolean"
    if isinstance(arg, bytes):
        return "string"
    if isinstance(arg, (int, float)):
        return "number"
    return lua_type(arg) or "userdata"


# -- struct (Roberto Ierusalimschy's library, as Redis ships it) -------------------------

_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "i": 4, "I": 4,
          "f": 4, "d": 8, "x": 1, "s": 0, "c": 0}


def _parse_format(fmt: bytes, name: str):
    """(option, size, little_endian, align) tuples, or raises ValueError."""
    little, max_align = True, 1
    i, text = 0, fmt.decode("latin-1")
    while i < len(text):
        opt = text[i]
        i += 1
        digits = ""
        while i < len(text) and text[i].isdigit():
            digits += text[i]
            i += 1
        if opt == " ":
            continue
        if opt == "<":
            little = True
        elif opt == ">":
            little = False
        elif opt == "=":
            little = True
        elif opt == "!":
            max_align = int(digits) if digits else 8
        elif opt in _SIZES:
            size = _SIZES[opt]
            if opt in "iI" and digits:
                size = int(digits)
                if not 1 <= size <= 32:
                    raise ValueError(f"integral size {size} is larger than limit of 32")
            if opt == "c":
                size = int(digits) if digits else 1
            yield opt, size, little, min(size, max_align) if opt not in "sc" else 1
        else:
            raise ValueError(f"bad argument #1 to '{name}' (invalid format option '{opt}')")


def _pad(position: int, align: int) -> int:
    return (-position) % align if align > 1 else 0


def _struct_pack(*args):
    if not args or not isinstance(args[0], bytes):
        raise LibraryError("bad argument #1 to 'pack' (string expected)")
    out = bytearray()
    arg = 1
    try:
        for opt, size, little, align in _parse_format(args[0], "pack"):
            out += b"\0" * _pad(len(out), align)
            if opt == "x":
                out += b"\0"
                continue
            value = args[arg] if arg < len(args) else None
            arg += 1
            if opt in "fd":
                number = _number(value)
                if number is None:  # (struct names a missing argument "nil", as Redis's)
                    raise _typerror("pack", arg, "number", _type_name(value))
                out += pystruct.pack(("<" if little else ">") + opt, number)
            elif opt in "sc":
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = (b"%.14g" % value)
                if not isinstance(value, bytes):
                    raise _typerror("pack", arg, "string", _type_name(value))
                if opt == "s":
                    out += value + b"\0"
                else:
                    if size == 0:
                        size = len(value)
                    if len(value) < size:
                        raise LibraryError(f"bad argument #{arg} to 'pack' (string too short)")
                    out += value[:size]
            else:
                number = _number(value)
                if number is None:
                    raise _typerror("pack", arg, "number", _type_name(value))
                n = int(number) & ((1 << (8 * size)) - 1)
                out += n.to_bytes(size, "little" if little else "big")
    except ValueError as exc:
        raise LibraryError(str(exc))
    return bytes(out)


def _struct_unpack(*args):
    if len(args) < 2 or not isinstance(args[0], bytes) or not isinstance(args[1], bytes):
        raise LibraryError("bad argument #2 to 'unpack' (string expected)")
    fmt, data = args[0], args[1]
    position = int(_number(args[2]) or 1) - 1 if len(args) > 2 else 0
    if position < 0:
        raise LibraryError("bad argument #3 to 'unpack' (offset must be 1 or greater)")
    values: list = []
    try:
        for opt, size, little, align in _parse_format(fmt, "unpack"):
            position += _pad(position, align)
            if opt == "x":
                position += 1
                continue
            if opt == "s":
                end = data.find(b"\0", position)
                if end < 0:
                    raise LibraryError("bad argument #2 to 'unpack' (unfinished string in data)")
                values.append(data[position:end])
                position = end + 1
                continue
            if opt == "c" and size == 0:
                if not values or not isinstance(values[-1], (int, float)):
                    raise LibraryError("format 'c0' needs a previous size")
                size = int(values.pop())
            if position + size > len(data):
                raise LibraryError("bad argument #2 to 'unpack' (data string too short)")
            chunk = data[position:position + size]
            position += size
            if opt == "c":
                values.append(chunk)
            elif opt in "fd":
                values.append(pystruct.unpack(("<" if little else ">") + opt, chunk)[0])
            else:
                values.append(int.from_bytes(chunk, "little" if little else "big",
                                             signed=opt in "bhliT" and opt != "T"))
    except ValueError as exc:
        raise LibraryError(str(exc))
    return (*values, position + 1)


def _struct_size(*args):
    if not args or not isinstance(args[0], bytes):
        raise LibraryError("bad argument #1 to 'size' (string expected)")
    total = 0
    try:
        for opt, size, _little, align in _parse_format(args[0], "size"):
            if opt == "s" or (opt == "c" and size == 0):
                raise LibraryError("options 'c0' - 's' have undefined sizes")
            total += _pad(total, align) + size
    except ValueError as exc:
        raise LibraryError(str(exc))
    return total
