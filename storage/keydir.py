"""The in-memory key directory of one database slot, and the record locations it holds.

A location is packed into one int, `segment << 67 | kind << 64 | offset << 32 | size`:
a dict of `key -> (segment, offset, size)` tuples costs about 220 bytes per key beyond
the key itself, one int 36 (measured in tests/bench). Offsets and sizes are below 2**32
because segments are capped below 4 GiB and so are records. `kind` is the type of the
key's value (0 a string; record.py's 1-7), in the log engine's key directory only: a
dict of the types of 1M hashes cost 42 bytes a key, the three bits nothing (the int is
as large either way). An element's location has kind 0. This module is where that
packing is defined; the replay and put loops of logstore.py spell `pack` out inline (a
call per record is a tenth of their time) and say so.

`KeyDir` owns a slot's keys: where each key's newest record is, its type and deadline,
the elements of its collection of element records (docs/data-model.md), and the live
bytes -- what a compaction copies (`is_live`), what a key costs when it goes (`forget`).
"""

from __future__ import annotations

from collections.abc import Iterator

from .deadlines import Deadlines

MASK32 = 0xFFFFFFFF
SEGMENT_SHIFT = 67
KIND_SHIFT = 64
KIND_FIELD = 0x7 << KIND_SHIFT
PLACE = ~KIND_FIELD  # a location without its kind: where the record is


def pack(segment_id: int, offset: int, size: int, kind: int = 0) -> int:
    return segment_id << SEGMENT_SHIFT | kind << KIND_SHIFT | offset << 32 | size


def segment_of(location: int) -> int:
    return location >> SEGMENT_SHIFT


def kind_of(location: int) -> int:
    return (location >> KIND_SHIFT) & 0x7


def unpack(location: int) -> tuple[int, int, int]:
    """(segment id, offset, size)"""
    return location >> SEGMENT_SHIFT, (location >> 32) & MASK32, location & MASK32


def size_of(location: int) -> int:
    return location & MASK32


def offset_of(location: int) -> int:
    return (location >> 32) & MASK32


class Elements:
    """A collection kept as element records (docs/data-model.md): the incarnation of its
    key (`version`), where each element's newest record is (the log engine; the sqlite
    engine keeps its elements in a table), and the bytes of those records.

    A list's elements are named by their positions, integers: they occupy [head, tail)
    without a gap (Kvrocks's layout), so index i is position head + i and a push at
    either end writes one record."""

    __slots__ = ("version", "fields", "live", "head", "tail")

    def __init__(self, version: int) -> None:
        self.version = version
        self.fields: dict = {}  # field (bytes; a list's: int position) -> packed location
        self.live = 0
        self.head = self.tail = 0  # (a list's)

    def placed(self, position: int) -> None:
        """A list element was written at `position` (at an end, or within)."""
        if self.head == self.tail:
            self.head, self.tail = position, position + 1
        elif position < self.head:
            self.head = position
        elif position >= self.tail:
            self.tail = position + 1

    def removed(self, position: int) -> None:
        """A list element at an end was removed."""
        if position == self.head:
            self.head += 1
        elif position == self.tail - 1:
            self.tail -= 1
        if self.head >= self.tail:
            self.head = self.tail = 0

    def measure(self) -> None:
        """Set a list's [head, tail) from its positions (after replay)."""
        if self.fields and type(next(iter(self.fields))) is int:
            self.head, self.tail = min(self.fields), max(self.fields) + 1


