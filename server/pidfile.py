"""The PID file: written by the daemon, locked for its life, and the only safe way to signal it.

The file holds the daemon's PID and nothing else, so `kill -USR1 $(cat kvd.pid)`
works. The daemon holds an `fcntl` (POSIX) lock on it for as long as it runs.
The lock, not the file's existence, is what says "running":

* a PID file whose lock is free is *stale* (the daemon died without removing
  it); nothing is ever signalled through it, and `kvd start` replaces it;
* the lock holder's PID (from F_GETLK) must equal the PID in the file, so a
  PID recycled by an unrelated process can never be mistaken for the daemon:
  that process does not hold the lock;
* the signal is sent through a pidfd opened *before* the lock is checked a
  second time, so the PID cannot be recycled between the check and the kill.

`acquire` is for the daemon; `inspect`, `send_signal` and `wait_for_exit`
are for `kvd stop`, `kvd status` and `kvctl`.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import select
import signal
import struct
import time

from storage.dirlock import try_lock

_FLOCK = "hhqqi4x"  # struct flock on Linux (64-bit off_t)


class PidFileError(Exception):
    """The PID file says no (another daemon, stale file, no file); the message says why."""


class AlreadyRunning(PidFileError):
    def __init__(self, path: str, pid: int | None) -> None:
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"kvd is already running ({who}, PID file {path})")
        self.pid = pid


class NotRunning(PidFileError):
    """No daemon: no PID file, or a stale one (its message says which)."""


def lock_holder(fd: int) -> int | None:
    """PID of the process holding a POSIX lock on the file, or None if it is free."""
    query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    return None if l_type == fcntl.F_UNLCK else pid


def _read_pid(fd: int) -> int | None:
    data = os.pread(fd, 64, 0).strip()
    return int(data) if data.isdigit() else None


class PidFile:
    """The daemon's own PID file, locked from `acquire` until `release`."""

    def __init__(self, path: str, fd: int, pid: int, replaced_stale: int | None) -> None:
        self.path = path
        self.pid = pid
        self.replaced_stale = replaced_stale  # PID named by a stale file we replaced
        self._fd = fd

    @classmethod
    def acquire(cls, path: str) -> PidFile:
        """Write this process's PID to `path` atomically and lock it.

        Raises AlreadyRunning if a live daemon holds the file. The current file
        is locked while its replacement (written and locked under a temporary
        name) is renamed over it, so two daemons starting at once cannot both
        win: the loser either finds the lock held or finds the file replaced
        under it, and then looks again.
        """
        path = os.path.abspath(path)
        pid = os.getpid()
        while True:
            try:
                old = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise PidFileError(f"cannot open PID file {path}: {exc.strerror}") from exc
            try:
                locked = try_lock(old)
            except OSError:
                os.close(old)
                raise
            if not locked:
                holder = lock_holder(old) or _read_pid(old)
                os.close(old)
                raise AlreadyRunning(path, holder)
            try:
                same = os.fstat(old).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(old)  # replaced while we opened it; look again
        stale = _read_pid(old)
        temp = f"{path}.{pid}.tmp"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, b"%d\n" % pid)
            os.fsync(fd)
            os.rename(temp, path)
        except BaseException:
            os.close(fd)
            _unlink_quietly(temp)
            os.close(old)
            raise
        os.close(old)
        return cls(path, fd, pid, stale if stale and stale != pid else None)

    def mark_shutting_down(self) -> None:
        """Touch the file: its new mtime tells `kvd stop` that the daemon acted on its
        signal, so a daemon that is slow to drain is told apart from one that is stuck."""
        if self._fd >= 0:
            os.utime(self._fd)

    def release(self) -> None:
        """Remove the file if it is still ours, and drop the lock."""
        if self._fd < 0:
            return
        try:
            if os.getpid() == self.pid and os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = -1


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclasses.dataclass(frozen=True)
class DaemonState:
    """What a PID file says: "running" (pid), "stale" (pid named by the file), or "stopped"."""

    state: str
    pid: int | None
    path: str

    def describe(self) -> str:
        if self.state == "running":
            return f"kvd is running (PID {self.pid})"
        if self.state == "stale":
            named = f"PID {self.pid}" if self.pid else "no PID"
            return (f"kvd is not running (stale PID file {self.path} names {named}, which does "
                    "not hold its lock)")
        return f"kvd is not running (no PID file at {self.path})"


def inspect(path: str) -> DaemonState:
    """Whether the daemon of this PID file runs, judged by its lock (never by `kill -0`)."""
    path = os.path.abspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return DaemonState("stopped", None, path)
    except OSError as exc:
        raise PidFileError(f"cannot read PID file {path}: {exc.strerror}") from exc
    try:
        holder = lock_holder(fd)
        named = _read_pid(fd)
    finally:
        os.close(fd)
    if holder is None:
        return DaemonState("stale", named, path)
    if named is not None and named != holder:
        # Written atomically, so this means the file was replaced by hand.
        raise PidFileError(
            f"PID file {path} names PID {named} but PID {holder} holds its lock; not signalling"
        )
    return DaemonState("running", holder, path)


def send_signal(path: str, signum: int) -> int:
    """Send `signum` to the daemon that holds `path`; return its PID.

    Raises NotRunning (no file, or a stale one: nothing is signalled).
    """
    state = inspect(path)
    if state.state != "running":
        raise NotRunning(state.describe())
    pid = state.pid
    assert pid is not None
    pidfd = _pidfd_open(pid)
    try:
        # The pidfd pins the process; re-check that it is still the lock holder.
        again = inspect(path)
        if again.state != "running" or again.pid != pid:
            raise NotRunning(again.describe())
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        raise NotRunning(f"kvd is not running (PID {pid} exited)") from None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return pid


def _pidfd_open(pid: int) -> int | None:
    """A pidfd for `pid`, or None where the platform has none (then os.kill is used)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise NotRunning(f"kvd is not running (PID {pid} exited)") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return None
        raise


def modified_ns(path: str) -> int | None:
    """The PID file's mtime (the daemon touches it when it begins or hurries a shutdown)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has exited; False if it is still there after `timeout` s."""
    try:
        pidfd = _pidfd_open(pid)
    except NotRunning:
        return True
    if pidfd is not None:
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            return bool(poller.poll(max(0.0, timeout) * 1000))
        finally:
            os.close(pidfd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # no pidfd: poll the PID (old kernels only)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
