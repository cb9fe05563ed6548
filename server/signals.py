"""The signal pipe: signals become ordinary events of the select loop.

The Python-level handlers do nothing. CPython's C-level handler writes the
signal number as one byte to the wakeup fd (`signal.set_wakeup_fd`), here the
write end of a non-blocking socketpair whose read end is registered in the
selector. The loop reads the bytes and acts on the *set* of signals seen:
signals coalesce, they are not counted (the kernel coalesces them too).

No work happens in a handler, so a signal can never interrupt the loop in the
middle of a write, a flush or a compaction step; and PEP 475 retries the
system calls a signal interrupts (EINTR), so the loop needs no special cases.
"""

from __future__ import annotations

import signal
import socket

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)
IGNORED_WHEN_EXITING = (signal.SIGHUP, signal.SIGUSR1)


def _ignore(signum: int, frame: object) -> None:
    """Nothing: the wakeup fd already carried the signal to the loop."""


class SignalPipe:
    """Owns the socketpair and the handlers; `read()` returns the signals since the last call."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        # A storm of signals must not fill the pipe before the loop drains it.
        for sock, option in ((self._writer, socket.SO_SNDBUF), (self._reader, socket.SO_RCVBUF)):
            sock.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
        self._previous: dict[int, object] = {}
        self._installed = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def install(self) -> None:
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, _ignore)
        self._installed = True

    def read(self) -> set[int]:
        """The distinct signal numbers waiting in the pipe (empty if none)."""
        seen: set[int] = set()
        while True:
            try:
                data = self._reader.recv(4096)
            except (BlockingIOError, InterruptedError):
                return seen
            if not data:
                return seen
            seen.update(data)

    def close(self, exiting: bool = False) -> None:
        """Restore the handlers found at install().

        `exiting`: the process ends next. A HUP or USR1 sent in that window (logrotate's
        postrotate, `kvctl compact`, a reload) has nothing left to act on; it is ignored
        rather than allowed its default action, which would turn a clean exit into death
        by signal (exit status -10 for systemd and the shell).
        """
        if self._installed:
            signal.set_wakeup_fd(-1)
            for signum, previous in self._previous.items():
                if exiting and signum in IGNORED_WHEN_EXITING:
                    previous = signal.SIG_IGN
                signal.signal(signum, previous)  # type: ignore[arg-type]
            self._installed = False
        self._reader.close()
        self._writer.close()


def reset_in_child() -> None:
    """Give a freshly forked child the signal state of a new process.

    Default dispositions for every signal the daemon handles, and no wakeup fd:
    the child must never write into the parent's signal pipe, so a signal sent
    to the child can never reach the parent's loop.
    """
    signal.set_wakeup_fd(-1)
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
