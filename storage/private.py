"""A data directory's files are private: created readable and writable by their owner only
(0600, the directory 0700) whatever the umask, and never opened through a symlink.

Every value is in these files, so a data directory readable by other users would give
them what `requirepass` and the 0600 socket keep from them; and a symlink planted in a
directory others can write to would make kvd overwrite whatever it points at. Every
module of the store creates and opens its files through here.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import BinaryIO

from .errors import StorageError

log = logging.getLogger("kvd.storage")

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


def open_fd(path: str, flags: int) -> int:
    """os.open for a file in a data directory: not through a symlink, created 0600."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the name is a symlink
            raise StorageError(f"{path} is a symbolic link; kvd does not follow links inside "
                               "its data directory") from None
        raise


def create(path: str, exclusive: bool = False, buffering: int = -1) -> BinaryIO:
    """A new file (or one emptied: `exclusive` refuses an existing one) for writing."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.fdopen(open_fd(path, flags), "wb", buffering=buffering)


def prepare_directory(directory: str) -> None:
    """Create a data directory (0700), or check an existing one: refused if any user may
    write to it, a warning if others may read it (a directory made before kvd kept its
    data private: `chmod 700` it)."""
    os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
    mode = os.stat(directory).st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise StorageError(f"{directory} is writable by every user (mode {mode & 0o7777:04o}): "
                           "anyone could replace its files; chmod 700 it")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users (mode %04o): the values in it are not "
                    "private; chmod 700 it", directory, mode & 0o7777)
