"""The event loop's core (Redis's ae.c): descriptors, each with the callback its readiness
calls, and named timers (timers.py). It knows nothing of kvd: the server decides what a
pass does (server/loop.py) and registers what it watches here.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Any

from .timers import Timers

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

Callback = Callable[[int], None]  # called with the events that are ready (READ | WRITE)


class EventLoop:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.timers = Timers()

    def watch(self, fileobj: Any, events: int, callback: Callback) -> None:
        """Call `callback(ready)` when `fileobj` is ready for `events` (READ, WRITE or
        both); watching it again changes what is watched."""
        try:
            self._selector.modify(fileobj, events, callback)
        except KeyError:
            self._selector.register(fileobj, events, callback)

    def unwatch(self, fileobj: Any) -> None:
        """Stop watching `fileobj` (nothing if it was not watched)."""
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def wait(self, timeout: float | None) -> list[tuple[Callback, int]]:
        """What is ready within `timeout` seconds (None: until something is), as (callback,
        ready events) pairs."""
        return [(key.data, ready) for key, ready in self._selector.select(timeout)]

    def until_next_timer(self) -> float | None:
        """Seconds until the nearest timer is due (None: there is none)."""
        return self.timers.timeout(time.monotonic())

    def close(self) -> None:
        self._selector.close()
