"""Salvage a log-engine data directory that fails to open because of corruption.

`repair(directory)` first makes the directory's segment list agree with its
files (see layout.py): a listed segment that is missing is unlisted -- its
keys are lost, and the report says so -- and a segment that is not listed is
moved aside into `corrupt/`. Then it rewrites every segment that does not
scan cleanly with its intact records only: after a damaged stretch it looks for the next
position where an intact record starts (its length check, its checksum and
its msgpack body must all hold) and carries on from there. The original
file is kept under `corrupt/` -- repair never deletes data -- and the
segment's hint file, whose offsets no longer apply, is removed.

What is lost is exactly the damaged records. A key whose newest record was
among them reads its previous value again (or, if that record was a delete,
comes back), which is why the report lists every damaged range: the
operator decides what to re-write.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from . import compaction, private, record
from .dirlock import DirectoryLock
from .errors import CorruptionError
from .layout import (
    CORRUPT_DIR,
    check_meta,
    fsync_dir,
    hint_name,
    read_segment_list,
    segment_ids,
    segment_name,
    write_segment_list,
)

log = logging.getLogger("kvd.storage")



@dataclasses.dataclass
class SegmentRepair:
    segment: str
    damaged: list[tuple[int, int]]  # [start, end) byte ranges that held no intact record
    records_kept: int
    bytes_dropped: int
    original: str  # where the original file was moved


@dataclasses.dataclass
class ListRepair:
    """What made the segment list agree with the files again."""

    missing: list[str]  # listed segments that were not there: unlisted, their keys lost
    moved_aside: list[tuple[str, str]]  # (segment, where it went): there but not listed


def intact_records(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(records as (offset, size), damaged ranges) of a segment's bytes, resynchronising
    byte by byte after damage."""
    records: list[tuple[int, int]] = []
    damaged: list[tuple[int, int]] = []
    view = memoryview(data)
    size = len(data)
    offset = 0
    damage_start = -1
    while offset < size:
        end, _ = record.read_at(view, offset, size)
        if end < 0:
            if damage_start < 0:
                damage_start = offset
            offset += 1
            continue
        if damage_start >= 0:
            damaged.append((damage_start, offset))
            damage_start = -1
        records.append((offset, end - offset))
        offset = end
    if damage_start >= 0:
        damaged.append((damage_start, size))
    return records, damaged


def repair(directory: str) -> list[SegmentRepair | ListRepair]:
    """Make the segment list agree with the files and rewrite every damaged segment of a
    (closed) log-engine directory; return what was done.

    Takes the directory's lock, so it refuses to run beside a server.
    """
    directory = os.path.abspath(directory)
    lock = DirectoryLock(directory)
    try:
        check_meta(directory, "log")
        compaction.recover(directory)
        repairs: list[SegmentRepair | ListRepair] = []
        listed = _repair_list(directory)
        if listed is not None:
            repairs.append(listed)
        ids = segment_ids(directory)
        for segment_id in ids:
            path = os.path.join(directory, segment_name(segment_id))
            try:
                scanned = record.scan(path)
            except CorruptionError:
                repairs.append(_rewrite(directory, segment_id))
                continue
            if scanned.torn_reason and segment_id != ids[-1]:
                repairs.append(_rewrite(directory, segment_id))  # a torn middle segment
        return repairs
    finally:
        lock.release()


def _repair_list(directory: str) -> ListRepair | None:
    """Unlist missing segments and move unlisted ones aside; None if they agreed."""
    listed = read_segment_list(directory)
    present = segment_ids(directory)
    if listed is None or set(listed) == set(present):
        return None
    missing = sorted(set(listed) - set(present))
    moved = []
    corrupt_dir = os.path.join(directory, CORRUPT_DIR)
    for segment_id in sorted(set(present) - set(listed)):
        os.makedirs(corrupt_dir, mode=private.DIRECTORY_MODE, exist_ok=True)
        for name in (segment_name(segment_id), hint_name(segment_id)):
            source = os.path.join(directory, name)
            if os.path.exists(source):
                target = os.path.join(corrupt_dir, name)
                os.replace(source, target)
                if name.endswith(".seg"):
                    moved.append((name, target))
    if moved:
        fsync_dir(corrupt_dir)
    write_segment_list(directory, segment_ids(directory))
    result = ListRepair([segment_name(i) for i in missing], moved)
    log.warning("segment list repaired: %s unlisted (missing, their keys are lost); %s moved "
                "aside", result.missing or "none", [m[0] for m in moved] or "none")
    return result


def _rewrite(directory: str, segment_id: int) -> SegmentRepair:
    name = segment_name(segment_id)
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
        data = f.read()
    records, damaged = intact_records(data)
    temp = path + ".repair.tmp"
    with private.create(temp) as out:
        for offset, size in records:
            out.write(data[offset : offset + size])
        out.flush()
        os.fsync(out.fileno())
    corrupt_dir = os.path.join(directory, CORRUPT_DIR)
    os.makedirs(corrupt_dir, mode=private.DIRECTORY_MODE, exist_ok=True)
    original = os.path.join(corrupt_dir, name)
    os.replace(path, original)  # the damaged original is kept, never deleted
    try:
        os.unlink(os.path.join(directory, hint_name(segment_id)))
    except FileNotFoundError:
        pass
    os.replace(temp, path)
    fsync_dir(corrupt_dir)
    fsync_dir(directory)
    kept = sum(size for _, size in records)
    result = SegmentRepair(name, damaged, len(records), len(data) - kept, original)
    log.warning("repaired %s: kept %d records, dropped %d bytes in %s; original kept as %s",
                name, len(records), result.bytes_dropped, damaged, original)
    return result
