"""Publish/subscribe (Redis's pubsub.c): who listens to which channel, pattern and shard
channel, and delivering a message to them.

A message is not stored: PUBLISH hands it to the subscribers connected now, as Redis
does. Delivering appends the message to the subscriber's replies of this pass (sent with
the pass, after its group commit, like any reply): RESP2 arrays, RESP3 push messages.
A subscriber that stops reading is dropped once it owes more than --max-output-buffer
(network.py), never kept growing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .glob import compile_glob

if TYPE_CHECKING:
    from .connection import Connection


class PubSub:
    def __init__(self) -> None:
        # channel -> its subscribers, in the order they subscribed
        self.channels: dict[bytes, dict[Connection, None]] = {}
        self.shard_channels: dict[bytes, dict[Connection, None]] = {}
        # pattern -> (its matcher, its subscribers)
        self.patterns: dict[bytes, tuple[Callable[[bytes], bool], dict[Connection, None]]] = {}
        # Told of each message for a subscriber: the network queues it with the pass.
        self.deliver: Callable[[Connection, bytes], None] = _nowhere

    def subscribe(self, conn: Connection, channel: bytes, shard: bool = False) -> bool:
        """Whether `conn` was not subscribed to `channel` yet (it is now)."""
        mine = conn.shard_channels if shard else conn.channels
        if channel in mine:
            return False
        mine.add(channel)
        table = self.shard_channels if shard else self.channels
        table.setdefault(channel, {})[conn] = None
        return True

    def unsubscribe(self, conn: Connection, channel: bytes, shard: bool = False) -> bool:
        mine = conn.shard_channels if shard else conn.channels
        if channel not in mine:
            return False
        mine.discard(channel)
        table = self.shard_channels if shard else self.channels
        listeners = table.get(channel)
        if listeners is not None:
            listeners.pop(conn, None)
            if not listeners:
                del table[channel]
        return True

    def psubscribe(self, conn: Connection, pattern: bytes) -> bool:
        if pattern in conn.patterns:
            return False
        conn.patterns.add(pattern)
        entry = self.patterns.get(pattern)
        if entry is None:
            entry = self.patterns[pattern] = (compile_glob(pattern), {})
        entry[1][conn] = None
        return True

    def punsubscribe(self, conn: Connection, pattern: bytes) -> bool:
        if pattern not in conn.patterns:
            return False
        conn.patterns.discard(pattern)
        entry = self.patterns.get(pattern)
        if entry is not None:
            entry[1].pop(conn, None)
            if not entry[1]:
                del self.patterns[pattern]
        return True

    def forget(self, conn: Connection) -> None:
        """A subscriber closed."""
        for channel in list(conn.channels):
            self.unsubscribe(conn, channel)
        for channel in list(conn.shard_channels):
            self.unsubscribe(conn, channel, shard=True)
        for pattern in list(conn.patterns):
            self.punsubscribe(conn, pattern)

    def publish(self, channel: bytes, message: bytes, shard: bool = False) -> int:
        """Deliver `message` to the subscribers of `channel` (and, unless `shard`, of the
        patterns matching it); how many received it."""
        listeners = (self.shard_channels if shard else self.channels).get(channel)
        received = 0
        if listeners:
            received += self._deliver_to(listeners, [b"smessage" if shard else b"message",
                                                     channel, message])
        if not shard:
            for pattern, (matches, subscribers) in list(self.patterns.items()):
                if subscribers and matches(channel):
                    received += self._deliver_to(subscribers,
                                                 [b"pmessage", pattern, channel, message])
        return received

    def _deliver_to(self, subscribers: dict[Connection, None], parts: list[bytes]) -> int:
        """One message to each of `subscribers`, encoded once per protocol, not once per
        subscriber; how many."""
        encoded: dict = {}
        deliver = self.deliver
        receivers = list(subscribers)  # (a delivery may drop a subscriber meanwhile)
        for conn in receivers:
            resp = conn.resp
            data = encoded.get(resp)
            if data is None:
                data = encoded[resp] = resp.push(parts)
            deliver(conn, data)
        return len(receivers)


def _nowhere(conn: Connection, message: bytes) -> None:
    pass
