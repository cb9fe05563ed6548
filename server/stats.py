"""The server's counters (INFO's stats section) and its ops/sec sampler."""

from __future__ import annotations

import time
from collections import deque

OPS_SAMPLE_INTERVAL, OPS_SAMPLES = 0.1, 16  # ops/s over the last ~1.6 s, like Redis


class Stats:
    """Counters for INFO's stats section. Plain attributes: the hot path adds to them."""

    __slots__ = ("connections_received", "commands_processed", "writes_processed", "flushes",
                 "failed_flushes", "net_input_bytes", "net_output_bytes", "rejected_connections",
                 "keyspace_hits", "keyspace_misses", "error_replies", "protocol_errors",
                 "signals_received", "expired_keys", "expired_stale_perc",
                 "expired_time_cap_reached_count", "_samples", "_next_sample", "last_save")

    def __init__(self) -> None:
        self.reset()
        # Unix time of the last flush that made writes durable, or of the start (LASTSAVE;
        # not a counter: CONFIG RESETSTAT leaves it).
        self.last_save = int(time.time())
        self._samples: deque[tuple[float, int]] = deque(maxlen=OPS_SAMPLES)
        self._next_sample = 0.0

    def reset(self) -> None:
        """CONFIG RESETSTAT: every counter back to 0."""
        self.connections_received = 0
        self.commands_processed = 0
        self.writes_processed = 0
        self.flushes = 0
        self.failed_flushes = 0
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.rejected_connections = 0
        self.keyspace_hits = 0
        self.keyspace_misses = 0
        self.error_replies = 0
        self.protocol_errors = 0
        self.signals_received = 0
        self.expired_keys = 0
        self.expired_stale_perc = 0.0
        self.expired_time_cap_reached_count = 0

    def sample(self, now: float) -> None:
        """Once per loop pass: a sample of the command count every OPS_SAMPLE_INTERVAL."""
        if now >= self._next_sample:
            self._next_sample = now + OPS_SAMPLE_INTERVAL
            self._samples.append((now, self.commands_processed))

    def instantaneous_ops_per_sec(self) -> int:
        """Commands per second over the last ~1.6 s of samples (0 until there are two)."""
        samples = list(self._samples) + [(time.monotonic(), self.commands_processed)]
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        return int((c1 - c0) / (t1 - t0)) if t1 > t0 else 0
