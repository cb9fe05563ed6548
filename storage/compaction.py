"""Compaction of the log engine, split so the expensive middle can run in a child.

    plan   = store.begin_compaction()   # owner: rotate, freeze the immutable segments
    compaction.run(plan)                # anywhere: copy live records to new segments
    result = store.finish_compaction(plan)   # owner: re-point keys, delete old

`run` is a function of the plan alone. It reads the owner's key directory as
it stood at `begin` -- which is what a forked child sees, and what the owner
still has if it runs `run` itself before changing anything -- and writes only
inside `<dir>/compaction/`. It never touches the owner's in-memory state, so
it is safe in a forked child that exits with `os._exit`.

Crash safety. Output segment ids lie between the newest frozen id and the
active segment (begin leaves a gap of `ID_GAP` ids), so replay order -- old
live data, then everything written since -- is right whatever happens next.
The steps and what a crash after each leaves:

1. `run` writes `<dir>/compaction/<id>.seg` and `.hint`, fsyncs them.
   Crash: no MANIFEST, so the next open deletes `compaction/`. Nothing lost.
2. `run` writes `compaction/MANIFEST` (temp name, fsync, rename, fsync dir).
   From here the compaction is complete and is rolled forward.
3. `finish` (or `recover` at open) moves the outputs into `<dir>`, fsyncs
   `<dir>`, deletes the frozen segments, fsyncs, then removes MANIFEST and
   `compaction/`. Every step is idempotent, so a crash anywhere here is
   finished by the next open. Frozen segments are deleted only once all
   outputs are durable in `<dir>`.

Discarding (a failed or cancelled compaction) removes MANIFEST first, so a
crash mid-discard can never roll forward a half-deleted output.

A damaged live record (its CRC fails) is not copied: its bytes go to
`compaction/corrupt/` (moved to `<dir>/corrupt/` with the outputs, never
deleted) and the MANIFEST lists it, so the owner drops the key rather than the
compaction failing every time it runs.

Tombstones are dropped, not copied: every segment older than the active one
is frozen, so no older copy of a deleted key survives outside the rewrite.
So are deadline changes: a live value is copied with its key's current
deadline (re-encoded where a deadline change made the record's stale).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import msgpack

from . import hints, private, record
from .errors import CompactionError, CorruptionError, StorageError
from .keydir import SEGMENT_SHIFT, KeyDir
from .layout import (
    COMPACTION_DIR,
    CORRUPT_DIR,
    change_segment_list,
    fsync_dir,
    hint_name,
    segment_name,
)

log = logging.getLogger("kvd.storage")

#: Ids left free after the newest frozen segment for one compaction's outputs.
ID_GAP = 1 << 16
MANIFEST = "MANIFEST"
_PROGRESS_STEP = 1 << 20
_SYNC_STEP = 4 << 20

Progress = Callable[[int, int], None]


@dataclass
class CompactionPlan:
    """What `begin` froze; everything `run` needs."""

    directory: str
    frozen: list[int]  # segment ids to rewrite, ascending
    first_output_id: int
    segment_size: int
    # Read by run(); see the module docstring. By slot (slots.py): each database's key
    # directory (keydir.KeyDir) and its keys' deadlines (record.py), and the databases' map.
    keydirs: Mapping[int, KeyDir]
    deadlines: Mapping[int, Mapping[bytes, int]]
    bytes_total: int  # size of the frozen segments
    fsync: bool
    slot_map: tuple[int, list[int]] = (1, [0])  # (next slot, the slot of each database)
    started_at: float = field(default_factory=time.monotonic)
    # The job's side of storage.interface.CompactionJob: the middle runs in a forked
    # child (run), the owner finishes it (LogStore.finish_steps).
    forks = True
    step_pages = 0

    @property
    def workdir(self) -> str:
        return os.path.join(self.directory, COMPACTION_DIR)

    @property
    def description(self) -> str:
        return f"{self.bytes_total} bytes in {len(self.frozen)} segment(s)"

    def run(self, progress: Progress | None = None) -> None:
        """The child's work: copy the live records, write the MANIFEST (see run())."""
        run(self, progress)

    def step(self) -> bool:
        raise CompactionError("a log compaction runs in a child, not in steps")


