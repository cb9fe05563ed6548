"""Strings as bit arrays (Redis's bitops.c): SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD.

Bit 0 is the most significant bit of the first byte, as in Redis. Reads past
the end see zeros; writes past it grow the string with zero bytes (up to
--max-value-size, which kvd reports as proto-max-bulk-len). The arithmetic is
done on Python integers over the bytes concerned, so no command loops over
bits one at a time.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_, xor
from typing import TYPE_CHECKING

from .. import notify
from ..protocol import parse_strict_int
from ..resp import ONE, ZERO, array, error, integer
from .common import NOT_INTEGER, SYNTAX, c_string, keyword
from .strings import range_of
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

BAD_OFFSET = error("ERR bit offset is not an integer or out of range")
BAD_BIT = error("ERR bit is not an integer or out of range")
BAD_TYPE = error("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
                 "supported but i64 is.")


def _offset(ctx: Context, text: bytes, bits: int = 0) -> int | None:
    """A bit offset (getBitOffsetFromArgument): `#n` means n * bits for BITFIELD."""
    by_width = bits > 0 and text[:1] == b"#"
    offset = parse_strict_int(text[1:] if by_width else text)
    if offset is None:
        return None
    if by_width:
        offset *= bits
    if offset < 0 or offset >> 3 >= ctx.config.max_value_size:
        return None
    return offset


def _read_bits(value: bytes | bytearray, offset: int, width: int) -> int:
    """The unsigned integer in bits offset .. offset+width-1 (zeros past the end)."""
    first, last = offset >> 3, (offset + width - 1) >> 3
    chunk = value[first:last + 1].ljust(last - first + 1, b"\0")
    return (int.from_bytes(chunk, "big") >> (7 - ((offset + width - 1) & 7))) & ((1 << width) - 1)


def _write_bits(value: bytearray, offset: int, width: int, number: int) -> None:
    """Store `number` (its low `width` bits) at bits offset..; `value` is long enough."""
    first, last = offset >> 3, (offset + width - 1) >> 3
    shift = 7 - ((offset + width - 1) & 7)
    mask = ((1 << width) - 1) << shift
    span = last - first + 1
    old = int.from_bytes(value[first:last + 1], "big")
    new = (old & ~mask) | ((number << shift) & mask)
    value[first:last + 1] = new.to_bytes(span, "big")


def setbit(ctx: Context, conn: Connection, args: list) -> bytes:
    offset = _offset(ctx, args[2])
    if offset is None:
        return BAD_OFFSET
    on = parse_strict_int(args[3])
    if on is None or on not in (0, 1):
        return BAD_BIT
    keyspace, key = ctx.keyspace, args[1]
    old = keyspace.peek(key)
    value = bytearray(old or b"")
    byte = offset >> 3
    grown = old is None or len(value) <= byte
    if grown:
        value.extend(bytes(byte + 1 - len(value)))
    mask = 1 << (7 - (offset & 7))
    was = value[byte] & mask
    if grown or bool(was) != bool(on):
        value[byte] = (value[byte] & ~mask) | (mask if on else 0)
        keyspace.put(key, bytes(value), keyspace.deadline(key), raw=True)
        keyspace.notify(notify.STRING, b"setbit", key)
    return ONE if was else ZERO


def getbit(ctx: Context, conn: Connection, args: list) -> bytes:
    offset = _offset(ctx, args[2])
    if offset is None:
        return BAD_OFFSET
    value = ctx.keyspace.read(args[1])
    if value is None or offset >> 3 >= len(value):
        return ZERO
    return ONE if value[offset >> 3] & (1 << (7 - (offset & 7))) else ZERO


def _unit(text: bytes) -> bool | None:
    """BIT -> True, BYTE -> False, anything else None."""
    unit = keyword(text)
    return True if unit == b"bit" else False if unit == b"byte" else None


def bitcount(ctx: Context, conn: Connection, args: list) -> bytes:
    """BITCOUNT key [start end [BYTE|BIT]]"""
    value = ctx.keyspace.read(args[1])
    if value is None:
        return ZERO
    if len(args) == 2:
        return integer(int.from_bytes(value, "big").bit_count())
    if len(args) not in (4, 5):
        return SYNTAX
    start, end = parse_strict_int(args[2]), parse_strict_int(args[3])
    if start is None or end is None:
        return NOT_INTEGER
    if start < 0 and end < 0 and start > end:
        return ZERO
    in_bits = len(args) == 5 and _unit(args[4])
    if in_bits is None:
        return SYNTAX
    start, end = range_of(len(value) * 8 if in_bits else len(value), start, end)
    if start > end:
        return ZERO
    if not in_bits:
        return integer(int.from_bytes(value[start:end + 1], "big").bit_count())
    return integer(_read_bits(value, start, end - start + 1).bit_count())


def bitpos(ctx: Context, conn: Connection, args: list) -> bytes:
    """BITPOS key bit [start [end [BYTE|BIT]]]"""
    bit = parse_strict_int(args[2])
    if bit is None:
        return NOT_INTEGER
    if bit not in (0, 1):
        return error("ERR The bit argument must be 1 or 0.")
    value = ctx.keyspace.read(args[1])
    if value is None:
        return integer(-1 if bit else 0)
    if len(args) > 6:
        return SYNTAX
    in_bits, end_given = False, len(args) >= 5
    start, end = 0, len(value) - 1
    if len(args) >= 4:
        given_start = parse_strict_int(args[3])
        if given_start is None:
            return NOT_INTEGER
        if len(args) == 6:
            unit = _unit(args[5])
            if unit is None:
                return SYNTAX
            in_bits = unit
        if end_given:
            given_end = parse_strict_int(args[4])
            if given_end is None:
                return NOT_INTEGER
            end = given_end
        start, end = range_of(len(value) * 8 if in_bits else len(value), given_start, end)
    if start > end:
        return integer(-1)
    first_bit, last_bit = (start, end) if in_bits else (start * 8, end * 8 + 7)
    found = _first_bit(value, bit, first_bit, last_bit)
    if found is None:  # past the end: the zeros beyond it, unless the range was given
        found = -1 if bit or end_given else last_bit + 1
    return integer(found)


def _first_bit(value: bytes, bit: int, first_bit: int, last_bit: int) -> int | None:
    """The position of the first `bit` in first_bit..last_bit, or None."""
    first, last = first_bit >> 3, last_bit >> 3
    chunk = bytearray(value[first:last + 1])
    head = 0xFF >> (first_bit & 7)  # the first byte's bits in the range
    tail = (0xFF << (7 - (last_bit & 7))) & 0xFF  # the last byte's
    if bit:
        chunk[0] &= head
        chunk[-1] &= tail
    else:
        chunk[0] |= ~head & 0xFF
        chunk[-1] |= ~tail & 0xFF
    skip = b"\0" if bit else b"\xff"
    rest = chunk.lstrip(skip)
    if not rest:
        return None
    byte = rest[0] if bit else ~rest[0] & 0xFF
    return (first + len(chunk) - len(rest)) * 8 + 8 - byte.bit_length()


_BITOPS = {b"and": and_, b"or": or_, b"xor": xor, b"not": None}


def bitop(ctx: Context, conn: Connection, args: list) -> bytes:
    """BITOP AND|OR|XOR|NOT destkey key [key ...]: the result replaces destkey (its TTL
    too, as SET); an empty result deletes it."""
    name = keyword(args[1])
    if name not in _BITOPS:
        return SYNTAX
    if name == b"not" and len(args) != 4:
        return error("ERR BITOP NOT must be called with a single source key.")
    keyspace = ctx.keyspace
    sources = [keyspace.read(key) or b"" for key in args[3:]]
    size = max(len(source) for source in sources)
    if not size:
        keyspace.remove(args[2])
        return ZERO
    numbers = [int.from_bytes(source.ljust(size, b"\0"), "big") for source in sources]
    if name == b"not":
        result = ~numbers[0] & ((1 << (8 * size)) - 1)
    else:
        result = reduce(_BITOPS[name] or and_, numbers)  # (NOT is not reduced)
    keyspace.put(args[2], result.to_bytes(size, "big"), raw=True)
    keyspace.notify(notify.STRING, b"set", args[2])
    return integer(size)


class _FieldOp:
    __slots__ = ("kind", "signed", "width", "offset", "number", "overflow")

    def __init__(self, kind, signed, width, offset, number, overflow) -> None:
        self.kind, self.signed, self.width = kind, signed, width
        self.offset, self.number, self.overflow = offset, number, overflow


def _field_type(text: bytes) -> tuple[bool, int] | None:
    """i1..i64 or u1..u63: (signed, width)."""
    sign = text[:1]
    width = parse_strict_int(c_string(text[1:]))
    if sign not in (b"i", b"u") or width is None or width < 1:
        return None
    if width > (64 if sign == b"i" else 63):
        return None
    return sign == b"i", width


def _parse_fields(ctx: Context, args: list) -> list[_FieldOp] | bytes:
    ops: list[_FieldOp] = []
    overflow = b"wrap"
    j = 2
    while j < len(args):
        left = len(args) - j - 1
        name = keyword(args[j])
        if name == b"overflow" and left >= 1:
            overflow = keyword(args[j + 1])
            if overflow not in (b"wrap", b"sat", b"fail"):
                return error("ERR Invalid OVERFLOW type specified")
            j += 2
            continue
        if not ((name == b"get" and left >= 2) or (name in (b"set", b"incrby") and left >= 3)):
            return SYNTAX
        kind = _field_type(args[j + 1])
        if kind is None:
            return BAD_TYPE
        signed, width = kind
        offset = _offset(ctx, args[j + 2], width)
        if offset is None:
            return BAD_OFFSET
        number: int | None = 0
        if name != b"get":
            number = parse_strict_int(args[j + 3])
            if number is None:
                return NOT_INTEGER
        ops.append(_FieldOp(name, signed, width, offset, number, overflow))
        j += 3 if name == b"get" else 4
    return ops


def _limited(op: _FieldOp, result: int) -> int | None:
    """`result` brought into the field's range by the overflow policy; None for FAIL
    when it is out of range."""
    if op.signed:
        low, high = -(1 << (op.width - 1)), (1 << (op.width - 1)) - 1
    else:
        low, high = 0, (1 << op.width) - 1
    if low <= result <= high:
        return result
    if op.overflow == b"fail":
        return None
    if op.overflow == b"sat":
        return high if result > high else low
    wrapped = result & ((1 << op.width) - 1)
    if op.signed and wrapped > high:
        wrapped -= 1 << op.width
    return wrapped


def _signed(op: _FieldOp, raw: int) -> int:
    if op.signed and raw >> (op.width - 1):
        return raw - (1 << op.width)
    return raw


def bitfield(ctx: Context, conn: Connection, args: list) -> bytes:
    """BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset
    increment] [OVERFLOW WRAP|SAT|FAIL] ...; BITFIELD_RO takes GETs only."""
    ops = _parse_fields(ctx, args)
    if isinstance(ops, bytes):
        return ops
    keyspace, key = ctx.keyspace, args[1]
    writes = [op for op in ops if op.kind != b"get"]
    if not writes:
        stored_bits = keyspace.read(key) or b""
        return array([integer(_signed(op, _read_bits(stored_bits, op.offset, op.width)))
                      for op in ops])
    if args[0].upper() == b"BITFIELD_RO":
        return error("ERR BITFIELD_RO only supports the GET subcommand")
    old = keyspace.peek(key)
    value = bytearray(old or b"")
    needed = (max(op.offset + op.width - 1 for op in writes) >> 3) + 1
    if len(value) < needed:
        value.extend(bytes(needed - len(value)))
    replies = []
    for op in ops:
        current = _signed(op, _read_bits(value, op.offset, op.width))
        if op.kind == b"get":
            replies.append(integer(current))
            continue
        if op.signed or op.kind == b"incrby":
            wanted = current + op.number if op.kind == b"incrby" else op.number
        else:  # SET of an unsigned field reads the value as C's uint64_t
            wanted = op.number & ((1 << 64) - 1)
        stored = _limited(op, wanted)
        if stored is None:
            replies.append(conn.resp.null)
            continue
        _write_bits(value, op.offset, op.width, stored)
        replies.append(integer(stored if op.kind == b"incrby" else current))
    if old is None or bytes(value) != old:
        keyspace.put(key, bytes(value), keyspace.deadline(key), raw=True)
        keyspace.notify(notify.STRING, b"setbit", key)
    return array(replies)


COMMANDS = [
    row("setbit", setbit),
    row("getbit", getbit),
    row("bitcount", bitcount),
    row("bitpos", bitpos),
    row("bitop", bitop),
    row("bitfield", bitfield),
    row("bitfield_ro", bitfield),
]