class KeyDir:
    """One slot's keys in memory: where their records are, their types, deadlines and
    elements, and the bytes of the records they point at (`live`).

    The dicts are public so that the hot loops (replay, put, get) use them without a
    call; everything else goes through the methods."""

    __slots__ = ("locations", "deadlines", "deadline_of", "live", "types", "typed",
                 "collections")

    def __init__(self) -> None:
        self.locations: dict[bytes, int] = {}  # key -> packed location of its record
        # The types of keys that are not strings: the sqlite engine's (it has no
        # locations); the log engine's are the kind bits of their locations, and
        # `typed` counts the keys with kind bits (0: every key is a string).
        self.types: dict[bytes, int] = {}
        self.typed = 0
        # The keys whose value is element records (typed keys): their elements
        self.collections: dict[bytes, Elements] = {}
        self.deadlines = Deadlines()  # the keys with a deadline (deadlines.py)
        self.deadline_of = self.deadlines.snapshot()  # its dict: a test without a call
        self.live = 0  # bytes of the records the key directory points at

    def __len__(self) -> int:
        return len(self.locations)

    def keys(self, prefix: bytes = b"") -> Iterator[bytes]:
        """The keys as of the call (a snapshot: writes may follow), those with `prefix`."""
        snapshot = list(self.locations)
        if not prefix:
            return iter(snapshot)
        return (k for k in snapshot if k.startswith(prefix))

    def forget(self, key: bytes) -> None:
        """`key` is gone (deleted, expired, or its record lost): its location, type,
        deadline and elements, however many, in O(1)."""
        old = self.locations.pop(key, None)
        if old is not None:
            self.live -= old & MASK32
            if old & KIND_FIELD:
                self.typed -= 1
        self.deadlines.discard(key)
        if self.types:
            self.types.pop(key, None)
        if self.collections:
            self.live -= self.drop_elements(key)

    def place(self, key: bytes, location: int) -> None:
        """Point `key` at `location` (its kind bits say its type), keeping `typed` (the
        count of keys with kind bits) and `live`."""
        old = self.locations.get(key)
        self.locations[key] = location
        self.live += location & MASK32
        if location & KIND_FIELD:
            self.typed += 1
        if old is not None:
            self.live -= old & MASK32
            if old & KIND_FIELD:
                self.typed -= 1

    def drop_elements(self, key: bytes) -> int:
        """Forget the element records of `key` (deleted, expired, or written again):
        O(1) here, whatever their number; return the live bytes they held (which the
        caller takes off `live`)."""
        dropped = self.collections.pop(key, None)
        return dropped.live if dropped is not None else 0

    def is_live(self, key: bytes, location: int) -> bool:
        """Whether the record at `location` is `key`'s newest (what compaction copies;
        `location` without kind bits, as a segment's rows give it)."""
        current = self.locations.get(key)
        return current is not None and current & PLACE == location

    def element_is_live(self, key: bytes, version: int, field: bytes, location: int) -> bool:
        """Whether the element record at `location` is the newest of `field` in the
        current version of collection `key`."""
        elements = self.collections.get(key)
        return (elements is not None and elements.version == version
                and elements.fields.get(field) == location)

    def repoint(self, key: bytes, location: int, frozen: set[int],
                element: tuple | None = None) -> None:
        """After a compaction: point `key` (or its element `(version, field)`) at its
        copy at `location` -- only if it still points into a `frozen` segment (a write
        made during the compaction wins). A key keeps its kind bits."""
        table = self.locations
        if element is not None:
            elements = self.collections.get(key)
            if elements is None or elements.version != element[0]:
                return
            table, key = elements.fields, element[1]
        current = table.get(key)
        if current is not None and current >> SEGMENT_SHIFT in frozen:
            table[key] = location | current & KIND_FIELD


class KindView:
    """A slot's types as the keyspace reads them (`Store.types_of`), from the kind bits
    of the log engine's locations: its length (the count of keys that are not
    strings), `key in` and `get` as a dict of those keys' types would answer."""

    __slots__ = ("_space",)

    def __init__(self, space: KeyDir | None) -> None:
        self._space = space

    def __len__(self) -> int:
        return self._space.typed if self._space is not None else 0

    def __contains__(self, key: object) -> bool:
        space = self._space
        location = space.locations.get(key) if space is not None else None  # type: ignore[call-overload]
        return location is not None and location & KIND_FIELD != 0

    def get(self, key: bytes, default: int = 0) -> int:
        location = self._space.locations.get(key) if self._space is not None else None
        kind = kind_of(location) if location is not None else 0
        return kind or default
