"""What lives in a data directory, by name, and the small file operations on it.

    <dir>/META              engine and format version (JSON), written once (and on upgrade)
    <dir>/LOCK              fcntl lock held by the one process using the directory
    <dir>/<id>.seg          log engine: a segment, ids ascending = replay order
    <dir>/<id>.hint         log engine: the hint file of that segment
    <dir>/compaction/       log engine: a compaction's output until it is applied
    <dir>/kvd.sqlite3       sqlite engine: the database (plus -wal and -shm files)
"""

from __future__ import annotations

import json
import os

from .errors import FormatError

META = "META"
LOCK = "LOCK"
COMPACTION_DIR = "compaction"
SQLITE_FILE = "kvd.sqlite3"
# 2: write-batch markers in segments; 3: deadline changes (see record.py). Older
# directories hold neither and are upgraded by writing the new version at open; a kvd
# that reads only an older version then refuses the directory instead of taking a
# marker or a deadline change for a key.
FORMAT_VERSION = 3
UPGRADABLE_VERSIONS = (1, 2)

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


def _write_meta(path: str, engine: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"engine": engine, "format": FORMAT_VERSION}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
