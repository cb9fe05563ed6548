"""Deadlines the loop must wake up for, each with what to do then (Redis's time events).

A feature that needs the loop at a given time (the drain timeout, resuming
accepts, the next automatic-compaction check; active expiry next) sets a
named timer instead of adding a branch to the loop: the loop sleeps until the
nearest one and runs those that are due after each pass.
"""

from __future__ import annotations

from collections.abc import Callable


class Timers:
    def __init__(self) -> None:
        self._timers: dict[str, tuple[float, Callable[[float], None]]] = {}

    def set(self, name: str, deadline: float, callback: Callable[[float], None]) -> None:
        """Run `callback(now)` once, at or after `deadline` (replacing a timer of that name)."""
        self._timers[name] = (deadline, callback)

    def cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._timers

    def deadline(self, name: str) -> float | None:
        entry = self._timers.get(name)
        return None if entry is None else entry[0]

    def timeout(self, now: float) -> float | None:
        """Seconds until the nearest deadline (0 if one is due), None if there is none."""
        if not self._timers:
            return None
        return max(0.0, min(deadline for deadline, _ in self._timers.values()) - now)

    def run_due(self, now: float) -> None:
        if not self._timers:
            return
        for name in [name for name, (deadline, _) in self._timers.items() if deadline <= now]:
            entry = self._timers.get(name)
            if entry is not None and entry[0] <= now:  # not re-set by an earlier callback
                del self._timers[name]
                entry[1](now)
