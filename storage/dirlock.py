"""One process per data directory: an fcntl lock on `<dir>/LOCK`.

POSIX record locks (`fcntl.lockf`) are not inherited by a forked child, so a
compaction child can never keep the directory locked after its parent died.
They are per process, though: a second open of the same directory inside one
process would succeed at the OS level, so this module also keeps a registry
of the directories this process holds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

from .errors import LockedError
from .layout import LOCK
from .private import open_fd

_held: set[tuple[int, int]] = set()
_held_guard = threading.Lock()


class DirectoryLock:
    """The exclusive lock on one data directory; `release()` gives it up."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        path = os.path.join(directory, LOCK)
        fd = open_fd(path, os.O_RDWR | os.O_CREAT)
        st = os.fstat(fd)
        self._identity = (st.st_dev, st.st_ino)
        with _held_guard:
            if self._identity in _held:
                os.close(fd)
                raise LockedError(directory, os.getpid())
            try:
                locked = try_lock(fd)
            except OSError:
                os.close(fd)
                raise
            if not locked:
                holder = _read_pid(fd)
                os.close(fd)
                raise LockedError(directory, holder)
            _held.add(self._identity)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with _held_guard:
            _held.discard(self._identity)
            os.close(self._fd)  # closing drops the fcntl lock
            self._fd = None


def try_lock(fd: int) -> bool:
    """Take an exclusive fcntl lock on `fd` without waiting; False if another process
    holds it. (Also used by the daemon's PID file.)"""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (ValueError, IndexError, OSError):
        return None
