"""The watchdog: a stuck loop shows up in the log with its stack, not as a silent daemon.

The loop marks when each pass begins and ends (two float stores, nothing
more on the hot path). A daemon thread looks at the mark a few times per
period; when one pass has run longer than `--watchdog-period`, it logs the
loop thread's stack once for that pass, as Redis's watchdog does from
SIGALRM. It never touches the loop's state and takes no lock the loop
takes, so it cannot make a stall worse.

A thread rather than faulthandler's timer: re-arming that timer costs a
thread start per pass (~40 us), more than a whole request. The price: a
pass stuck inside one C call that holds the GIL is seen only when the call
returns. `PassTimes` keeps the figures INFO shows either way.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("kvd.watchdog")

SLOTS, SLOT_S = 6, 10.0  # "the longest pass in the last minute", in 10-second slots


class PassTimes:
    """The longest loop pass over the last minute (in 10-second slots), and how many
    passes ran longer than the watchdog period."""

    __slots__ = ("threshold", "slow_passes", "_slot_start", "_slots")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.slow_passes = 0
        self._slot_start = time.monotonic()
        self._slots = [0.0] * SLOTS

    def record(self, began: float, now: float) -> None:
        took = now - began
        self._advance(now)
        if took > self._slots[-1]:
            self._slots[-1] = took
        if self.threshold and took > self.threshold:
            self.slow_passes += 1

    def longest_ms(self) -> int:
        self._advance(time.monotonic())
        return int(max(self._slots) * 1000)

    def _advance(self, now: float) -> None:
        """Drop the slots that are now more than a minute old."""
        elapsed = int((now - self._slot_start) / SLOT_S)
        if elapsed:
            kept = self._slots[min(elapsed, SLOTS):]
            self._slots = kept + [0.0] * (SLOTS - len(kept))
            self._slot_start += elapsed * SLOT_S


class Watchdog:
    """Set `began` to time.monotonic() when a pass starts and to 0.0 when it ends."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.began = 0.0
        self.stack_dumps = 0
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.period <= 0:
            return
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="kvd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None

    def _watch(self) -> None:
        reported = 0.0
        check_every = min(max(self.period / 4, 0.01), 1.0)
        while not self._stop.wait(check_every):
            began = self.began
            if not began or began == reported:
                continue
            stalled = time.monotonic() - began
            if stalled > self.period:
                reported = began
                self.stack_dumps += 1
                self._report(stalled)

    def _report(self, stalled: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame else "(no stack)\n"
        log.warning("watchdog: one pass of the loop has run for %.2f s (--watchdog-period %g s); "
                    "nothing else is served until it ends. The loop's stack:\n%s",
                    stalled, self.period, stack.rstrip("\n"))
