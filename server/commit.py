"""Group commit: one flush of the store per loop pass, before any reply of that pass.

This is the rule that makes "acknowledged" mean "durable" (Redis's
beforeSleep writes and fsyncs the AOF before it sends replies): the writes of
every request a pass executed are flushed together, then the replies go out.
If the flush fails (a full disk), the replies of that pass's writes -- and
only those -- become errors, and further writes are refused (`-MISCONF`) until
a retried flush succeeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from storage import StorageError

from .connection import Connection
from .latency import LatencyMonitor
from .resp import error
from .stats import Stats

log = logging.getLogger("kvd.server")


class GroupCommit:
    def __init__(self, store, stats: Stats, latency: LatencyMonitor | None = None) -> None:
        self.store = store
        self.stats = stats
        self.latency = latency  # told how long each flush took (LATENCY's aof-fsync-always)
        self.dirty = False  # a write was executed since the last flush
        self.write_error: str | None = None  # why the store cannot write, while it cannot

    def refusal(self) -> bytes | None:
        """The reply refusing a write while the store cannot write (after one more try
        to flush what is pending), or None if writes are accepted."""
        if self.write_error is None:
            return None
        try:
            self.store.flush()
        except StorageError as exc:
            self.write_error = str(exc)
            return error(f"MISCONF writes are refused until kvd can write its data again: "
                         f"{self.write_error}")
        log.warning("the store writes again; accepting writes")
        self.write_error = None
        return None

    def commit(self, touched: Iterable[Connection]) -> None:
        """Flush the pass's writes; on failure, answer each of them with an error."""
        if not self.dirty:
            return
        self.dirty = False
        try:
            started = time.perf_counter_ns()
            self.store.flush()
            if self.latency is not None:
                self.latency.add_if_needed("aof-fsync-always", time.perf_counter_ns() - started)
            self.stats.flushes += 1
            self.stats.last_save = int(time.time())
        except StorageError as exc:
            self.stats.failed_flushes += 1
            self.write_error = str(exc)
            log.error("flush failed, writes refused until it succeeds: %s", exc)
            failed = error(f"ERR write not acknowledged: {exc} (it may still be applied "
                           "once the store can write again)")
            for conn in touched:
                for slot in conn.write_slots:
                    conn.replies[slot] = failed
