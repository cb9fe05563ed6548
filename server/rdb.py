"""DUMP payloads: Redis's serialization of one value, for DUMP, RESTORE and MIGRATE.

A payload is the value as an RDB file stores it -- a type byte, then the
value in one of RDB's encodings -- followed by the RDB version (2 bytes, little
endian) and a CRC-64 (Jones polynomial, as Redis's crc64.c) of everything
before it (8 bytes, little endian). This module has the framing, the CRC and
RDB's strings (the collections' types are rdb_objects.py's), in all of RDB's
string encodings:

* a length-prefixed string;
* an integer of 8, 16 or 32 bits (what Redis writes for short decimal strings);
* an LZF-compressed string (what Redis writes for compressible values over 20
  bytes).

kvd writes the first two and never compresses: Redis reads such payloads like
its own, and compressing in pure Python would hold the loop far longer than
the bytes it saves on a local socket. The text of each refusal is Redis's.
"""

from __future__ import annotations

import struct

import anycrc

RDB_VERSION = 10  # Redis 7.0's
RDB_TYPE_STRING = 0
_ENC_INT8, _ENC_INT16, _ENC_INT32, _ENC_LZF = 0, 1, 2, 3


class PayloadError(ValueError):
    """A payload kvd cannot restore; str() is the error reply's text."""


# -- CRC-64 (Jones, reflected: poly 0xad93d23594c935a9, init 0, no final xor) --------------

_CRC64_REDIS = anycrc.Model("CRC64-REDIS")  # C (Mark Adler's crcany): about 10 GB/s


def crc64(data: bytes | memoryview, crc: int = 0) -> int:
    """Redis's crc64 (crc64.c), of `data` continuing from `crc`."""
    return _CRC64_REDIS.calc(data, crc)


# -- writing ------------------------------------------------------------------------------

def _length(n: int) -> bytes:
    """RDB's length prefix: 6 bits, 14 bits, or 32/64 bits big endian."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return bytes([0x40 | n >> 8, n & 0xFF])
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _canonical_int(value: bytes) -> int | None:
    """The integer a string spells exactly as Redis would print it back, else None."""
    if not 0 < len(value) <= 11 or not value.lstrip(b"-").isdigit():
        return None
    number = int(value)
    return number if b"%d" % number == value else None


def encode_string(value: bytes) -> bytes:
    """A string as RDB stores it (rdbSaveRawString, without compression)."""
    number = _canonical_int(value)
    if number is not None:
        if -(1 << 7) <= number < 1 << 7:
            return struct.pack("<Bb", 0xC0 | _ENC_INT8, number)
        if -(1 << 15) <= number < 1 << 15:
            return struct.pack("<Bh", 0xC0 | _ENC_INT16, number)
        if -(1 << 31) <= number < 1 << 31:
            return struct.pack("<Bi", 0xC0 | _ENC_INT32, number)
    return _length(len(value)) + value


def dump_parts(value: bytes) -> list[bytes]:
    """The DUMP payload of a string value, in pieces to be joined once (with a reply's
    header, say): a 60 MB value is then copied once, not once per concatenation."""
    kind = bytes([RDB_TYPE_STRING])
    if len(value) <= 11:  # short: perhaps an integer encoding
        parts = [kind + encode_string(value)]
    else:
        parts = [kind + _length(len(value)), value]
    parts.append(struct.pack("<H", RDB_VERSION))
    crc = 0
    for part in parts:
        crc = crc64(part, crc)
    parts.append(struct.pack("<Q", crc))
    return parts


def dump(value: bytes) -> bytes:
    """The DUMP payload of a string value."""
    return b"".join(dump_parts(value))


# -- reading ------------------------------------------------------------------------------

def verify(payload: bytes) -> None:
    """Redis's verifyDumpPayload: a known RDB version and a matching checksum."""
    if len(payload) < 10:
        raise PayloadError("ERR DUMP payload version or checksum are wrong")
    version, crc = struct.unpack("<HQ", payload[-10:])
    if version > RDB_VERSION or crc64(memoryview(payload)[:-8]) != crc:
        raise PayloadError("ERR DUMP payload version or checksum are wrong")


