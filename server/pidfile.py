"""The PID file: written by the daemon, locked for its life, and the only safe way to signal it.

The file holds the daemon's PID and nothing else while it runs, so
`kill -USR1 $(cat kvd.pid)` works. A daemon whose shutdown failed (its store
could not be flushed, its loop crashed) does not remove the file: it leaves it
stale with the reason on a second line, for `kvd stop` and `kvd status` to tell.
The daemon holds an `fcntl` (POSIX) lock on it for as long as it runs.
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
    data = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
    return int(data) if data.isdigit() else None


def _read_failure(fd: int) -> str:
    """The second line a daemon whose shutdown failed left in its PID file ('' if none)."""
    lines = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
    return lines[1].strip() if len(lines) > 1 else ""


class PidFile:
    """The daemon's own PID file, locked from `acquire` until `release`."""

    def __init__(self, path: str, fd: int, pid: int, replaced_stale: int | None,
                 stale_failure: str = "") -> None:
        self.path = path
        self.pid = pid
        self.replaced_stale = replaced_stale  # PID named by a stale file we replaced
        self.stale_failure = stale_failure  # why that daemon's shutdown failed, if it said
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
        stale, stale_failure = _read_pid(old), _read_failure(old)
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
        return cls(path, fd, pid, stale if stale and stale != pid else None, stale_failure)

    def mark_shutting_down(self) -> None:
        """Touch the file: its new mtime tells `kvd stop` that the daemon acted on its
        signal, so a daemon that is slow to drain is told apart from one that is stuck."""
        if self._fd >= 0:
            os.utime(self._fd)

    def release(self, failure: str = "") -> None:
        """Remove the file if it is still ours, and drop the lock.

        With `failure` (why the shutdown did not complete) the file stays, stale, with
        that reason on its second line: `kvd stop` waiting for this PID must not report
        a clean stop, and the next `kvd start` replaces the file as any stale one.
        """
        if self._fd < 0:
            return
        try:
            ours = (os.getpid() == self.pid
                    and os.fstat(self._fd).st_ino == os.stat(self.path).st_ino)
            if ours and failure:
                reason = " ".join(failure.split())[:1000]
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, b"%d\n%s\n" % (self.pid, reason.encode()), 0)
            elif ours:
                os.unlink(self.path)
        except OSError:
            pass  # (a PID file that cannot be rewritten stays as it was: stale)
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
    failure: str = ""  # stale: why that daemon's shutdown failed, if it could say

    def describe(self) -> str:
        if self.state == "running":
            return f"kvd is running (PID {self.pid})"
        if self.state == "stale":
            named = f"PID {self.pid}" if self.pid else "no PID"
            said = f"; its shutdown failed: {self.failure}" if self.failure else ""
            return (f"kvd is not running (stale PID file {self.path} names {named}, which does "
                    f"not hold its lock{said})")
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
        failure = _read_failure(fd) if holder is None else ""
    finally:
        os.close(fd)
    if holder is None:
        return DaemonState("stale", named, path, failure)
    if named is not None and named != holder:
        # Written atomically, so this means the file was replaced by hand.
        raise PidFileError(
            f"PID file {path} names PID {named} but PID {holder} holds its lock; not signalling"
        )
    return DaemonState("running", holder, path)


def send_signal(path: str, signum: int, resume: bool = False) -> int:
    """Send `signum` to the daemon that holds `path`; return its PID.

    `resume`: follow it with SIGCONT, as systemd follows its stop signal, so that a
    daemon stopped by SIGSTOP (or a debugger's ^Z) acts on it instead of waiting.
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
        for number in (signum, signal.SIGCONT) if resume else (signum,):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, number)
            else:
                os.kill(pid, number)
    except ProcessLookupError:
        raise NotRunning(f"kvd is not running (PID {pid} exited)") from None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return pid


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP, ^Z, a debugger): it answers nobody and
    acts on no signal until SIGCONT. Read from /proc (False where there is none)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last ')' (comm may hold anything)
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"T", b"t")


def unresponsive(pid: int | None) -> str:
    """Why a running daemon may not answer, for an error message."""
    if pid is not None and is_stopped(pid):
        return f"PID {pid} is stopped (SIGSTOP?): kill -CONT {pid} resumes it"
    who = f"PID {pid}" if pid is not None else "it"
    return f"{who} is busy or stuck (its log shows where: the watchdog's stack)"


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
