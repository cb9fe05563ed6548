"""The record format of the log engine's segment files, and the code that reads it.

A segment file is records back to back, with no file header (the format
version lives in the data directory's META file). One record, all integers
big-endian:

    offset  size  field
    0       4     crc         CRC-32 (zlib) of bytes [4, 12 + n): the whole record
                              after this field, header and body
    4       4     length      n, the size of the body in bytes
    8       4     length_crc  CRC-32 of the 4 `length` bytes alone
    12      n     body        msgpack array [timestamp_ms, flags, expires_at_ms, key, value]
                              or, format 4, [timestamp_ms, flags, expires_at_ms, key, value,
                              slot] for a record of a database slot other than 0

* `timestamp_ms`: wall-clock time of the write, read once per group of writes flushed
  together (informational; replay order is file order, never timestamps).
* `flags`: bit 0 set = tombstone (the key was deleted; `value` is b"");
  bit 1 set = write-batch marker (below); bit 2 set = a deadline change (below).
* `expires_at_ms`: the key's deadline, an absolute Unix time in milliseconds;
  0 = never. In a batch marker: the byte length of the batch that follows it.
* `key`, `value`: msgpack bin, any bytes including empty.
* flags bit 4 (format 4): the value is of another type than string (a hash, a list, a
  set, a sorted set), packed whole by the server; bits 5-7 say which (1-4). Such a record
  is replayed, compacted and expired as a string's is; the key directory remembers the
  type of every such key, so that reading its type needs no disk access.
* `slot` (format 4): the storage slot of the key's database; left out for slot 0,
  so a format-3 record is a format-4 record of slot 0 and a format-3 data directory
  opens with nothing rewritten.

Collections of element records (format 4; docs/data-model.md): a large hash (later a
list, set or sorted set) is a *metadata record* and one *element record* per element.

* metadata: flags bit 8 with bits 4-7 as a typed value's, body `[timestamp_ms, flags,
  expires_at_ms, key, b"", slot, version]`. It is the key's record (deadline changes,
  tombstones and the key directory treat it as any value's); `version` names this
  incarnation of the key, a number that only grows.
* element: flags bit 9 (with bit 0 for a deleted element), body `[timestamp_ms, flags,
  0, key, value, slot, version, field]`. It belongs to the key's incarnation `version`
  only: once the key is deleted, expired, flushed or written again, its elements are
  of a version no metadata names, ignored by replay and dropped by compaction -- a
  collection of any size goes with one small record.

Databases (format 4; the design is in docs/data-model.md): a client's logical
database has its keys in a slot, a number never reused. The map from logical
database to slot is a record of flags bit 3 whose key is msgpack
`[next_slot, slot of database 0, slot of database 1, ...]`. FLUSHDB maps the
database to a fresh slot, FLUSHALL every database, SWAPDB exchanges two entries:
one small record, whatever the databases hold. On replay a map record drops every
slot it no longer maps (and with it the keys of the flushed database); compaction
writes the map first in its output and copies only the live records of mapped slots.

Write batches (format version 2): the records of one batch (MSET; later
MULTI/EXEC and scripts) are preceded by a marker record -- flags bit 1, key
and value empty, `expires_at_ms` = the total size in bytes of the batch's
records, which follow it at once, in the same segment. The records
themselves are ordinary. At start-up a batch whose bytes do not all lie
within the intact records of the newest segment is unfinished: the segment
is truncated at its marker, so a batch is replayed whole or not at all (as
rosedb's batch-finished record does it, but with the length up front, so a
scan needs no lookahead). A marker is never a key: it gets no hint row and
no key directory entry, so compaction never copies one.

Deadline changes (format version 3): EXPIRE, PERSIST and GETEX change a
key's deadline without rewriting its value: a record with flags bit 2, the
key, an empty value and the new deadline in `expires_at_ms` (0: none). On
replay it sets the deadline of the key as the records before it left it.
At the end of start-up every key whose deadline has passed is dropped, so a
value record that has expired acts as a delete, never as the absence of a
record (an older value of the key cannot come back). Compaction copies a
live value with the key's current deadline, re-encoding it where a later
deadline change made the one in the record stale, and copies no deadline
changes.

Why `length_crc`: a record cut short at the tail (a crash mid-write) and a
flipped bit in `length` in the middle of a file both look like "the length
runs past the end of the file". The separate check tells them apart, so a
torn tail can be truncated safely while damage anywhere else is reported,
never silently cut away.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

import msgpack

# zlib-ng's CRC-32 is zlib's (same polynomial, same values) with SIMD: 2.4x faster on a
# small record, 5-13x on 1 KiB and more. Every record is checked on write, on a cold read,
# at start-up scans and in compaction.
from zlib_ng.zlib_ng import crc32

from .errors import CorruptionError

HEADER = struct.Struct(">III")
HEADER_SIZE = HEADER.size  # 12
LENGTH = struct.Struct(">I")
TOMBSTONE = 0x01
BATCH = 0x02
EXPIRY = 0x04
MAP = 0x08  # the databases' map (format 4; docs/data-model.md)
TYPED = 0x10  # a value of another type than string, packed whole (format 4)
TYPE_SHIFT = 5  # ...its type: flags >> TYPE_SHIFT (1 hash, 2 list, 3 set, 4 sorted set)
TYPE_BITS = TYPED | 0x07 << TYPE_SHIFT
META = 0x100  # a collection's metadata record: its elements are records of their own
ELEMENT = 0x200  # one element of a collection (with TOMBSTONE: the element was removed)
COLLECTION_BITS = META | ELEMENT


def typed_flags(kind: int) -> int:
    """The flags of a value record of type `kind` (0: a string, no flags)."""
    return TYPED | kind << TYPE_SHIFT if kind else 0

#: The largest value the format is asked to carry; `length` is 32 bits and the
#: key directory packs a record's size into 32 bits as well.
MAX_VALUE_SIZE = 1 << 31


# One Packer reused: msgpack.packb builds a new Packer on every call, which cost
# more than the packing itself on the put path (measured with py-spy). Used by
# the store's owner thread only, for records and for hint rows.
pack = msgpack.Packer().pack


def encode(key: bytes, value: bytes, flags: int = 0, expires_at_ms: int = 0,
           timestamp_ms: int | None = None, slot: int = 0) -> bytes:
    """Return the bytes of one record (see the module docstring); `timestamp_ms`
    defaults to now (a writer of many records reads the clock once for all). A record
    of slot 0 has no slot field (it reads as format 3 did)."""
    if timestamp_ms is None:
        timestamp_ms = time.time_ns() // 1_000_000
    if slot:
        return frame(pack([timestamp_ms, flags, expires_at_ms, key, value, slot]))
    return frame(pack([timestamp_ms, flags, expires_at_ms, key, value]))


def encode_parts(key: bytes, value: bytes, flags: int, expires_at_ms: int,
                 timestamp_ms: int, slot: int = 0) -> tuple[bytes, bytes, bytes]:
    """encode() in three pieces: everything before the value, the value itself, and what
    follows it (the slot, if any), so a large value is written from where it lies
    instead of being copied twice (by msgpack, then by the framing) -- 60 MB cost 90 ms
    of copies."""
    size = len(value)
    if size < 0x100:
        bin_header = b"\xc4" + bytes([size])
    elif size < 0x10000:
        bin_header = b"\xc5" + size.to_bytes(2, "big")
    else:
        bin_header = b"\xc6" + size.to_bytes(4, "big")
    tail = pack(slot) if slot else b""
    # msgpack's own bytes for [timestamp_ms, flags, expires_at_ms, key, value(, slot)]
    prefix = (b"\x96" if slot else b"\x95") + pack(timestamp_ms) + pack(flags) + \
        pack(expires_at_ms) + pack(key) + bin_header
    fields, fields_crc = _length_fields(len(prefix) + size + len(tail))
    crc = crc32(tail, crc32(value, crc32(prefix, fields_crc)))
    return LENGTH.pack(crc) + fields + prefix, value, tail


def frame(body: bytes) -> bytes:
    """The record of a packed body: its CRC and length fields, then the body."""
    size = len(body)
    known = _LENGTH_FIELDS.get(size)
    if known is None:
        known = _length_fields(size)
        if size < _LENGTH_FIELDS_CACHED:
            _LENGTH_FIELDS[size] = known
    fields, fields_crc = known
    return LENGTH.pack(crc32(body, fields_crc)) + fields + body


def _length_fields(size: int) -> tuple[bytes, int]:
    """`length` + `length_crc` of a body of `size` bytes, and the CRC of those 8 bytes
    (where the record's CRC starts from)."""
    length = LENGTH.pack(size)
    fields = length + LENGTH.pack(crc32(length))
    return fields, crc32(fields)


# The put path: the length fields of small records repeat, so they are computed once
# per size (a quarter of encode()'s time otherwise).
_LENGTH_FIELDS: dict[int, tuple[bytes, int]] = {}
_LENGTH_FIELDS_CACHED = 4096


def encode_tombstone(key: bytes, slot: int = 0) -> bytes:
    return encode(key, b"", TOMBSTONE, slot=slot)


def encode_deadline(key: bytes, expires_at_ms: int, slot: int = 0) -> bytes:
    """A deadline change of `key` (0: it no longer expires)."""
    return encode(key, b"", EXPIRY, expires_at_ms, slot=slot)


def encode_meta(key: bytes, kind: int, version: int, expires_at_ms: int, slot: int,
                timestamp_ms: int) -> bytes:
    """The metadata record of a collection of element records (type `kind`)."""
    return frame(pack([timestamp_ms, typed_flags(kind) | META, expires_at_ms, key, b"",
                       slot, version]))


def encode_element(key: bytes, field: bytes | int, value: bytes | None, version: int, slot: int,
                   timestamp_ms: int) -> bytes:
    """An element record: `field` of incarnation `version` of collection `key` now
    holds `value` (None: the element was removed)."""
    if value is None:
        return frame(pack([timestamp_ms, ELEMENT | TOMBSTONE, 0, key, b"", slot, version,
                           field]))
    return frame(pack([timestamp_ms, ELEMENT, 0, key, value, slot, version, field]))


def encode_map(next_slot: int, slots: list[int]) -> bytes:
    """The databases' map: database i's keys are in slot slots[i]; the next new slot is
    next_slot. Kept in the key field, so a hint row carries it."""
    return encode(pack_map(next_slot, slots), b"", MAP)


def pack_map(next_slot: int, slots: list[int]) -> bytes:
    return msgpack.packb([next_slot, *slots])


def unpack_map(packed: bytes) -> tuple[int, list[int]]:
    """(next slot, the slot of each database) of a map record's key."""
    next_slot, *slots = msgpack.unpackb(packed)
    return next_slot, slots


def encode_batch_marker(batch_bytes: int) -> bytes:
    """The marker record announcing `batch_bytes` bytes of records that form one batch.

    Always BATCH_MARKER_SIZE bytes: its integers are written at full width (msgpack
    uint64, which any msgpack reader reads), so that a batch whose size is known only
    at its end (a transaction) can reserve the marker first and fill it in then.
    """
    body = (b"\x95\xcf" + (time.time_ns() // 1_000_000).to_bytes(8, "big")
            + bytes((BATCH,)) + b"\xcf" + batch_bytes.to_bytes(8, "big") + b"\xc4\x00\xc4\x00")
    return frame(body)


BATCH_MARKER_SIZE = len(encode_batch_marker(0))


def finished_batches(entries: list, valid_end: int) -> tuple[list, int | None]:
    """A scan's entries without their batch markers, and the offset of the marker of an
    unfinished batch (one whose records run past `valid_end`), or None. Only the last
    batch of a segment can be unfinished: nothing is written after a batch in the same
    flush before the batch itself."""
    if not any(entry[3] & BATCH for entry in entries):
        return entries, None
    kept: list = []
    for entry in entries:
        if entry[3] & BATCH:  # (a marker is always an Entry)
            if entry.offset + entry.size + entry.expires_at_ms > valid_end:
                return kept, entry.offset
            continue
        kept.append(entry)
    return kept, None


def hint_row(key: bytes, offset: int, size: int, flags: int, expires_at_ms: int,
             slot: int = 0, *collection: object) -> bytes:
    """A record's packed hint row (hints.py): its Entry, the slot left out when it is 0;
    a collection's records add their version (and an element its field)."""
    if collection:
        return pack((key, offset, size, flags, expires_at_ms, slot, *collection))
    if slot:
        return pack((key, offset, size, flags, expires_at_ms, slot))
    return pack((key, offset, size, flags, expires_at_ms))


def row_of(body: list, offset: int, size: int) -> tuple:
    """The hint row of a record read back (`body` decoded): an Entry, or for a record
    of a collection a plain tuple that adds its version (and an element's field)."""
    if len(body) <= 6:
        return Entry(body[3], offset, size, body[1], body[2], body[5] if len(body) > 5 else 0)
    return (body[3], offset, size, body[1], body[2], *body[5:])


class Entry(NamedTuple):
    """What the key directory needs to know of one record; also a hint file's row.
    (A record of a collection's has two more: `version` and, for an element, `field`.)

    A plain tuple underneath, so hint rows (which msgpack hands back as tuples)
    and scanned entries are unpacked by the same loading code, fast.
    """

    key: bytes
    offset: int
    size: int
    flags: int
    expires_at_ms: int
    slot: int = 0  # the database slot (format 4); a hint row leaves out slot 0


def damage(data: bytes | memoryview) -> str | None:
    """Why `data` is not exactly one intact record, or None if it is."""
    if len(data) < HEADER_SIZE:
        return "record is shorter than its header"
    crc, length, _ = HEADER.unpack_from(data)
    if len(data) != HEADER_SIZE + length or crc32(memoryview(data)[4:]) != crc:
        return "record checksum mismatch"
    return None


def intact_value(data: bytes | memoryview) -> bytes | None:
    """The value of one whole record, or None if it is not intact (the read fast path:
    the caller looks up the file name for its error only when it must)."""
    if damage(data) is not None:
        return None
    return msgpack.unpackb(memoryview(data)[HEADER_SIZE:])[4]


def check_record(data: bytes | memoryview, path: str, offset: int) -> None:
    """Raise CorruptionError unless `data` is exactly one intact record."""
    reason = damage(data)
    if reason is not None:
        raise CorruptionError(path, offset, reason)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A segment scan: its entries, and where the intact records end."""

    entries: list  # Entry, or a longer tuple for a collection's record (row_of)
    valid_end: int  # offset just past the last intact record
    file_size: int
    torn_reason: str | None  # why the bytes after valid_end are a torn tail, if any


def scan(path: str, start: int = 0) -> ScanResult:
    """Read every record of a segment from `start`, checking each checksum.

    Bytes after the last intact record are reported as a torn tail only when
    they can be one: a header cut short, a body cut short behind an intact
    header, or an all-zero tail (a file extended but never written, as a power
    loss can leave). Anything else raises CorruptionError with the offset.
    The caller decides whether a torn tail is allowed where it was found.
    """
    entries: list = []
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size <= start:
            return ScanResult(entries, start, size, None)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                offset = start
                while offset < size:
                    end, found = read_at(view, offset, size)
                    if isinstance(found, str):  # (end < 0)
                        if found == LENGTH_FAILS and _all_zero(view[offset:]):
                            return ScanResult(entries, offset, size, "zero-filled tail")
                        if found in (HEADER_CUT, BODY_CUT):
                            return ScanResult(entries, offset, size, found)
                        raise CorruptionError(path, offset, found)
                    entries.append(row_of(found, offset, end - offset))
                    offset = end
                return ScanResult(entries, offset, size, None)
            finally:
                view.release()


# What read_at finds instead of a record. The two "cut short" cases can be a torn
# tail; the others are damage.
HEADER_CUT = "record header cut short"
BODY_CUT = "record body cut short"
LENGTH_FAILS = "record length fails its check"


def read_at(view: memoryview, offset: int, size: int) -> tuple[int, list | str]:
    """The record starting at `offset` of a segment's first `size` bytes: (its end,
    its decoded body) if it is intact, else (-1, what is wrong with it)."""
    if size - offset < HEADER_SIZE:
        return -1, HEADER_CUT
    crc, length, length_crc = HEADER.unpack_from(view, offset)
    if crc32(view[offset + 4 : offset + 8]) != length_crc:
        return -1, LENGTH_FAILS
    end = offset + HEADER_SIZE + length
    if end > size:
        return -1, BODY_CUT
    if crc32(view[offset + 4 : end]) != crc:
        return -1, "record checksum mismatch"
    try:
        body = msgpack.unpackb(view[offset + HEADER_SIZE : end])
    except Exception as exc:  # a checksummed body that is not ours
        return -1, f"undecodable record: {exc}"
    if type(body) is not list or not 5 <= len(body) <= 8:
        return -1, "undecodable record: not an array of 5 to 8 elements"
    return end, body


def _all_zero(view: memoryview) -> bool:
    return view.tobytes().count(0) == len(view)


def as_bytes(value: object, what: str) -> bytes:
    """Keys and values are bytes; bytearray and memoryview are copied to bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def checked_ops(ops) -> list[tuple[bytes, bytes | None, int]]:
    """A write batch's `(key, value[, deadline])` puts and `(key, None)` deletes, each
    checked as put() and delete() check, as `(key, value or None, deadline or 0)`: all
    are checked before a batch writes anything."""
    checked: list[tuple[bytes, bytes | None, int]] = []
    for key, value, *deadline in ops:
        at = deadline[0] if deadline else 0
        if value is None:
            checked.append((as_bytes(key, "key"), None, at))
        else:
            checked.append((*checked_pair(key, value), at))
    return checked


def checked_pair(key: object, value: object) -> tuple[bytes, bytes]:
    """The key and value of a put, as bytes, refused if too large for a record."""
    key, value = as_bytes(key, "key"), as_bytes(value, "value")
    if len(key) + len(value) > MAX_VALUE_SIZE:
        raise ValueError(f"key and value together exceed {MAX_VALUE_SIZE} bytes")
    return key, value
