"""Active expiry (Redis's active expire cycle): keys whose deadline passed and that nobody
reads are dropped by a timer, in bounded time per cycle, beside the keyspace that does
the dropping (keyspace.expire_cycle) and lazy expiry on every lookup.

A cycle runs at most every EXPIRE_PERIOD_S while keys are due, each dropping due keys
for at most EXPIRE_BUDGET_S; one that runs out of time comes back on the next pass,
after the clients have been served. A short budget is what keeps latency low during an
expiry storm (25 ms, Redis's slow cycle, measured a 35 ms p99 for GETs while a million
keys expired at once; 2 ms: see ./run bench --only expiry).
"""

from __future__ import annotations

import time

from .commit import GroupCommit
from .databases import Databases
from .latency import LatencyMonitor
from .stats import Stats
from .timers import Timers

EXPIRE_PERIOD_S, EXPIRE_BUDGET_S = 0.1, 0.002


class ActiveExpiry:
    def __init__(self, keyspace: Databases, stats: Stats, latency: LatencyMonitor,
                 commit: GroupCommit, timers: Timers) -> None:
        self.keyspace = keyspace
        self.stats = stats
        self.latency = latency
        self.commit = commit
        self.timers = timers
        self._last = 0.0
        self._hurry = False  # the last cycle ran out of time with keys still due

    def schedule(self, now: float) -> None:
        """Arm the timer for the earliest deadline, no sooner than a period after the last
        cycle; a cycle that ran out of time comes back next pass."""
        next_ms = self.keyspace.next_deadline()
        if not next_ms:
            self.timers.cancel("expire")
            return
        if self._hurry:
            at = now
        else:
            wait = (next_ms - time.time_ns() // 1_000_000) / 1000
            at = max(now + wait, self._last + EXPIRE_PERIOD_S)
        armed = self.timers.deadline("expire")
        if armed is None or at < armed:
            self.timers.set("expire", at, self._cycle)

    def _cycle(self, now: float) -> None:
        self._last = now
        if self.keyspace.keep_expired:  # CLIENT PAUSE: nothing is written meanwhile
            return
        before = self.stats.expired_keys
        started = time.perf_counter_ns()
        self._hurry = self.keyspace.expire_cycle(EXPIRE_BUDGET_S)
        self.latency.add_if_needed("expire-cycle", time.perf_counter_ns() - started)
        if self.stats.expired_keys != before:
            self.commit.dirty = True  # the sqlite engine deletes their rows
