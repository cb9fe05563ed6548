"""A small linearizability checker for a key-value register (Wing & Gong's search, with the
usual memoisation of (done operations, state)), one key at a time.

An operation is a read or a write of one key, with its invocation and response times. A
write that never got an answer (the connection died) has no response time: it may have
taken effect at any point after its invocation, or never.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import defaultdict


@dataclasses.dataclass(frozen=True)
class Op:
    key: bytes
    kind: str  # "read" or "write"
    value: bytes | None  # the value written, or the value the read returned (None: absent)
    invoked: float
    returned: float = math.inf  # inf: no answer; the operation may or may not have happened


def linearizable(ops: list[Op], initial: dict[bytes, bytes | None] | None = None) -> bool:
    """True if every key's history has a valid linearization."""
    initial = initial or {}
    by_key: dict[bytes, list[Op]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    return all(_key_linearizable(history, initial.get(key)) for key, history in by_key.items())


def _key_linearizable(history: list[Op], initial: bytes | None) -> bool:
    history = sorted(history, key=lambda op: op.invoked)
    count = len(history)
    full = (1 << count) - 1
    seen: set[tuple[int, object]] = set()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * count + 100))

    def search(done: int, state: bytes | None) -> bool:
        if done == full:
            return True
        if (done, state) in seen:
            return False
        seen.add((done, state))
        remaining = [i for i in range(count) if not done >> i & 1]
        if all(history[i].returned == math.inf and history[i].kind == "write"
               for i in remaining):
            return True  # the unanswered writes may all never have happened
        horizon = min(history[i].returned for i in remaining)
        for i in remaining:
            op = history[i]
            if op.invoked > horizon:
                break  # sorted by invocation: no later one can come first either
            if op.kind == "read":
                if op.value == state and search(done | 1 << i, state):
                    return True
            else:
                if search(done | 1 << i, op.value):
                    return True
                if op.returned == math.inf and search(done | 1 << i, state):
                    return True  # or it never happened
        return False

    return search(0, initial)