@dataclass
class CompactionOutput:
    """What `run` wrote (also recorded in the MANIFEST)."""

    outputs: list[int]
    bytes_written: int
    keys: int
    # Live records found damaged, not copied: [key, segment, offset, size, kept as]
    damaged: list[list] = field(default_factory=list)


@dataclass(frozen=True)
class CompactionResult:
    bytes_before: int  # size of the segments that were rewritten
    bytes_after: int  # size of what replaced them
    reclaimed: int
    duration_s: float
    keys: int  # live keys copied

    def as_dict(self) -> dict:
        return {
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "reclaimed": self.reclaimed,
            "duration_s": round(self.duration_s, 6),
            "keys": self.keys,
        }


class _OutputSegment:
    """One output segment being written in the work directory."""

    def __init__(self, workdir: str, segment_id: int) -> None:
        self.segment_id = segment_id
        self.path = os.path.join(workdir, segment_name(segment_id))
        self.hint_path = os.path.join(workdir, hint_name(segment_id))
        self.file = private.create(self.path, exclusive=True, buffering=1 << 20)
        self.size = 0
        self.synced = 0
        self.hint_rows = bytearray()

    def append(self, raw: bytes, key: bytes, flags: int, expires_at_ms: int, fsync: bool,
               slot: int = 0, *collection: object) -> None:
        self.hint_rows += record.hint_row(key, self.size, len(raw), flags, expires_at_ms, slot,
                                          *collection)
        self.file.write(raw)
        self.size += len(raw)
        if fsync and self.size - self.synced >= _SYNC_STEP:
            # Write back as we go: one large flush at the end would stall the
            # server's own fsyncs on the same disk for as long as it takes.
            self.file.flush()
            os.fdatasync(self.file.fileno())
            self.synced = self.size

    def close(self, fsync: bool) -> None:
        self.file.flush()
        if fsync:
            os.fsync(self.file.fileno())
        self.file.close()
        hints.write(self.hint_path, self.size, self.hint_rows, fsync)


def _entries_of(directory: str, segment_id: int) -> list:
    """A frozen segment's entries: from its hint when whole, else by scanning it."""
    path = os.path.join(directory, segment_name(segment_id))
    size = os.path.getsize(path)
    hint = hints.read(os.path.join(directory, hint_name(segment_id)))
    if hint is not None and hint[0] == size:
        return hint[1]
    scanned = record.scan(path)
    if scanned.torn_reason:
        raise StorageError(f"{path}: {scanned.torn_reason} at offset {scanned.valid_end}")
    return scanned.entries


def _mapped(source) -> mmap.mmap | contextlib.nullcontext:
    """A frozen segment mapped for reading (an empty one maps to b"")."""
    if os.fstat(source.fileno()).st_size == 0:
        return contextlib.nullcontext(b"")
    return mmap.mmap(source.fileno(), 0, prot=mmap.PROT_READ)


