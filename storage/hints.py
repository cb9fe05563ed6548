"""Hint files: the key directory's view of one segment, so start-up reads no data.

A hint file `<segment id>.hint` sits beside its segment. Layout:

    offset  size  field
    0       4     magic b"KVDH"
    4       1     version (1)
    5       8     covered: the segment's length in bytes that this hint describes
    13      ...   msgpack stream of [key, offset, size, flags, expires_at_ms] (and the
                  slot, format 4, for a record of a database slot other than 0; then
                  the version of a collection's record and the field of an element), one
                  per record in file order (tombstones included: they delete keys
                  that older segments still hold; the databases' map records too)
    end-4   4     CRC-32 of everything before it

A hint is a cache, never the only copy of anything: one that is missing, fails
its CRC, or covers more bytes than its segment has is ignored (and logged),
and the segment is scanned instead. A hint may cover only a prefix of its
segment (the active segment at close, appended to after the next open); the
rest is scanned.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator

import msgpack

from .errors import CorruptionError
from .private import create
from .record import Entry, crc32

# A row is an Entry: 5 fields, or 6 with the slot of a record of another database; a
# collection's records add a version (7), an element its field too (8).
ROW_LENGTHS = {len(Entry._fields) - 1, len(Entry._fields), len(Entry._fields) + 1,
               len(Entry._fields) + 2}
MAGIC = b"KVDH"
VERSION = 1
HEADER = struct.Struct(">4sBQ")
CRC = struct.Struct(">I")


def write(path: str, covered: int, packed_entries: bytes | bytearray, fsync: bool) -> None:
    """Write a hint file atomically (temp file, then rename over any old one)."""
    header = HEADER.pack(MAGIC, VERSION, covered)
    crc = crc32(packed_entries, crc32(header))
    tmp = path + ".tmp"
    with create(tmp) as f:
        f.write(header)
        f.write(packed_entries)
        f.write(CRC.pack(crc))
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path: str) -> tuple[int, list[tuple]] | None:
    """Return (covered length, rows), or None if the hint is missing or unusable.

    Rows are plain tuples in `Entry` field order (building 1M named tuples
    would cost start-up time for nothing).
    """
    opened = read_lazily(path)
    if opened is None:
        return None
    covered, unpacker, _ = opened
    rows = _chunk(unpacker, None)
    return None if rows is None else (covered, rows)


def read_in_chunks(path: str) -> tuple[int, Iterator[list[tuple]]] | None:
    """Like `read`, but the rows come in lists of at most CHUNK_ROWS, unpacked as they
    are consumed: start-up replays a segment's million rows without holding them all
    (their tuples and ints, freed after, left the process's heap that much larger).
    The first chunk is checked before this returns (None: the hint is unusable, as
    `read` says); a later one that is not rows -- which its CRC makes a bug, not
    damage -- raises CorruptionError."""
    opened = read_lazily(path)
    if opened is None:
        return None
    covered, unpacker, _ = opened
    first = _chunk(unpacker, CHUNK_ROWS)
    if first is None:
        return None

    def chunks() -> Iterator[list[tuple]]:
        chunk: list[tuple] | None = first
        while chunk:
            yield chunk
            chunk = _chunk(unpacker, CHUNK_ROWS)
            if chunk is None:
                raise CorruptionError(path, 0, "hint rows of an unexpected shape (delete "
                                               "the hint file: its segment is scanned)")

    return covered, chunks()


CHUNK_ROWS = 1 << 16


def _chunk(unpacker: msgpack.Unpacker, size: int | None) -> list[tuple] | None:
    """The next `size` rows (None: all the rest; an empty list at the end), or None if
    they are not rows."""
    try:
        rows = list(itertools.islice(unpacker, size))
    except (ValueError, msgpack.UnpackException):
        return None
    if rows and not set(map(len, rows)) <= ROW_LENGTHS:  # map(len): no Python loop
        return None
    return rows


def read_lazily(path: str) -> tuple[int, msgpack.Unpacker, memoryview] | None:
    """Like `read`, but the rows come from an iterator, unpacked as they are consumed
    (the CRC is checked first), so a caller can spread a large hint over time; and
    their packed bytes, as `write` takes them."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if len(data) < HEADER.size + CRC.size:
        return None
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    body = memoryview(data)[: len(data) - CRC.size]
    if crc32(body) != crc:
        return None
    magic, version, covered = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return None
    packed = body[HEADER.size :]
    unpacker = msgpack.Unpacker(use_list=False)
    unpacker.feed(packed)
    return covered, unpacker, packed
