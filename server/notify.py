"""Keyspace notifications (Redis's notify.c): a command that changes a key tells
subscribers of `__keyspace@<db>__:<key>` (the message: the event's name) and of
`__keyevent@<db>__:<event>` (the message: the key), for the classes of events that
`notify-keyspace-events` turns on (off by default, as in Redis).

Commands name their events as Redis 7.0 does ("set", "hset", "lpush", "del",
"rename_from", "expired"...) through `Keyspace.notify`; the keyspace itself tells of
"new" keys, "expired" ones (lazy and active expiry alike) and "keymiss" lookups. With
every class off a notification costs one test of an int. Like every pub/sub message,
a notification is not stored: it goes to the subscribers connected now.
"""

from __future__ import annotations

from collections.abc import Callable

KEYSPACE = 1 << 0  # K
KEYEVENT = 1 << 1  # E
GENERIC = 1 << 2  # g: del, expire, rename_from...
STRING = 1 << 3  # $
LIST = 1 << 4  # l
SET = 1 << 5  # s
HASH = 1 << 6  # h
ZSET = 1 << 7  # z
EXPIRED = 1 << 8  # x
EVICTED = 1 << 9  # e (kvd never evicts: accepted, never sent)
STREAM = 1 << 10  # t
KEY_MISS = 1 << 11  # m (not part of A, as in Redis)
MODULE = 1 << 13  # d (kvd has no modules: accepted, never sent)
NEW = 1 << 14  # n (not part of A, as in Redis)
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_CLASSES = {"A": ALL, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
            "x": EXPIRED, "e": EVICTED, "K": KEYSPACE, "E": KEYEVENT, "t": STREAM,
            "m": KEY_MISS, "d": MODULE, "n": NEW}
# CONFIG GET's order (Redis's keyspaceEventsFlagsToString)
_SHOWN = "g$lshzxetdn"


def parse_classes(text: str) -> int | None:
    """The flags a `notify-keyspace-events` string turns on; None for a character that
    names no class."""
    flags = 0
    for char in text:
        flag = _CLASSES.get(char)
        if flag is None:
            return None
        flags |= flag
    return flags


def show_classes(flags: int) -> str:
    """The string CONFIG GET shows for `flags`, as Redis writes it."""
    if flags & ALL == ALL:
        shown = "A"
    else:
        shown = "".join(char for char in _SHOWN if flags & _CLASSES[char])
    return shown + "".join(char for char in "KEm" if flags & _CLASSES[char])


class KeyspaceEvents:
    """The server's notifier, shared by every database's keyspace."""

    def __init__(self, flags: int = 0) -> None:
        self.flags = flags
        # PUBLISH's delivery (pubsub.py), set when the server is built.
        self.publish: Callable[[bytes, bytes], int] = _nowhere

    def __call__(self, kind: int, event: bytes, key: bytes, db: int) -> None:
        """Tell of `event` on `key` of database `db`, if its class `kind` is on."""
        flags = self.flags
        if not flags & kind:
            return
        if flags & KEYSPACE:
            self.publish(b"__keyspace@%d__:%s" % (db, key), event)
        if flags & KEYEVENT:
            self.publish(b"__keyevent@%d__:%s" % (db, event), key)


def _nowhere(channel: bytes, message: bytes) -> int:
    return 0
