"""The server's counters (INFO's stats section) and its ops/sec sampler."""

from __future__ import annotations

import time
from collections import deque

OPS_SAMPLE_INTERVAL, OPS_SAMPLES = 0.1, 16  # ops/s over the last ~1.6 s, like Redis
# Distinct error codes INFO errorstats keeps; the codes are the server's, but a script's
# redis.error_reply() may invent any, so more are counted together under one name.
ERROR_CODES_KEPT = 128
OTHER_ERRORS = "ERRORSTATS_OVERFLOW"


class CommandStat:
    """INFO commandstats of one command (a subcommand has its own: "config|get")."""

    __slots__ = ("calls", "ns", "rejected", "failed")

    def __init__(self) -> None:
        self.calls = 0  # ran (an error it answered included)
        self.ns = 0  # the time they took
        self.rejected = 0  # refused before running (arity, auth, busy, a store that cannot write)
        self.failed = 0  # ran and answered an error


class Stats:
    """Counters for INFO's stats section. Plain attributes: the hot path adds to them."""

    __slots__ = ("connections_received", "commands_processed", "writes_processed", "flushes",
                 "failed_flushes", "net_input_bytes", "net_output_bytes", "rejected_connections",
                 "keyspace_hits", "keyspace_misses", "error_replies", "protocol_errors",
                 "signals_received", "expired_keys", "expired_stale_perc",
                 "expired_time_cap_reached_count", "_samples", "_next_sample", "last_save",
                 "commands", "errors")

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
        self.commands: dict[str, CommandStat] = {}  # by full name: INFO commandstats
        self.errors: dict[str, int] = {}  # by error code: INFO errorstats

    def command(self, name: str) -> CommandStat:
        """The counters of the command `name` (made on its first use)."""
        stat = self.commands.get(name)
        if stat is None:
            stat = self.commands[name] = CommandStat()
        return stat

    def error(self, reply: bytes) -> None:
        """An error reply was sent (Redis's afterErrorReply): counted in total and by its
        code, the first word of "-CODE message" (ERR when there is none in 32 bytes)."""
        self.error_replies += 1
        space = reply.find(b" ", 0, 32)
        code = reply[1:space].decode("utf-8", "replace") if space > 1 else "ERR"
        errors = self.errors
        if code not in errors and len(errors) >= ERROR_CODES_KEPT:
            code = OTHER_ERRORS
        errors[code] = errors.get(code, 0) + 1

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
