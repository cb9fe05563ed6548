"""LATENCY: Redis's latency monitor, fed by what kvd already measures.

Off by default, as in Redis (latency-monitor-threshold 0); once CONFIG SET (or
--latency-monitor-threshold) gives it a threshold in milliseconds, every event
that took at least that long is kept: one sample per event per second (the
worst), the last 160, and the all-time maximum. kvd's events, under Redis's
names where they mean the same:

    command            one command (timed by the gate, with the slow log's clock)
    aof-fsync-always   a group commit's flush (and fsync) of the log
    expire-cycle       one active expiry cycle
    fork               forking the compaction child

No event costs anything while the monitor is off.
"""

from __future__ import annotations

import time
from collections import deque

from .slowlog import OFF  # the same "never" as the slow log's: the gate takes the smaller

SAMPLES = 160  # Redis's LATENCY_TS_LEN


class LatencyMonitor:
    def __init__(self, threshold_ms: int) -> None:
        self.threshold_ms = threshold_ms
        self.events: dict[str, tuple[deque, list]] = {}  # name -> (samples, [max])

    @property
    def threshold_ms(self) -> int:
        return self._threshold_ms

    @threshold_ms.setter
    def threshold_ms(self, ms: int) -> None:
        self._threshold_ms = ms
        self.threshold_ns = ms * 1_000_000 if ms > 0 else OFF  # read by the gate per batch

    def add_if_needed(self, event: str, duration_ns: int) -> None:
        ms = duration_ns // 1_000_000
        if self.threshold_ms > 0 and ms >= self.threshold_ms:
            self.add(event, ms)

    def add(self, event: str, ms: int) -> None:
        samples, worst = self.events.setdefault(event, (deque(maxlen=SAMPLES), [0]))
        worst[0] = max(worst[0], ms)
        now = int(time.time())
        if samples and samples[-1][0] == now:
            samples[-1][1] = max(samples[-1][1], ms)
        else:
            samples.append([now, ms])

    def reset(self, names: list[str] | None = None) -> int:
        if names is None:
            count = len(self.events)
            self.events.clear()
            return count
        return sum(1 for name in names if self.events.pop(name, None) is not None)