def _read_length(body: memoryview, at: int) -> tuple[int, bool, int]:
    """(length or encoding, is an encoding, next position)."""
    first = body[at]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, at + 1
    if kind == 1:
        return (first & 0x3F) << 8 | body[at + 1], False, at + 2
    if kind == 3:
        return first & 0x3F, True, at + 1
    if first == 0x80:
        return struct.unpack_from(">I", body, at + 1)[0], False, at + 5
    if first == 0x81:
        return struct.unpack_from(">Q", body, at + 1)[0], False, at + 9
    raise PayloadError("ERR Bad data format")


def _read_string(body: memoryview, at: int) -> tuple[bytes, int]:
    length, encoded, at = _read_length(body, at)
    if not encoded:
        if at + length > len(body):
            raise PayloadError("ERR Bad data format")
        return bytes(body[at:at + length]), at + length
    if length in (_ENC_INT8, _ENC_INT16, _ENC_INT32):
        fmt = ("<b", "<h", "<i")[length]
        (number,) = struct.unpack_from(fmt, body, at)
        return b"%d" % number, at + struct.calcsize(fmt)
    if length == _ENC_LZF:
        compressed, _, at = _read_length(body, at)
        size, _, at = _read_length(body, at)
        if at + compressed > len(body):
            raise PayloadError("ERR Bad data format")
        value = lzf_decompress(bytes(body[at:at + compressed]), size)
        return value, at + compressed
    raise PayloadError("ERR Bad data format")


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (liblzf's lzf_decompress, as Redis bundles it): literal runs and back
    references; anything out of bounds or of the wrong final size is refused."""
    out = bytearray()
    at, end = 0, len(data)
    while at < end:
        control = data[at]
        at += 1
        if control < 32:  # a literal run of control + 1 bytes
            run = control + 1
            if at + run > end:
                raise PayloadError("ERR Bad data format")
            out += data[at:at + run]
            at += run
            continue
        length = control >> 5
        if length == 7:
            length += data[at]
            at += 1
        start = len(out) - ((control & 0x1F) << 8) - 1 - data[at]
        at += 1
        length += 2
        if start < 0:
            raise PayloadError("ERR Bad data format")
        distance = len(out) - start
        if distance >= length:
            out += out[start:start + length]
        else:  # the copy overlaps what it writes: the pattern repeats
            pattern = bytes(out[start:])
            out += (pattern * (length // distance + 1))[:length]
        if len(out) > size:
            raise PayloadError("ERR Bad data format")
    if len(out) != size:
        raise PayloadError("ERR Bad data format")
    return bytes(out)


# -- function libraries (FUNCTION DUMP / RESTORE) ------------------------------------------

RDB_OPCODE_FUNCTION_PRE_GA = 246  # Redis 7.0's release candidates' format: not read
RDB_OPCODE_FUNCTION2 = 245


def dump_libraries(codes: list[bytes]) -> bytes:
    """FUNCTION DUMP's payload: each library's code after the FUNCTION2 opcode (Redis's
    rdbSaveFunctions), then the RDB version and the CRC-64, as a key's DUMP."""
    body = b"".join(bytes([RDB_OPCODE_FUNCTION2]) + _length(len(code)) + code
                    for code in codes) + struct.pack("<H", RDB_VERSION)
    return body + struct.pack("<Q", crc64(body))


def load_libraries(payload: bytes) -> list[bytes]:
    """The library codes of a FUNCTION DUMP payload; PayloadError with Redis's text."""
    try:
        verify(payload)
    except PayloadError:
        raise PayloadError("ERR DUMP payload version or checksum are wrong") from None
    body = memoryview(payload)[:-10]
    codes, at = [], 0
    while at < len(body):
        kind = body[at]
        if kind == RDB_OPCODE_FUNCTION_PRE_GA:
            raise PayloadError("ERR kvd does not read the libraries of Redis 7.0's release "
                               "candidates (FUNCTION opcode 246)")
        if kind != RDB_OPCODE_FUNCTION2:
            raise PayloadError("ERR given type is not a function")
        try:
            code, at = _read_string(body, at + 1)
        except (IndexError, struct.error, PayloadError):
            raise PayloadError("ERR Failed loading library payload") from None
        codes.append(code)
    return codes