def run(plan: CompactionPlan, progress: Progress | None = None) -> CompactionOutput:
    """Copy the live records of the frozen segments into new ones; write the MANIFEST."""
    workdir = plan.workdir
    outputs: list[_OutputSegment] = []
    current: _OutputSegment | None = None
    done = 0
    reported = 0
    keys = 0
    damaged: list[list] = []
    # Every segment older than the outputs is frozen, so the map records they hold go:
    # the outputs begin with the map as it stands (docs/data-model.md).
    next_slot, slots = plan.slot_map
    if slots != [0] or next_slot != 1:
        current = _OutputSegment(workdir, plan.first_output_id)
        outputs.append(current)
        current.append(record.encode_map(next_slot, slots), record.pack_map(next_slot, slots),
                       record.MAP, 0, plan.fsync)
    for segment_id in plan.frozen:
        path = os.path.join(plan.directory, segment_name(segment_id))
        base = segment_id << SEGMENT_SHIFT
        with open(path, "rb", buffering=0) as source, _mapped(source) as mapped:
            for row in _entries_of(plan.directory, segment_id):
                collection: tuple = ()
                if len(row) == 5:
                    key, offset, size, flags, expires = row
                    slot = 0
                elif len(row) == 6:
                    key, offset, size, flags, expires, slot = row
                else:  # a collection's record: + its version (+ an element's field)
                    key, offset, size, flags, expires, slot, *collection = row
                    collection = tuple(collection)
                live = plan.keydirs.get(slot)
                location = base | offset << 32 | size  # (keydir.pack)
                if live is None:
                    continue  # a flushed database's, or a map
                if flags & record.ELEMENT:
                    if not live.element_is_live(key, collection[0], collection[1], location):
                        continue  # of another version (the key was deleted...), superseded
                elif not live.is_live(key, location):
                    continue  # superseded, deleted, a tombstone
                raw = mapped[offset : offset + size]  # a slice: no system call per record
                try:
                    record.check_record(raw, path, offset)
                except CorruptionError as exc:
                    damaged.append([key, segment_id, offset, size,
                                    _keep_damaged(plan, segment_id, offset, raw, exc), slot,
                                    *collection[1:]])
                    continue
                deadline = 0 if flags & record.ELEMENT else plan.deadlines[slot].get(key, 0)
                if deadline != expires:  # changed since by EXPIRE or PERSIST: carry it over
                    value = record.intact_value(raw)
                    assert value is not None  # (checked just above)
                    if flags & record.META:
                        raw = record.encode_meta(
                            key, (flags & record.TYPE_BITS) >> record.TYPE_SHIFT,
                            collection[0], deadline, slot, time.time_ns() // 1_000_000)
                    else:
                        raw = record.encode(key, value, flags, deadline, slot=slot)
                    expires = deadline
                if current is None or (current.size and
                                       current.size + len(raw) > plan.segment_size):
                    if current is not None:
                        current.close(plan.fsync)
                    next_id = plan.first_output_id + len(outputs)
                    if next_id >= plan.first_output_id + ID_GAP - 1:
                        raise CompactionError(
                            "compaction output needs more segment ids than reserved")
                    current = _OutputSegment(workdir, next_id)
                    outputs.append(current)
                current.append(raw, key, flags, expires, plan.fsync, slot, *collection)
                keys += 1
                done_now = done + offset + size
                if progress is not None and done_now - reported >= _PROGRESS_STEP:
                    progress(done_now, plan.bytes_total)
                    reported = done_now
        done += os.path.getsize(path)
    if current is not None:
        current.close(plan.fsync)
    output = CompactionOutput(
        outputs=[o.segment_id for o in outputs],
        bytes_written=sum(o.size for o in outputs),
        keys=keys,
        damaged=damaged,
    )
    _write_manifest(workdir, plan.frozen, output, plan.fsync)
    if progress is not None:
        progress(plan.bytes_total, plan.bytes_total)
    return output


def _keep_damaged(plan: CompactionPlan, segment_id: int, offset: int, raw: bytes,
                  exc: CorruptionError) -> str:
    """Keep a damaged record's bytes aside (in the work directory, moved on with the
    outputs); return where they will be."""
    name = f"{segment_name(segment_id)}.{offset}.record"
    aside = os.path.join(plan.workdir, CORRUPT_DIR)
    os.makedirs(aside, mode=private.DIRECTORY_MODE, exist_ok=True)
    with private.create(os.path.join(aside, name)) as f:
        f.write(raw)
        f.flush()
        if plan.fsync:
            os.fsync(f.fileno())
    return os.path.join(plan.directory, CORRUPT_DIR, name)


def _write_manifest(workdir: str, frozen: list[int], output: CompactionOutput, fsync: bool) -> None:
    manifest = {"frozen": frozen, "outputs": output.outputs, "keys": output.keys,
                "bytes_written": output.bytes_written, "damaged": output.damaged}
    tmp = os.path.join(workdir, MANIFEST + ".tmp")
    with private.create(tmp) as f:
        f.write(msgpack.packb(manifest))
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, os.path.join(workdir, MANIFEST))
    if fsync:
        fsync_dir(workdir)


def read_manifest(directory: str) -> dict | None:
    """The MANIFEST of a completed compaction, or None if there is none."""
    try:
        with open(os.path.join(directory, COMPACTION_DIR, MANIFEST), "rb") as f:
            return msgpack.unpackb(f.read())
    except FileNotFoundError:
        return None


