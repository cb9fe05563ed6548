"""The log engine: Bitcask-style append-only segments and an in-memory key directory.

Writes append records (see `record`) to a buffer; `flush()` writes the buffer
to the active segment with one `write` and, under fsync="always", one
`fsync` -- the group commit the server performs once per loop pass. Reads are
a slice of the segment's read-only memory map at the location the key directory
holds (the active segment is mapped again as it grows). When the active segment
reaches `segment_size` it becomes immutable (with a hint file) and a new one
is started. `compaction` rewrites the immutable segments.

This module owns the files of one data directory while the store is open; it
knows nothing of sockets, signals or processes.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterator, Sequence

from . import compaction, hints, record
from .compaction import CompactionPlan, CompactionResult
from .dirlock import DirectoryLock
from .errors import ClosedError, CompactionError, CorruptionError, StorageError
from .interface import CompactionJob, StoreStats
from .keydir import (
    KIND_FIELD,
    KIND_SHIFT,
    MASK32,
    SEGMENT_SHIFT,
    Elements,
    KeyDir,
    KindView,
    pack,
    unpack,
)
from .layout import (
    LibraryFile,
    change_segment_list,
    check_meta,
    checked_segment_ids,
    fsync_dir,
    hint_name,
    segment_name,
)
from .private import DIRECTORY_MODE, open_fd, prepare_directory
from .slots import DatabaseQueries, SlotMap

log = logging.getLogger("kvd.storage")

DEFAULT_SEGMENT_SIZE = 64 << 20
DEFAULT_CACHE_SIZE = 32 << 20
CACHE_ENTRY_OVERHEAD = 64  # bytes a cached value is counted beyond its own
# Reads in the active segment past its map: the first few after a flush pread; the
# next one maps it again (many reads of new records follow: a pipeline's).
PREADS_BEFORE_REMAP = 4
# Sealed segments mapped at once (each map holds a descriptor): 256 of 64 MiB is 16 GiB
# of data mapped; reading beyond that maps and unmaps (tens of microseconds each).
MAX_MAPPED_SEGMENTS = 256
# The most descriptors a store holds: the maps, the active segment (its file and its
# map), the directory lock, and a few while a compaction or a hint write runs.
DESCRIPTORS = MAX_MAPPED_SEGMENTS + 8
# A record at least this large is read through a memoryview of its segment's map.
BIG_RECORD = 1 << 16
MAX_SEGMENT_SIZE = (1 << 32) - 1
FSYNC_POLICIES = ("always", "everysec", "no")


class LogStore(DatabaseQueries, LibraryFile):
    """A data directory of the log engine, open for reading and writing."""

    engine = "log"

    def __init__(
        self, directory: str, fsync: str = "always", segment_size: int = DEFAULT_SEGMENT_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        if not 0 < segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be between 1 and {MAX_SEGMENT_SIZE}")
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        self.segment_size = segment_size
        prepare_directory(self.directory)
        self._lock = DirectoryLock(self.directory)
        self._closed = False
        # Each database's keys, in its slot (slots.py): a key directory, its deadlines.
        self._slots = SlotMap()
        self._keydirs = self._slots.keydirs  # database -> its key directory (reads)
        # Recently read values by location (oldest first out), so hot keys skip the
        # CRC and the unpacking; bounded by cache_size bytes. An OrderedDict: a dict's
        # next(iter()) walks every slot its earlier evictions emptied -- 12 us per
        # eviction at 30,000 entries, ~100 us per GET once 1 KiB values filled it.
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_size
        self._active_fd = -1  # the one segment file kept open (appended to)
        # Segments are read through maps: a GET reads without a system call (still
        # CRC-checked). Sealed ones never change and are mapped when first read, at most
        # MAX_MAPPED_SEGMENTS at a time, the least recently read unmapped first: each
        # map holds a descriptor (Python's mmap keeps a dup of the file's), so a store
        # of thousands of segments must not hold them all. The active one is mapped again
        # as it grows (_map_active), and what is not written yet is read from the buffer.
        self._maps: OrderedDict[int, mmap.mmap] = OrderedDict()
        self._active_map: mmap.mmap | None = None
        self._sizes: dict[int, int] = {}  # immutable segment id -> bytes
        self._active_mapped = 0  # bytes of the active segment mapped (see _map_active)
        self._reads_past_map = 0  # reads that pread past it since the last flush
        # The largest record ever held (its bytes bound its value's): a reader of many
        # keys learns from it whether their values could be large (see Keyspace.read_many).
        self.largest_value = 0
        # The newest version given to a collection (record.py): a new one is above it
        # and above the clock in microseconds, so versions only grow, across restarts.
        self._version = 0
        self._buffer = bytearray()  # records appended, not yet written
        self._batch_start: int | None = None  # where the open batch's marker is in _buffer
        self._batch_hints = 0  # where its hint rows begin in _active_hints
        self._batch_depth = 0  # begin_batch() calls not yet ended (a batch inside a batch)
        self._active_hints = bytearray()  # packed hint rows of the active segment...
        # ...from this offset on: those of the bytes before it were loaded from its hint
        # file at open and left there (not held in memory); _seal_active joins the two.
        self._hint_covers = 0
        self._written = 0  # bytes of the active segment on disk
        self._stamp = 0  # the records' timestamp: the clock at the first write of a flush
        # Bytes written to segments since open, and how many of them are known to be
        # on disk; the everysec thread syncs the difference. Comparing the two (not a
        # flag) keeps a write made during its fsync from being counted as synced by it.
        self._written_seq = 0
        self._durable_seq = 0
        self._sync_guard = threading.Lock()  # the everysec thread vs. rotation and close
        self._plan: CompactionPlan | None = None
        # finish_steps of self._plan, once begun
        self._finisher: Generator[None, None, CompactionResult] | None = None
        self._compactions = 0
        self._last_compaction: dict | None = None
        # Damaged records met while serving (and dropped by compactions): each is logged
        # once, with its file and offset, and counted (INFO's kvd_corrupt_records).
        self.corrupt_records = 0
        self._corrupt_seen: set[tuple[int, int]] = set()
        try:
            check_meta(self.directory, self.engine)
            compaction.recover(self.directory)
            self._remove_temp_files()
            self._load()
        except BaseException:
            self._close_fds()
            self._lock.release()
            raise
        self._syncer = _EverySecond(self) if fsync == "everysec" else None

    # -- loading ---------------------------------------------------------

    def _remove_temp_files(self) -> None:
        for name in os.listdir(self.directory):
            if name.endswith(".tmp"):
                os.unlink(os.path.join(self.directory, name))

    def _load(self) -> None:
        ids = checked_segment_ids(self.directory)
        if not ids:
            self._start_segment(1)
            return
        for segment_id in ids:
            newest = segment_id == ids[-1]
            loaded = self._load_segment(segment_id, newest)
            if loaded is not None:  # (the newest's)
                self._hint_covers, self._active_hints = loaded
        active = ids[-1]
        self._active_id = active
        self._written = self._sizes.pop(active)
        # A key whose deadline passed while the store was closed is gone: its newest
        # record acts as a delete (record.py, deadline changes).
        now = time.time_ns() // 1_000_000
        expired = 0
        for space in self._slots.spaces.values():
            for elements in space.collections.values():
                elements.measure()  # (a list's ends: replay does not track them)
            due = space.deadlines.due(now, len(space.deadlines))
            for key in due:
                space.forget(key)
            expired += len(due)
        if expired:
            log.info("%d keys expired while the store was closed", expired)

    def _load_segment(self, segment_id: int, newest: bool) -> tuple[int, bytearray] | None:
        """Replay one segment into the key directory; for the newest, return how far its
        hint file covers it and the hint rows of the records after that, packed (the
        active segment's hints go on from there; _seal_active joins them to the file's)."""
        path = os.path.join(self.directory, segment_name(segment_id))
        hint_path = os.path.join(self.directory, hint_name(segment_id))
        size = os.path.getsize(path)
        chunks: Iterator[list] = iter(())
        start = 0
        hint = hints.read_in_chunks(hint_path)
        if hint is not None and hint[0] <= size:
            start, chunks = hint
        elif os.path.exists(hint_path):
            log.warning("ignoring unusable hint file %s; scanning the segment", hint_path)
        scanned = record.scan(path, start)
        entries, unfinished = record.finished_batches(scanned.entries, scanned.valid_end)
        valid_end, torn_reason = scanned.valid_end, scanned.torn_reason
        if unfinished is not None:
            valid_end = unfinished
            then = f", then {torn_reason}" if torn_reason else ""
            torn_reason = "an unfinished write batch" + then
        if torn_reason:
            if not newest:
                raise CorruptionError(
                    path, valid_end, f"{torn_reason} in a segment that is not the newest",
                )
            log.warning(
                "truncating torn tail of %s at offset %d: %d bytes dropped (%s)",
                path, valid_end, size - valid_end, torn_reason,
            )
            with open(path, "r+b") as f:
                f.truncate(valid_end)
                os.fsync(f.fileno())
        for rows in chunks:
            self._replay(segment_id, rows)
        if entries:
            self._replay(segment_id, entries)
        self._sizes[segment_id] = valid_end
        if not newest:
            return None  # mapped when first read
        self._active_fd = open_fd(path, os.O_RDWR | os.O_APPEND)
        return start, bytearray(b"".join(record.pack(tuple(e)) for e in entries))

    def _replay(self, segment_id: int, rows: list) -> None:
        """Apply one segment's hint rows (or scanned entries) to the key directories. The
        hot loop of start-up: locations are keydir.pack spelled out, and the KeyDir's
        dicts are used directly."""
        slots = self._slots
        base = segment_id << SEGMENT_SHIFT
        largest = self.largest_value
        current = -1  # the slot whose directory is in the locals below
        space = keydir = deadlines = any_deadline = collections = None
        live = typed = 0  # (added to the slot's when it changes)
        kind_field = KIND_FIELD
        # The collection the last element record belonged to: its elements come in runs.
        element_key: bytes | None = None
        elements: Elements | None = None
        element, tombstone = record.ELEMENT, record.TOMBSTONE
        for row in rows:
            length = len(row)
            if length == 5:  # a record of slot 0 (all of them before format 4)
                key, offset, size, flags, expires = row
                slot = 0
            elif length == 8:  # an element record: + its version and field
                key, offset, size, flags, expires, slot, version, name = row
            else:
                key, offset, size, flags, expires, slot = row[:6]
            if size > largest:
                largest = size
            if flags & record.MAP:
                element_key = None
                if space is not None:
                    space.live += live
                    space.typed += typed
                    live, typed, current, space = 0, 0, -1, None
                slots.apply(*record.unpack_map(key))
                continue
            if slot != current:
                if space is not None:
                    space.live += live
                    space.typed += typed
                    live = typed = 0
                space = slots.spaces.get(slot)
                current, element_key = slot, None
                if space is None:
                    continue  # a slot no map holds any more: a flushed database
                keydir, deadlines, any_deadline, collections = (
                    space.locations, space.deadlines, space.deadline_of, space.collections)
            elif space is None:
                continue
            assert keydir is not None and deadlines is not None and collections is not None
            if flags & ~record.TYPE_BITS:
                if flags & element:  # (the hot path of a large collection's replay)
                    if key != element_key:
                        element_key, elements = key, collections.get(key)
                    if elements is None or elements.version != version:
                        if version > self._version:
                            self._version = version
                        continue  # of a version its key no longer has
                    fields = elements.fields
                    if flags & tombstone:
                        old = fields.pop(name, None)
                        change = 0
                    else:
                        old = fields.get(name)
                        fields[name] = base | offset << 32 | size
                        change = size
                    if old is not None:
                        change -= old & MASK32
                    elements.live += change
                    live += change
                    continue
                element_key = None
                if flags & record.META:
                    self._replay_meta(space, row, segment_id)  # (keeps live and typed)
                    continue
                if flags & record.EXPIRY:
                    if key in keydir:
                        deadlines.set(key, expires)
                    continue
                old = keydir.pop(key, None)  # a tombstone
                deadlines.discard(key)
                if collections:
                    live -= space.drop_elements(key)
            else:  # a value: a string's (no flags) or another type's (its kind bits)
                element_key = None
                old = keydir.get(key)
                if flags:
                    keydir[key] = base | (flags >> record.TYPE_SHIFT) << KIND_SHIFT | \
                        offset << 32 | size
                    typed += 1
                else:
                    keydir[key] = base | offset << 32 | size
                live += size
                if expires or any_deadline:
                    deadlines.set(key, expires)
                if collections:
                    live -= space.drop_elements(key)
            if old is not None:
                live -= old & MASK32
                if old & kind_field:
                    typed -= 1
        if space is not None:
            space.live += live
            space.typed += typed
        self.largest_value = largest

    def _replay_meta(self, space: KeyDir, row: tuple, segment_id: int) -> None:
        """Replay a collection's metadata record (record.py) into `space` (its live
        bytes and typed count too). A new version drops the elements of the old one,
        however many."""
        key, offset, size, flags, expires, _slot, version = row
        if version > self._version:
            self._version = version
        space.place(key, pack(segment_id, offset, size,
                              (flags & record.TYPE_BITS) >> record.TYPE_SHIFT))
        if expires or space.deadline_of:
            space.deadlines.set(key, expires)
        found = space.collections.get(key)
        if found is None or found.version != version:
            space.live -= space.drop_elements(key)
            space.collections[key] = Elements(version)

    # -- the active segment ------------------------------------------------

    def _start_segment(self, segment_id: int) -> None:
        path = os.path.join(self.directory, segment_name(segment_id))
        fd = open_fd(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL)
        fsync_dir(self.directory)  # the new name must survive before writes in it are acked
        change_segment_list(self.directory, add=[segment_id])
        self._active_id = segment_id
        self._active_fd = fd
        self._written = 0
        self._active_mapped = 0  # how much of it is mapped (see _map_active)
        self._active_hints = bytearray()
        self._hint_covers = 0

    def _write_buffer(self) -> None:
        """Write the buffer to the active segment, all or nothing.

        On a failed write (a full disk) the partial bytes are cut off again and
        the buffer kept, so a later flush retries and the file never holds a
        torn record followed by good ones.
        """
        if not self._buffer:
            return
        self._write_out(self._buffer)
        self._buffer.clear()

    def _write_out(self, *pieces: bytes | bytearray) -> None:
        """Write `pieces` at the end of the active segment, all or nothing (a failure
        cuts the file back to where it was)."""
        try:
            for piece in pieces:
                with memoryview(piece) as view:
                    done = 0
                    while done < len(view):
                        done += os.write(self._active_fd, view[done:])
        except OSError as exc:
            try:
                os.ftruncate(self._active_fd, self._written)
            except OSError:
                pass
            raise StorageError(f"write to {segment_name(self._active_id)} failed: {exc}") from exc
        size = sum(map(len, pieces))
        self._written += size
        self._written_seq += size

    def _sync(self) -> None:
        """fsync what is written (in the owner's thread, or the everysec one)."""
        with self._sync_guard:
            target = self._written_seq  # read first: later writes are not covered
            if self._durable_seq < target:
                try:
                    os.fdatasync(self._active_fd)
                except OSError as exc:
                    raise StorageError(f"fsync of {segment_name(self._active_id)} failed: "
                                       f"{exc}") from exc
                self._durable_seq = target

    def _rotate(self, gap: int = 1) -> None:
        """Make the active segment immutable (with its hint) and start the next one."""
        with self._sync_guard:
            self._seal_active(durable=self.fsync != "no")
            old = self._active_id
            self._sizes[old] = self._written
            self._unmap_active()
            os.close(self._active_fd)
            self._active_fd = -1
            self._start_segment(old + gap)

    def _mapped(self, segment_id: int) -> mmap.mmap:
        """Map a sealed segment that has no map (unmapping the least recently read one
        past MAX_MAPPED_SEGMENTS)."""
        self._check_open()
        name = segment_name(segment_id)
        try:
            fd = open_fd(os.path.join(self.directory, name), os.O_RDONLY)
            try:
                mapped = mmap.mmap(fd, self._sizes[segment_id], prot=mmap.PROT_READ)
            finally:
                os.close(fd)  # (the map keeps its own descriptor)
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read segment {name}: {exc}") from exc
        self._maps[segment_id] = mapped
        if len(self._maps) > MAX_MAPPED_SEGMENTS:
            self._maps.popitem(last=False)[1].close()
        return mapped

    def _pread_active(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._active_fd, size, offset)
        except OSError as exc:
            raise StorageError(f"cannot read segment {segment_name(self._active_id)}: "
                               f"{exc}") from exc

    def _unmap_active(self) -> None:
        if self._active_map is not None:
            self._active_map.close()
            self._active_map = None
        self._active_mapped = 0
        self._reads_past_map = 0

    def _map_active(self) -> None:
        """Map the active segment as far as it is written. It grows, and a map cannot
        (Python's mmap maps no further than the file's end), so a read past the map
        maps it again: at most once per flush, however many reads follow."""
        self._check_open()
        self._unmap_active()
        if self._written:
            self._active_map = mmap.mmap(self._active_fd, self._written, prot=mmap.PROT_READ)
        self._active_mapped = self._written
        self._reads_past_map = 0

    def _seal_active(self, durable: bool) -> None:
        """Write out the active segment, fsync it (if `durable`) and write its hint:
        before rotating, and on close. The caller holds _sync_guard."""
        self._write_buffer()
        if durable and self._durable_seq < self._written_seq:
            os.fsync(self._active_fd)
        self._durable_seq = self._written_seq
        if self._hint_covers == self._written:
            return  # nothing written since the open: the file already covers it all
        path = os.path.join(self.directory, hint_name(self._active_id))
        rows: bytes | bytearray = self._active_hints
        if self._hint_covers:
            earlier = hints.read_lazily(path)
            if earlier is None or earlier[0] != self._hint_covers:
                # Only a cache: the file keeps describing what it did (or is ignored),
                # and the rest of the segment is scanned at the next open.
                log.warning("hint file %s changed while the store was open; not rewritten",
                            path)
                return
            rows = earlier[2].tobytes() + rows
        hints.write(path, self._written, rows, durable)

    def _append(self, key: bytes, raw: bytes, flags: int, expires_at_ms: int = 0,
                slot: int = 0, *collection: object) -> int:
        """Buffer one record; return its location. `collection`: a collection's record's
        version (and an element's field), for its hint row."""
        size = len(raw)
        if size > self.largest_value:
            self.largest_value = size
        pending = self._written + len(self._buffer)
        if pending and pending + size > self.segment_size and self._batch_start is None:
            self._rotate()
            pending = 0
        self._buffer += raw
        self._active_hints += record.hint_row(key, pending, size, flags, expires_at_ms, slot,
                                              *collection)
        return pack(self._active_id, pending, size)

    def _writable(self, db: int) -> tuple[int, KeyDir]:
        """The slot and keys of database `db`, mapping it first (with a map record ahead
        of any record of its slot) if nothing was ever written to it."""
        slots = self._slots
        if db >= len(slots.slots):
            if db < 0:
                raise ValueError(f"database must be 0 or more, not {db}")
            slots.ensure(db)
            self._append_map()
        slot = slots.slots[db]
        return slot, slots.spaces[slot]

    def _append_map(self) -> None:
        slots = self._slots
        packed = record.pack_map(slots.next_slot, slots.slots)
        self._append(packed, record.encode_map(slots.next_slot, slots.slots), record.MAP)

    def _write_big(self, key: bytes, value: bytes, expires_at_ms: int, slot: int = 0,
                   flags: int = 0) -> int:
        """Write one large record straight to the active segment, after what is buffered,
        from the value's own bytes (record.encode_parts); return its location. Not inside
        a write batch: a batch is buffered whole (all or nothing)."""
        head, value, tail = record.encode_parts(key, value, flags, expires_at_ms, self._stamp,
                                                slot)
        size = len(head) + len(value) + len(tail)
        if size > self.largest_value:
            self.largest_value = size
        pending = self._written + len(self._buffer)
        if pending and pending + size > self.segment_size:
            self._rotate()
        self._write_buffer()
        offset = self._written
        self._write_out(head, value, tail)
        self._active_hints += record.hint_row(key, offset, size, flags, expires_at_ms, slot)
        return pack(self._active_id, offset, size)

    # -- the public interface ----------------------------------------------

    def put(self, key: bytes, value: bytes, expires_at_ms: int = 0, db: int = 0,
            kind: int = 0) -> None:
        """Write `value` under `key`, with a deadline (absolute Unix ms) or none (0): a
        put replaces the key's deadline, as Redis's SET does. `kind`: the type of the
        value (0 a string; 1-4 another type, packed whole by the caller)."""
        if self._closed or type(key) is not bytes or type(value) is not bytes:
            self._check_open()
            key, value = record.checked_pair(key, value)  # bytes-like copied, others refused
        elif len(key) + len(value) > record.MAX_VALUE_SIZE:
            record.checked_pair(key, value)  # raises with the reason
        if not self._buffer:  # the first write of a flush reads the clock for the rest
            self._stamp = time.time_ns() // 1_000_000
        slot, space = self._writable(db)
        flags = record.typed_flags(kind)
        if len(value) >= BIG_RECORD and self._batch_start is None:
            location = self._write_big(key, value, expires_at_ms, slot, flags)
        else:
            location = self._append(key, record.encode(key, value, flags, expires_at_ms,
                                                       self._stamp, slot),
                                    flags, expires_at_ms, slot)
        if space.collections:
            space.live -= space.drop_elements(key)
        if kind:
            location |= kind << KIND_SHIFT
            # A small collection is read back whole by the next command on it (HSET,
            # SADD read, change and write it): cached now, that read decodes nothing.
            self._cache_value(location, value)
        space.place(key, location)
        if expires_at_ms or space.deadline_of:
            space.deadlines.set(key, expires_at_ms)

    def put_many(self, pairs: Sequence[tuple[bytes, bytes]], db: int = 0) -> None:
        """put() each `(key, value)`, without a deadline, in order: the server's path
        for a pipeline's run of plain SETs (the same records as that many put() calls,
        for less work per record). Not one batch: after a crash any prefix of them may
        be on disk, as with put() calls that were not flushed; write_batch() is all or
        nothing. On an error the exception's `items_written` says how many were
        written (as `characters_written` does for a partial write)."""
        if not self._buffer:
            self._stamp = time.time_ns() // 1_000_000
        slot, space = self._writable(db)
        any_typed = space.typed  # (keys of other types become strings: see below)
        kind_field = KIND_FIELD
        stamp, keydir, deadlines = self._stamp, space.locations, space.deadlines
        any_deadline = space.deadline_of  # a dict: empty while no key has a deadline
        buffer, hints, frame, pack = self._buffer, self._active_hints, record.frame, record.pack
        big, segment_size = BIG_RECORD, self.segment_size  # (MAX_VALUE_SIZE is above it)
        largest = self.largest_value
        live = done = untyped = 0
        # (only a rotation changes these two)
        written, base = self._written, self._active_id << SEGMENT_SHIFT
        try:
            self._check_open()
            for key, value in pairs:
                if type(key) is not bytes or type(value) is not bytes or (
                        len(key) + len(value) >= big):
                    key, value = record.checked_pair(key, value)  # (or raises)
                    if len(value) >= BIG_RECORD and self._batch_start is None:
                        location = self._write_big(key, value, 0, slot)
                    else:
                        location = self._append(key, record.encode(key, value, 0, 0, stamp,
                                                                   slot), 0, 0, slot)
                    size = location & MASK32
                    largest, hints = self.largest_value, self._active_hints
                    written, base = self._written, self._active_id << SEGMENT_SHIFT
                else:
                    raw = frame(pack([stamp, 0, 0, key, value, slot] if slot
                                     else [stamp, 0, 0, key, value]))
                    size = len(raw)
                    if size > largest:
                        largest = self.largest_value = size
                    pending = written + len(buffer)
                    if pending and pending + size > segment_size and self._batch_start is None:
                        self._rotate()
                        pending, hints = 0, self._active_hints
                        written, base = self._written, self._active_id << SEGMENT_SHIFT
                    buffer += raw
                    hints += pack((key, pending, size, 0, 0, slot) if slot
                                  else (key, pending, size, 0, 0))
                    location = base | pending << 32 | size
                old = keydir.get(key)
                keydir[key] = location
                if old is None:
                    live += size
                else:
                    live += size - (old & MASK32)
                    if any_typed and old & kind_field:  # another type's: a string now
                        untyped += 1
                        live -= space.drop_elements(key)
                if any_deadline:
                    deadlines.set(key, 0)
                done += 1
        except BaseException as exc:
            exc.items_written = done  # type: ignore[attr-defined]
            raise
        finally:
            space.live += live
            space.typed -= untyped

    def get(self, key: bytes, db: int = 0) -> bytes | None:
        try:
            location = self._keydirs[db].get(key)
        except IndexError:  # a database nothing was ever written to
            location = None
        if location is None:
            self._check_open()
            return None
        cached = self._cache.get(location)
        if cached is not None:
            return cached
        return self._value_at(location)

    def _value_at(self, location: int) -> bytes:
        """The value of the record at `location`, read from its segment (or the buffer),
        checked, and cached."""
        segment_id, offset, size = unpack(location)
        source: bytes | bytearray | mmap.mmap
        at = offset
        if segment_id == self._active_id:
            if offset >= self._written:  # still in the buffer
                source, at = self._buffer, offset - self._written
            elif offset + size > self._active_mapped and \
                    self._reads_past_map < PREADS_BEFORE_REMAP:
                # Written since the map was made: a few reads pread it. (Mapping again
                # costs an mmap, an munmap and a page fault: a read-modify-write per
                # pass -- INCR, HSET, LPOP -- paid that every time.)
                self._reads_past_map += 1
                source, at = self._pread_active(offset, size), 0
            else:
                if offset + size > self._active_mapped:
                    self._map_active()
                assert self._active_map is not None
                source = self._active_map
        else:
            mapped = self._maps.get(segment_id)
            if mapped is None:
                mapped = self._mapped(segment_id)
            else:
                self._maps.move_to_end(segment_id)  # (least recently read: unmapped first)
            source = mapped
        if size < BIG_RECORD:
            data = bytes(source[at : at + size])
            value = record.intact_value(data)
        else:  # checked and unpacked in place: the value is copied once, not twice
            with memoryview(source) as view, view[at : at + size] as part:
                value = record.intact_value(part)
                data = part.tobytes() if value is None else b""
        if value is None:
            raise self._damaged(segment_id, offset, record.damage(data) or "damaged")
        self._cache_value(location, value)
        return value

    # -- collections of element records (record.py, docs/data-model.md) --------

    def create_collection(self, key: bytes, kind: int, expires_at_ms: int = 0,
                          db: int = 0) -> None:
        """Make `key` an empty collection of type `kind` kept as element records, under a
        new version: whatever the key held before (a value, or another collection's
        elements, however many) is gone with this one record."""
        self._check_open()
        key = record.as_bytes(key, "key")
        if not self._buffer:
            self._stamp = time.time_ns() // 1_000_000
        slot, space = self._writable(db)
        version = self._version = max(self._version + 1, time.time_ns() // 1000)
        flags = record.typed_flags(kind) | record.META
        location = self._append(key, record.encode_meta(key, kind, version, expires_at_ms,
                                                        slot, self._stamp),
                                flags, expires_at_ms, slot, version)
        space.forget(key)
        space.place(key, location | kind << KIND_SHIFT)
        space.collections[key] = Elements(version)
        if expires_at_ms or space.deadline_of:
            space.deadlines.set(key, expires_at_ms)

    def _elements(self, key: bytes, db: int) -> tuple[int, KeyDir, Elements]:
        """The slot and elements of collection `key` (ValueError if it is not one)."""
        self._check_open()
        space = self._slots.find(db)
        found = space.collections.get(key) if space is not None else None
        if found is None or space is None:
            raise ValueError(f"{key!r} is not a collection of element records")
        return self._slots.slots[db], space, found

    def put_element(self, key: bytes, field: bytes | int, value: bytes, db: int = 0) -> None:
        """Set element `field` of collection `key` to `value`: one record. A list's
        elements are named by int positions (keydir.Elements)."""
        key, value = record.checked_pair(key, value)
        if type(field) is not int:
            field = record.as_bytes(field, "field")
        slot, space, elements = self._elements(key, db)
        if not self._buffer:
            self._stamp = time.time_ns() // 1_000_000
        location = self._append(key, record.encode_element(key, field, value,
                                                           elements.version, slot,
                                                           self._stamp),
                                record.ELEMENT, 0, slot, elements.version, field)
        old = elements.fields.get(field)
        elements.fields[field] = location
        change = (location & MASK32) - (old & MASK32 if old is not None else 0)
        elements.live += change
        space.live += change
        if type(field) is int:
            elements.placed(field)

    def delete_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        """Remove element `field` of collection `key` (one record); False if it has none.
        The key stays, even empty: deleting it is the caller's (one more record)."""
        slot, space, elements = self._elements(key, db)
        old = elements.fields.pop(field, None)
        if old is None:
            return False
        if not self._buffer:
            self._stamp = time.time_ns() // 1_000_000
        self._append(key, record.encode_element(key, field, None, elements.version, slot,
                                                self._stamp),
                     record.ELEMENT | record.TOMBSTONE, 0, slot, elements.version, field)
        elements.live -= old & MASK32
        space.live -= old & MASK32
        if type(field) is int:
            elements.removed(field)
        return True

    def get_elements(self, key: bytes, fields: Sequence, db: int = 0) -> list[bytes | None]:
        """get_element() of each of `fields` (LRANGE's, HGETALL's path: one lookup of the
        collection, a local loop)."""
        found = list(map(self._elements(key, db)[2].fields.get, fields))
        # (None where not cached; cache.get(None) is None too)
        values: list[bytes | None] = list(map(self._cache.get, found))  # type: ignore[arg-type]
        if None in values:
            value_at = self._value_at
            for i, location in enumerate(found):
                if values[i] is None and location is not None:
                    values[i] = value_at(location)
        return values

    def element_range(self, key: bytes, db: int = 0) -> tuple[int, int]:
        """A list's positions, [head, tail) (keydir.Elements): no disk access."""
        elements = self._elements(key, db)[2]
        return elements.head, elements.tail

    def get_element(self, key: bytes, field: bytes | int, db: int = 0) -> bytes | None:
        location = self._elements(key, db)[2].fields.get(field)
        if location is None:
            return None
        cached = self._cache.get(location)
        return cached if cached is not None else self._value_at(location)

    def has_element(self, key: bytes, field: bytes | int, db: int = 0) -> bool:
        return field in self._elements(key, db)[2].fields

    def element_count(self, key: bytes, db: int = 0) -> int:
        return len(self._elements(key, db)[2].fields)

    def element_names(self, key: bytes, db: int = 0) -> list[bytes]:
        """The fields of collection `key`: in the order they were first set, until a
        compaction or a restart orders them as their records lie."""
        return list(self._elements(key, db)[2].fields)

    def _damaged(self, segment_id: int, offset: int, reason: str) -> CorruptionError:
        """A record found damaged while serving: logged (once) and counted; the error to
        raise for the read that found it."""
        if (segment_id, offset) not in self._corrupt_seen:
            self._corrupt_seen.add((segment_id, offset))
            self.corrupt_records += 1
            log.error("corrupt record in %s at offset %d: %s; reads of its key fail until "
                      "it is written again (`kvd check --repair` salvages the rest offline)",
                      os.path.join(self.directory, segment_name(segment_id)), offset, reason)
        return CorruptionError(segment_name(segment_id), offset, reason)

    def _cache_value(self, location: int, value: bytes) -> None:
        """Remember a decoded value by its location. A location is never reused for
        other bytes (segments are append-only; compaction writes new ones), so a
        cached value can go stale only by becoming unreachable, and ages out."""
        size = len(value) + CACHE_ENTRY_OVERHEAD
        if size > self._cache_limit >> 4:
            return
        cache = self._cache
        cache[location] = value
        self._cache_bytes += size
        while self._cache_bytes > self._cache_limit:
            self._cache_bytes -= len(cache.popitem(last=False)[1]) + CACHE_ENTRY_OVERHEAD

    def delete(self, key: bytes, db: int = 0) -> bool:
        self._check_open()
        key = record.as_bytes(key, "key")
        space = self._slots.find(db)
        old = space.locations.get(key) if space is not None else None
        if space is None or old is None:
            return False  # nothing on disk is live for it, so no tombstone is needed
        slot = self._slots.slots[db]
        self._append(key, record.encode_tombstone(key, slot), record.TOMBSTONE, 0, slot)
        space.forget(key)
        return True

    def expire(self, key: bytes, expires_at_ms: int, db: int = 0) -> bool:
        """Give an existing key a new deadline (0: none) without rewriting its value;
        False if there is no such key."""
        self._check_open()
        key = record.as_bytes(key, "key")
        space = self._slots.find(db)
        if space is None or key not in space.locations:
            return False
        if space.deadlines.get(key) != expires_at_ms:
            slot = self._slots.slots[db]
            self._append(key, record.encode_deadline(key, expires_at_ms, slot), record.EXPIRY,
                         expires_at_ms, slot)
            space.deadlines.set(key, expires_at_ms)
        return True

    def forget_expired(self, key: bytes, db: int = 0) -> None:
        """Drop a key whose deadline has passed, from memory only: its newest record
        expires again at every replay, and compaction drops what is not live."""
        space = self._slots.find(db)
        if space is not None:
            space.forget(key)

    # -- databases -----------------------------------------------------------

    def open_databases(self, count: int) -> None:
        """Map databases 0 to count - 1 now (one map record if any is new), so that each
        one's deadlines object stays the same until it is flushed or swapped."""
        self._check_open()
        if count > self._slots.databases():
            self._writable(count - 1)

    def flush_db(self, db: int) -> None:
        """Empty database `db`: one map record, whatever it holds (slots.py)."""
        self._check_open()
        self._slots.flush(db)
        self._append_map()

    def flush_all(self) -> None:
        """Empty every database: one map record."""
        self._check_open()
        for db in range(self._slots.databases()):
            self._slots.flush(db)
        self._append_map()

    def swap_dbs(self, a: int, b: int) -> None:
        """Exchange the contents of databases `a` and `b`: one map record."""
        self._check_open()
        if a < 0 or b < 0:
            raise ValueError("database must be 0 or more")
        self._slots.swap(a, b)
        self._append_map()

    def types_of(self, db: int) -> KindView:
        """Database `db`'s key types, read from the kind bits of its locations (keydir.py)."""
        return KindView(self._slots.find(db))

    def type_of(self, key: bytes, db: int = 0) -> int:
        return self.types_of(db).get(key, 0)

    def count(self, db: int = 0) -> int:
        """How many keys database `db` holds."""
        space = self._slots.find(db)
        return len(space.locations) if space is not None else 0

    def write_batch(self, ops: Sequence[tuple], db: int = 0) -> None:
        """Puts `(key, value)` or `(key, value, expires_at_ms)` and deletes `(key, None)`,
        in order, all or nothing on disk: after a crash at any byte the store holds
        every one of them or none (the batch framing is in record.py). Like put(),
        durable at the next flush(). Every pair is checked before anything is written."""
        self._check_open()
        checked = record.checked_ops(ops)
        self.begin_batch(sum(len(k) + len(v or b"") + 64 for k, v, _ in checked))
        try:
            for key, value, expires_at_ms in checked:
                if value is None:
                    self.delete(key, db)
                else:
                    self.put(key, value, expires_at_ms, db)
        finally:
            self.end_batch()

    def begin_batch(self, size_hint: int = 0) -> None:
        """Make every write until end_batch() one atomic batch on disk (a transaction's,
        whose size is not known in advance). The marker is reserved now and filled in
        at the end; no rotation happens in between, so a batch never spans segments
        (a segment may grow past its size by one batch). Batches nest: a batch begun
        inside another (MSET or a script inside EXEC) is part of the outer one."""
        self._check_open()
        self._batch_depth += 1
        if self._batch_depth > 1:
            return
        pending = self._written + len(self._buffer)
        if pending and pending + record.BATCH_MARKER_SIZE + size_hint > self.segment_size:
            self._rotate()
        self._batch_start = len(self._buffer)
        self._batch_hints = len(self._active_hints)
        self._buffer += record.encode_batch_marker(0)

    def end_batch(self) -> None:
        if self._batch_depth == 0:
            return
        self._batch_depth -= 1
        if self._batch_depth:
            return
        start, self._batch_start = self._batch_start, None
        assert start is not None  # (begun by begin_batch)
        size = len(self._buffer) - start - record.BATCH_MARKER_SIZE
        if size == 0:
            del self._buffer[start:]  # nothing was written: no marker either
        else:
            self._buffer[start:start + record.BATCH_MARKER_SIZE] = record.encode_batch_marker(size)

    def discard_batch(self) -> None:
        """Drop the open batch's writes before they reach the file (a script stopped
        half-way by SHUTDOWN NOSAVE or SIGTERM): on disk it never happened. The key
        directory still points at the dropped records, so the only call that may
        follow is close()."""
        if self._batch_depth == 0:
            return
        self._batch_depth = 0
        start, self._batch_start = self._batch_start, None
        del self._buffer[start:]
        del self._active_hints[self._batch_hints:]

    def __contains__(self, key: bytes) -> bool:
        return self.contains(key)

    def contains(self, key: bytes, db: int = 0) -> bool:
        space = self._slots.find(db)
        return space is not None and key in space.locations

    def keys(self, prefix: bytes = b"", db: int = 0) -> Iterator[bytes]:
        """Live keys of database `db` (in no particular order), as of the call."""
        self._check_open()
        space = self._slots.find(db)
        return space.keys(prefix) if space is not None else iter(())

    def __len__(self) -> int:
        """Keys in all databases."""
        return len(self._slots)

    def flush(self) -> None:
        """The group-commit barrier: every put and delete so far is written, and
        fsynced under fsync="always", when this returns."""
        self._check_open()
        self._write_buffer()
        self._reads_past_map = 0
        if self.fsync == "always":
            self._sync()

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._syncer is not None:
                self._syncer.stop()
            if self._plan is not None:
                self.abort_compaction(self._plan)
            with self._sync_guard:
                self._seal_active(durable=True)
        finally:
            self._closed = True
            self._close_fds()
            self._lock.release()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> StoreStats:
        total = sum(self._sizes.values()) + self._written + len(self._buffer)
        live = self._slots.live
        spaces = self._slots.spaces.values()
        return StoreStats(
            engine=self.engine,
            fsync=self.fsync,
            keys=len(self._slots),
            expiring_keys=sum(len(space.deadlines) for space in spaces),
            live_bytes=live,
            dead_bytes=total - live,
            total_bytes=total,
            segments=len(self._sizes) + 1,
            mapped_segments=len(self._maps),
            descriptors=DESCRIPTORS,  # the most it holds, however many segments
            compactions=self._compactions,
            corrupt_records=self.corrupt_records,
            compaction_in_progress=self._plan is not None,
            last_compaction=self._last_compaction,
        )

    # -- compaction (see storage.compaction for the protocol) ----------------

    def begin_compaction(self) -> CompactionPlan:
        """Rotate the active segment and freeze every older one for rewriting."""
        self._check_open()
        if self._plan is not None:
            raise CompactionError("a compaction is already in progress")
        self._rotate(gap=compaction.ID_GAP)
        frozen = sorted(self._sizes)
        compaction.remove_workdir(self.directory)
        plan = CompactionPlan(
            directory=self.directory,
            frozen=frozen,
            first_output_id=frozen[-1] + 1,
            segment_size=self.segment_size,
            keydirs=dict(self._slots.spaces),
            deadlines={slot: space.deadlines.snapshot()
                       for slot, space in self._slots.spaces.items()},
            slot_map=(self._slots.next_slot, list(self._slots.slots)),
            bytes_total=sum(self._sizes[s] for s in frozen),
            fsync=self.fsync != "no",
        )
        os.mkdir(plan.workdir, DIRECTORY_MODE)
        fsync_dir(self.directory)
        self._plan = plan
        return plan

    def finish_compaction(self, plan: CompactionJob) -> CompactionResult:
        """Apply a completed `run`: re-point keys, delete the frozen segments."""
        if self._finisher is None:
            self._finisher = self._finish(self._check_plan(plan), 1 << 62,
                                          background_delete=False)
        steps = self._finisher
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def finish_steps(self, plan: CompactionJob, batch: int = 4096
                     ) -> Generator[None, None, CompactionResult]:
        """`finish_compaction` in steps of `batch` keys; the generator returns the result.

        Re-pointing a million keys takes a good part of a second; a server
        advances this one step per loop pass and keeps serving in between
        (see `compaction.repoint_steps` for why that is safe). Once the first
        step has run the compaction can no longer be aborted, only finished:
        `abort_compaction` and `close()` finish it.
        """
        current = self._check_plan(plan)
        if self._finisher is not None:
            raise CompactionError("this compaction is already being finished")
        self._finisher = self._finish(current, batch, background_delete=True)
        return self._finisher

    def _finish(self, plan: CompactionPlan, batch: int, background_delete: bool
                ) -> Generator[None, None, CompactionResult]:
        try:
            manifest = compaction.read_manifest(self.directory)
            if manifest is None or manifest["frozen"] != plan.frozen:
                raise CompactionError("the compaction did not complete (no matching MANIFEST)")
            compaction.move_outputs(self.directory, manifest)
        except BaseException:
            self._finisher = None  # nothing has changed yet: it can still be aborted
            raise
        for segment_id in manifest["outputs"]:
            path = os.path.join(self.directory, segment_name(segment_id))
            self._sizes[segment_id] = os.path.getsize(path)  # mapped when first read
        self._drop_damaged(manifest)
        yield
        yield from compaction.repoint_steps(self._slots.spaces, self.directory, manifest,
                                            batch)
        for segment_id in plan.frozen:
            mapped = self._maps.pop(segment_id, None)
            if mapped is not None:
                mapped.close()
            del self._sizes[segment_id]
        if not background_delete:
            compaction.delete_frozen(self.directory, manifest)
            return self._finished(plan, manifest)
        # Unlinking gigabytes of segments takes tens of milliseconds of file
        # system work; a thread does it (the GIL is released meanwhile) and
        # the caller polls. The MANIFEST goes last, so a crash meanwhile is
        # finished by the next open.
        failure: list[BaseException] = []

        def delete() -> None:
            try:
                compaction.delete_frozen(self.directory, manifest)
            except BaseException as exc:
                failure.append(exc)

        deleter = threading.Thread(target=delete, name="kvd-delete-frozen", daemon=True)
        deleter.start()
        while deleter.is_alive():
            yield
            deleter.join(0.0002)  # lets the deleter have the GIL between its system calls
        if failure:
            self._plan = None
            self._finisher = None
            raise CompactionError(f"deleting the compacted segments failed: {failure[0]}")
        return self._finished(plan, manifest)

    def _drop_damaged(self, manifest: dict) -> None:
        """Keys whose live record the compaction found damaged (and kept aside in
        corrupt/, not copied): they would point into deleted segments, so they go --
        as they will after a restart, the frozen segments deleted."""
        for key, segment_id, offset, size, kept, *where in manifest.get("damaged", ()):
            location = pack(segment_id, offset, size)
            space = self._slots.spaces.get(where[0] if where else 0)
            if space is not None and len(where) > 1:  # an element: it goes, not its key
                elements = space.collections.get(key)
                if elements is not None and elements.fields.get(where[1]) == location:
                    del elements.fields[where[1]]
                    elements.live -= size
                    space.live -= size
            elif space is not None and space.is_live(key, location):
                space.forget(key)
            if (segment_id, offset) not in self._corrupt_seen:
                self._corrupt_seen.add((segment_id, offset))
                self.corrupt_records += 1
            log.error("compaction: the record of key %r in %s at offset %d is damaged; the key "
                      "is dropped, the record's bytes are kept in %s", key,
                      segment_name(segment_id), offset, kept)

    def _finished(self, plan: CompactionPlan, manifest: dict) -> CompactionResult:
        self._plan = None
        self._finisher = None
        after = manifest["bytes_written"]
        result = CompactionResult(
            bytes_before=plan.bytes_total,
            bytes_after=after,
            reclaimed=plan.bytes_total - after,
            duration_s=time.monotonic() - plan.started_at,
            keys=manifest["keys"],
        )
        self._compactions += 1
        self._last_compaction = result.as_dict()
        log.debug("compaction finished: %s", self._last_compaction)
        return result

    def abort_compaction(self, plan: CompactionJob) -> None:
        """Discard a compaction's output; the frozen segments stay as they were.

        A compaction whose finish has begun is finished instead: its outputs
        are already in the data directory and some keys point at them.
        """
        self._check_plan(plan)
        if self._finisher is not None:
            self.finish_compaction(plan)
            return
        compaction.remove_workdir(self.directory)
        self._plan = None

    def compact(self) -> CompactionResult:
        """Begin, run and finish a compaction in this process (blocking)."""
        plan = self.begin_compaction()
        try:
            compaction.run(plan)
        except BaseException:
            self.abort_compaction(plan)
            raise
        return self.finish_compaction(plan)

    # -- helpers ---------------------------------------------------------

    def _check_plan(self, plan: CompactionJob) -> CompactionPlan:
        """This store's current compaction, which `plan` must be."""
        self._check_open()
        if plan is not self._plan or self._plan is None:
            raise CompactionError("that compaction is not this store's current one")
        return self._plan

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the store is closed")

    def _close_fds(self) -> None:
        for mapped in self._maps.values():
            mapped.close()
        self._maps.clear()
        self._unmap_active()
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1


class _EverySecond:
    """fsync="everysec": a thread that fsyncs written data about once a second.

    Only the fsync runs here (it releases the GIL); writes stay in the owner's
    thread. Rotation and close take the same guard, so the fd it syncs is
    never closed under it.
    """

    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kvd-fsync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._store._sync()
            except StorageError as exc:
                log.error("background fsync failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

