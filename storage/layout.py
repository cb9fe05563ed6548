"""What lives in a data directory, by name, and the small file operations on it.

    <dir>/META              engine and format version (JSON), written once (and on upgrade)
    <dir>/LOCK              fcntl lock held by the one process using the directory
    <dir>/SEGMENTS          log engine: the ids of the directory's segments (JSON)
    <dir>/<id>.seg          log engine: a segment, ids ascending = replay order
    <dir>/<id>.hint         log engine: the hint file of that segment
    <dir>/compaction/       log engine: a compaction's output until it is applied
    <dir>/kvd.sqlite3       sqlite engine: the database (plus -wal and -shm files)
    <dir>/FUNCTIONS         the server's function libraries (FUNCTION DUMP's payload),
                            replaced whole on each change; absent while there are none
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable

from .errors import FormatError, IntegrityError
from .private import create

META = "META"
LOCK = "LOCK"
SEGMENTS = "SEGMENTS"
CORRUPT_DIR = "corrupt"  # damaged data kept aside by repair and compaction, never deleted
COMPACTION_DIR = "compaction"
SQLITE_FILE = "kvd.sqlite3"
FUNCTIONS = "FUNCTIONS"
# 2: write-batch markers in segments; 3: deadline changes; 4: databases (a record's
# slot, the map record; the sqlite engine's table per slot). See record.py. An older
# directory holds none of what came after it and is upgraded by writing the new version
# at open, nothing rewritten; a kvd that reads only an older version then refuses the
# directory instead of taking a marker, a deadline change or a map record for a key.
FORMAT_VERSION = 4
UPGRADABLE_VERSIONS = (1, 2, 3)

_ID_WIDTH = 16


def segment_name(segment_id: int) -> str:
    return f"{segment_id:0{_ID_WIDTH}d}.seg"


def hint_name(segment_id: int) -> str:
    return f"{segment_id:0{_ID_WIDTH}d}.hint"


def segment_ids(directory: str) -> list[int]:
    """The ids of the segment files in `directory`, ascending."""
    ids = []
    for name in os.listdir(directory):
        stem, dot, ext = name.partition(".")
        if ext == "seg" and stem.isdigit():
            ids.append(int(stem))
    return sorted(ids)


def fsync_dir(directory: str) -> None:
    """Make created, renamed and removed names in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_meta(directory: str) -> dict | None:
    """A data directory's META, or None where there is none (nor a directory)."""
    path = os.path.join(directory, META)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path} is unreadable: {exc}") from exc


def engine_of(directory: str) -> str | None:
    """The engine a data directory's META names, or None (no directory, no META yet)."""
    meta = _read_meta(directory)
    return None if meta is None else meta.get("engine")


def format_of(directory: str) -> int | None:
    """The format version a data directory's META names, or None."""
    meta = _read_meta(directory)
    return None if meta is None else meta.get("format")


def holds_data(directory: str) -> bool:
    """Whether `directory` is a data directory: a META, segments or the SQLite file (an
    empty or unrelated directory is not; opening a store there would make it one)."""
    if os.path.exists(os.path.join(directory, META)):
        return True
    return bool(segment_ids(directory)) or os.path.exists(os.path.join(directory, SQLITE_FILE))


def check_meta(directory: str, engine: str) -> None:
    """Write META on first use; refuse a directory made by another engine or version."""
    path = os.path.join(directory, META)
    meta = _read_meta(directory)
    if meta is None:
        if engine == "log" and segment_ids(directory) or os.path.exists(
            os.path.join(directory, SQLITE_FILE)
        ):
            raise FormatError(f"{directory} holds data but no META file")
        _write_meta(path, engine)
        return
    if meta.get("engine") != engine:
        raise FormatError(
            f"{directory} holds a {meta.get('engine')!r} store; it cannot be opened "
            f"with engine {engine!r} (give no engine to open it with its own)"
        )
    if meta.get("format") in UPGRADABLE_VERSIONS:
        _write_meta(path, engine)
        return
    if meta.get("format") != FORMAT_VERSION:
        raise FormatError(
            f"{directory} has format version {meta.get('format')}; "
            f"this kvd reads version {FORMAT_VERSION}"
        )


