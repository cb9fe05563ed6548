"""SLOWLOG: the commands that took longer than slowlog-log-slower-than microseconds.

As Redis keeps it: newest first, at most slowlog-max-len entries, each with an
id, the Unix time, the duration in microseconds, the arguments (at most 32,
each cut at 128 bytes, passwords redacted), the client's address and name.
A negative threshold turns it off; 0 logs every command.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from .redact import redacted

if TYPE_CHECKING:
    from .connection import Connection

MAX_ARGS, MAX_ARG_BYTES = 32, 128
OFF = 1 << 62  # the threshold (ns) of a slow log that is off: nothing takes that long


class SlowLog:
    def __init__(self, slower_than_us: int, max_len: int) -> None:
        self.entries: deque[tuple] = deque()
        self.next_id = 0
        self.max_len = max_len
        self.slower_than_us = slower_than_us

    @property
    def slower_than_us(self) -> int:
        return self._slower_than_us

    @slower_than_us.setter
    def slower_than_us(self, us: int) -> None:
        self._slower_than_us = us
        # The duration from which a command is logged, in ns (one beyond any when off): an
        # attribute, as the gate reads it for every batch of requests.
        self.threshold_ns = OFF if us < 0 else min(us * 1000, OFF - 1)

    def add(self, conn: Connection, args: list[bytes], duration_ns: int) -> None:
        shown = redacted(args)[:MAX_ARGS]
        if len(args) > MAX_ARGS:
            shown[-1] = b"... (%d more arguments)" % (len(args) - MAX_ARGS + 1)
        shown = [arg if len(arg) <= MAX_ARG_BYTES else
                 arg[:MAX_ARG_BYTES] + b"... (%d more bytes)" % (len(arg) - MAX_ARG_BYTES)
                 for arg in shown]
        self.entries.appendleft((self.next_id, int(time.time()), duration_ns // 1000, shown,
                                 conn.addr.encode(), conn.name))
        self.next_id += 1
        self.trim()

    def trim(self) -> None:
        while len(self.entries) > self.max_len:
            self.entries.pop()

    def reset(self) -> None:
        self.entries.clear()

