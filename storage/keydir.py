"""Record locations packed into one int, the values of the in-memory key directory.

A dict of `key -> (segment, offset, size)` tuples costs about 220 bytes per
key beyond the key itself; one int `segment << 64 | offset << 32 | size`
costs 36 (measured in tests/bench). Offsets and sizes are below 2**32 because
segments are capped below 4 GiB and so are records.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF


def pack(segment_id: int, offset: int, size: int) -> int:
    return segment_id << 64 | offset << 32 | size


def segment_of(location: int) -> int:
    return location >> 64


def unpack(location: int) -> tuple[int, int, int]:
    """(segment id, offset, size)"""
    return location >> 64, (location >> 32) & MASK32, location & MASK32


def size_of(location: int) -> int:
    return location & MASK32