class LibraryFile:
    """What both engines keep beside their data for the server: the function libraries
    (Redis 7 keeps them in its RDB and AOF). A change is durable when the call returns:
    the new file is written, fsynced and renamed over the old one, so a crash leaves the
    old libraries or the new ones, never a mix; an error (a full disk) leaves the old."""

    directory: str

    def functions(self) -> bytes:
        """The libraries' payload, b"" if there are none."""
        try:
            with open(os.path.join(self.directory, FUNCTIONS), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def save_functions(self, payload: bytes) -> None:
        path = os.path.join(self.directory, FUNCTIONS)
        if not payload:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            fsync_dir(self.directory)
            return
        tmp = path + ".tmp"
        try:
            with create(tmp) as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        fsync_dir(self.directory)


def _write_meta(path: str, engine: str) -> None:
    tmp = path + ".tmp"
    with create(tmp) as f:
        f.write(json.dumps({"engine": engine, "format": FORMAT_VERSION}).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


# -- the segment list ------------------------------------------------------------------
#
# A log-engine directory records which segments it has, so that a segment that goes
# missing (deleted, lost in a copy) or one that does not belong (from another
# directory, a backup, a stray copy) stops the open with a clear error instead of
# keys silently vanishing or coming back. The list changes only where the set of
# segments does: a new active segment is listed once its file exists and before
# anything is written to it; a compaction's outputs are listed once moved in, its
# frozen segments unlisted once deleted (a crash between is finished by the next
# open, under the compaction's MANIFEST). So at open the files and the list agree,
# except for one newest segment that is empty and not yet listed (a crash right
# after creating it), which is taken in.

_list_guard = threading.Lock()  # a compaction's deleter thread updates it too


def read_segment_list(directory: str) -> list[int] | None:
    """The ids SEGMENTS lists, or None for a directory without the file (one written
    before kvd kept it, or a new one)."""
    path = os.path.join(directory, SEGMENTS)
    try:
        with open(path, "rb") as f:
            listed = json.loads(f.read()).get("segments")
    except FileNotFoundError:
        return None
    except (ValueError, OSError, AttributeError) as exc:
        raise IntegrityError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(listed, list) or not all(type(i) is int for i in listed):
        raise IntegrityError(f"{path} does not hold a list of segment ids")
    return sorted(listed)


def write_segment_list(directory: str, ids: list[int]) -> None:
    path = os.path.join(directory, SEGMENTS)
    tmp = path + ".tmp"
    with create(tmp) as f:
        f.write(json.dumps({"segments": sorted(ids)}).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)


def change_segment_list(directory: str, add: Iterable[int] = (), remove: Iterable[int] = ()
                        ) -> None:
    """List `add` and unlist `remove` (idempotent: a step of a compaction may be redone).
    A directory without a list is left so: its first check lists what it has."""
    with _list_guard:
        before = read_segment_list(directory)
        if before is None:
            return
        listed = set(before)
        changed = (listed | set(add)) - set(remove)
        if changed != listed:
            write_segment_list(directory, sorted(changed))


def checked_segment_ids(directory: str) -> list[int]:
    """The segment ids of a log-engine directory, checked against its SEGMENTS list:
    IntegrityError names a listed segment that is missing and a segment that is not
    listed. A directory without a list gets one, of the segments it has."""
    present = segment_ids(directory)
    listed = read_segment_list(directory)
    if listed is None:
        write_segment_list(directory, present)
        return present
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    if extra and not missing and len(extra) == 1 and extra[0] > max(listed, default=0) \
            and os.path.getsize(os.path.join(directory, segment_name(extra[0]))) == 0:
        write_segment_list(directory, present)  # created, then a crash before it was listed
        return present
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(segment_name(i) for i in missing)
                        + " (the keys written there are lost unless the files are restored)")
    if extra:
        problems.append("not this directory's: " + ", ".join(segment_name(i) for i in extra))
    if problems:
        raise IntegrityError(
            f"the segments of {directory} do not match its {SEGMENTS} list; "
            + "; ".join(problems) + "; put the files back, or run `kvd check --repair` to "
            "accept the loss (unlisted segments are moved aside, never deleted)")
    return present
