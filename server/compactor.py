"""Compaction requests from SIGUSR1 and COMPACT: coalesced, run from the loop.

Level-triggered: a request sets `pending`; however many requests arrive
before the loop gets to it, one compaction runs. The loop calls
`run_pending()` between passes, never from a signal handler.
"""

from __future__ import annotations

import logging
import time

from storage import StorageError

log = logging.getLogger("kvd.server")


class Compactor:
    def __init__(self, store) -> None:
        self.store = store
        self.pending = False
        self.in_progress = False
        self.requested = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.last_status = "none"
        self.last_duration_s = 0.0
        self.last_reclaimed = 0

    def request(self, source: str) -> None:
        self.requested += 1
        if not self.pending:
            log.info("compaction requested (%s)", source)
        self.pending = True

    def run_pending(self) -> None:
        """Run one compaction if any was requested since the last one started."""
        if not self.pending:
            return
        self.pending = False
        self.started += 1
        self.in_progress = True
        started = time.monotonic()
        log.info("compaction started")
        try:
            result = self.store.compact()
        except StorageError as exc:
            self.failed += 1
            self.last_status = "failed"
            log.error("compaction failed: %s", exc)
        else:
            self.completed += 1
            self.last_status = "ok"
            self.last_reclaimed = result.reclaimed
            log.info("compaction done in %.2f s: %d bytes before, %d after, %d reclaimed",
                     result.duration_s, result.bytes_before, result.bytes_after, result.reclaimed)
        finally:
            self.in_progress = False
            self.last_duration_s = time.monotonic() - started

    def stop(self) -> None:
        """Forget pending requests (the server is shutting down)."""
        self.pending = False

    def info(self, last: dict) -> dict:
        return {
            "compactions_requested": self.requested,
            "compactions_started": self.started,
            "compactions_completed": self.completed,
            "compactions_failed": self.failed,
            "compaction_in_progress": int(self.in_progress),
            "compaction_pending": int(self.pending),
            "last_compaction_status": self.last_status,
            "last_compaction_duration_s": f"{self.last_duration_s:.3f}",
            "last_compaction_reclaimed_bytes": self.last_reclaimed,
        }
