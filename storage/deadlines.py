"""The keys that have a deadline, in memory: which deadline a key has, and which are due.

A deadline is an absolute Unix time in milliseconds (Redis's convention, so
it survives restarts and means the same to every process). Keys without one
cost nothing here. The dict answers "when does this key expire" in O(1); a
heap of (deadline, key) finds the due keys in order. A heap entry goes stale
when its key's deadline changes or the key goes away: it is skipped when
popped, and the heap is rebuilt once stale entries outnumber live ones, so a
key whose TTL is refreshed on every request does not grow it without bound.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator


class Deadlines:
    __slots__ = ("_of", "_heap", "_sum")

    def __init__(self) -> None:
        self._of: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        self._sum = 0  # of all deadlines, for the average TTL in O(1)

    def __len__(self) -> int:
        return len(self._of)

    def __bool__(self) -> bool:
        return bool(self._of)

    def get(self, key: bytes) -> int:
        """The key's deadline, 0 if it has none."""
        return self._of.get(key, 0)

    def set(self, key: bytes, deadline: int) -> None:
        """Give `key` a deadline; 0 removes it."""
        if not deadline:
            self.discard(key)
            return
        old = self._of.get(key)
        if old == deadline:
            return
        self._sum += deadline - (old or 0)
        self._of[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._of) + 1024:
            self._rebuild()

    def discard(self, key: bytes) -> None:
        old = self._of.pop(key, None)
        if old is not None:
            self._sum -= old

    def clear(self) -> None:
        self._of.clear()
        self._heap.clear()
        self._sum = 0

    def due(self, now_ms: int, limit: int) -> list[bytes]:
        """Up to `limit` keys whose deadline is at or before `now_ms`, earliest first.
        They keep their deadline until the caller removes them."""
        heap, of = self._heap, self._of
        found: dict[bytes, None] = {}  # a key set, cleared and set again, has two entries
        while heap and len(found) < limit and heap[0][0] <= now_ms:
            deadline, key = heapq.heappop(heap)
            if of.get(key) == deadline:
                found[key] = None
        return list(found)

    def next_deadline(self) -> int:
        """The earliest deadline (perhaps of a stale entry: never later than the true one),
        0 if there is none."""
        return self._heap[0][0] if self._heap else 0

    def overdue_fraction(self, now_ms: int, samples: int = 20) -> float:
        """An estimate of the share of keys with a deadline that are past it: a few
        random entries of the heap (Redis estimates expired_stale_perc by sampling too)."""
        heap, of = self._heap, self._of
        if not heap:
            return 0.0
        picks = [heap[random.randrange(len(heap))] for _ in range(samples)]
        return sum(deadline <= now_ms and of.get(key) == deadline
                   for deadline, key in picks) / samples

    def average_ms(self) -> int:
        return self._sum // len(self._of) if self._of else 0

    def items(self) -> Iterator[tuple[bytes, int]]:
        return iter(self._of.items())

    def snapshot(self) -> dict[bytes, int]:
        """The key -> deadline mapping itself (read-only for the caller: a forked
        compaction child reads it as it stood at the fork)."""
        return self._of

    def _rebuild(self) -> None:
        self._heap = [(deadline, key) for key, deadline in self._of.items()]
        heapq.heapify(self._heap)
