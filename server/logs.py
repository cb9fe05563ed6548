"""The daemon's log: a file (reopened on SIGHUP, for logrotate) or stderr."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s kvd[%(process)d] %(levelname)s %(message)s"

log = logging.getLogger("kvd")


class ReopenableFileHandler(logging.FileHandler):
    """A FileHandler whose file can be reopened by path after logrotate moved it. A log
    file kvd creates is readable by its owner only (keys and clients' addresses are in
    it); one that exists keeps its mode (logrotate's `create` sets it)."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.setStream(self._open())
            if old is not None:
                old.close()
        finally:
            self.release()


def setup(log_file: str, level: str) -> logging.Handler:
    """Send the `kvd` loggers (server and storage) to `log_file` ("-" for stderr)."""
    if log_file == "-":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = ReopenableFileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger("kvd")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    return handler


def set_level(level: str) -> None:
    """CONFIG SET loglevel."""
    logging.getLogger("kvd").setLevel(level.upper())


def reopen() -> bool:
    """Reopen the log file (SIGHUP); False when logging goes to stderr."""
    reopened = False
    for handler in logging.getLogger("kvd").handlers:
        if isinstance(handler, ReopenableFileHandler):
            handler.reopen()
            reopened = True
    return reopened