def move_outputs(directory: str, manifest: dict) -> None:
    """Step 3a: bring the outputs into the data directory (idempotent)."""
    workdir = os.path.join(directory, COMPACTION_DIR)
    for segment_id in manifest["outputs"]:
        for name in (segment_name(segment_id), hint_name(segment_id)):
            source = os.path.join(workdir, name)
            if os.path.exists(source):
                os.replace(source, os.path.join(directory, name))
        if not os.path.exists(os.path.join(directory, segment_name(segment_id))):
            raise CompactionError(
                f"compaction output {segment_name(segment_id)} is missing; "
                f"the frozen segments {manifest['frozen']} were kept"
            )
    aside = os.path.join(workdir, CORRUPT_DIR)
    if os.path.isdir(aside):
        kept = os.path.join(directory, CORRUPT_DIR)
        os.makedirs(kept, mode=private.DIRECTORY_MODE, exist_ok=True)
        for name in os.listdir(aside):
            os.replace(os.path.join(aside, name), os.path.join(kept, name))
        fsync_dir(kept)
    fsync_dir(directory)
    change_segment_list(directory, add=manifest["outputs"])


def delete_frozen(directory: str, manifest: dict) -> None:
    """Step 3b: delete the rewritten segments, then the MANIFEST (idempotent)."""
    for _ in delete_frozen_steps(directory, manifest):
        pass


def delete_frozen_steps(directory: str, manifest: dict) -> Iterator[int]:
    """`delete_frozen` one segment at a time (yielding its id before deleting it):
    unlinking a large file takes milliseconds that a server spreads over passes."""
    for segment_id in manifest["frozen"]:
        yield segment_id
        for name in (segment_name(segment_id), hint_name(segment_id)):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
    fsync_dir(directory)
    change_segment_list(directory, remove=manifest["frozen"])
    remove_workdir(directory)


def remove_workdir(directory: str) -> None:
    """Drop `compaction/`, MANIFEST first so a crash part-way never rolls forward."""
    workdir = os.path.join(directory, COMPACTION_DIR)
    if not os.path.isdir(workdir):
        return
    try:
        os.unlink(os.path.join(workdir, MANIFEST))
        fsync_dir(workdir)
    except FileNotFoundError:
        pass
    shutil.rmtree(workdir)
    fsync_dir(directory)


def recover(directory: str) -> None:
    """At open: finish a compaction whose MANIFEST was written, drop any other."""
    manifest = read_manifest(directory)
    if manifest is not None:
        log.warning(
            "finishing an interrupted compaction in %s: segments %s replace %s",
            directory, manifest["outputs"], manifest["frozen"],
        )
        move_outputs(directory, manifest)
        delete_frozen(directory, manifest)
    elif os.path.isdir(os.path.join(directory, COMPACTION_DIR)):
        log.warning("discarding the output of an unfinished compaction in %s", directory)
        remove_workdir(directory)


def repoint(key_directories: Mapping[int, KeyDir], directory: str, manifest: dict) -> None:
    """In the owner: point keys that still live in frozen segments at their copies.

    A key written or deleted since `begin` no longer lives in a frozen segment
    (its newest record is in the active one, or it is gone), so it is left
    alone: writes made during the compaction win.
    """
    for _ in repoint_steps(key_directories, directory, manifest, batch=1 << 62):
        pass


def repoint_steps(spaces: Mapping[int, KeyDir], directory: str, manifest: dict,
                  batch: int) -> Iterator[None]:
    """`repoint` in batches of `batch` keys, yielding between them.

    The owner may read, write and delete between batches: a key not yet
    re-pointed still reads from its frozen segment, which exists until the
    last batch is done, and a key written meanwhile no longer lives in a
    frozen segment, so the check below leaves it alone.
    """
    frozen = set(manifest["frozen"])
    for segment_id in manifest["outputs"]:
        hint = hints.read_lazily(os.path.join(directory, hint_name(segment_id)))
        if hint is None:
            raise CompactionError(f"the hint of compaction output {segment_id} is unreadable")
        base = segment_id << SEGMENT_SHIFT
        rows = hint[1]
        while True:
            count = 0
            try:
                for row in itertools.islice(rows, batch):
                    count += 1
                    space = spaces.get(row[5] if len(row) > 5 else 0)
                    if space is None or row[3] & record.MAP:  # a flushed database's, the map
                        continue
                    space.repoint(row[0], base | row[1] << 32 | row[2], frozen,
                                  row[6:] if len(row) == 8 else None)
            except (ValueError, msgpack.UnpackException) as exc:
                raise CompactionError(
                    f"the hint of compaction output {segment_id} is damaged: {exc}") from exc
            yield
            if count < batch:
                break
