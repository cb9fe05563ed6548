"""Databases in the store: each logical database's keys live in a slot (format 4).

A slot is a number never reused; the map says which slot holds each logical
database (docs/data-model.md). FLUSHDB gives a database a fresh slot, FLUSHALL
gives every database one, SWAPDB exchanges two entries: the store writes the new
map as one record, whatever the databases hold, and drops the slots no longer
mapped (one dict deallocation each, no loop over their keys in Python).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .deadlines import Deadlines
from .keydir import KeyDir

if TYPE_CHECKING:
    from .interface import KeyTypes


class SlotMap:
    """Which slot holds each logical database, and the slots' keys."""

    def __init__(self) -> None:
        self.slots: list[int] = [0]  # database i's keys are in slot slots[i]
        self.next_slot = 1
        self.spaces: dict[int, KeyDir] = {0: KeyDir()}
        # Database i's key directory, for the read path (one list index, no lookups);
        # the same list object throughout, brought up to date on every change.
        self.keydirs: list[dict[bytes, int]] = [self.spaces[0].locations]

    def _changed(self) -> None:
        self.keydirs[:] = [self.spaces[slot].locations for slot in self.slots]

    def space(self, db: int) -> KeyDir:
        """The keys of database `db`, which must be mapped (see ensure())."""
        return self.spaces[self.slots[db]]

    def find(self, db: int) -> KeyDir | None:
        """The keys of database `db`, or None while nothing was ever written to it."""
        if db < len(self.slots):
            return self.spaces[self.slots[db]]
        return None

    def ensure(self, db: int) -> bool:
        """Map database `db` (and those before it) if it is not yet; True if the map
        changed (the caller writes the new map before any record of the new slots)."""
        if db < len(self.slots):
            return False
        while len(self.slots) <= db:
            self.slots.append(self._fresh())
        self._changed()
        return True

    def flush(self, db: int) -> None:
        """Database `db` gets a fresh slot, empty; its old one is dropped."""
        self.ensure(db)
        old = self.slots[db]
        self.slots[db] = self._fresh()
        del self.spaces[old]
        self._changed()

    def swap(self, a: int, b: int) -> None:
        self.ensure(max(a, b))
        self.slots[a], self.slots[b] = self.slots[b], self.slots[a]
        self._changed()

    def apply(self, next_slot: int, slots: list[int]) -> None:
        """A map record read back: the slots it no longer maps are dropped."""
        self.slots = list(slots)
        self.next_slot = max(self.next_slot, next_slot)
        for slot in slots:
            if slot not in self.spaces:
                self.spaces[slot] = KeyDir()
        for slot in [s for s in self.spaces if s not in slots]:
            del self.spaces[slot]
        self._changed()

    def _fresh(self) -> int:
        slot, self.next_slot = self.next_slot, self.next_slot + 1
        self.spaces[slot] = KeyDir()
        return slot

    def databases(self) -> int:
        return len(self.slots)

    # -- what both engines keep in memory per database -----------------------------------

    def types_of(self, db: int) -> dict[bytes, int]:
        """Database `db`'s non-string keys and their types (its slot's own dict, to read;
        another one after a flush or swap of the database)."""
        space = self.find(db)
        return space.types if space is not None else {}

    def type_of(self, key: bytes, db: int) -> int:
        """The type of `key`'s value: 0 a string (or no such key), 1-4 another type."""
        space = self.find(db)
        return space.types.get(key, 0) if space is not None else 0

    def deadlines_of(self, db: int) -> Deadlines:
        """The keys of database `db` that have a deadline (a detached empty set for a
        database nothing was written to)."""
        space = self.find(db)
        return space.deadlines if space is not None else Deadlines()

    def deadline(self, key: bytes, db: int) -> int:
        space = self.find(db)
        return space.deadlines.get(key) if space is not None else 0

    @property
    def live(self) -> int:
        return sum(space.live for space in self.spaces.values())

    def __len__(self) -> int:
        return sum(len(space) for space in self.spaces.values())


class DatabaseQueries:
    """What both engines answer from memory about their databases: each keeps a SlotMap
    in `_slots` and inherits these."""

    _slots: SlotMap

    @property
    def deadlines(self) -> Deadlines:
        """Database 0's deadlines (deadlines_of(db) for the others)."""
        return self._slots.deadlines_of(0)

    def deadlines_of(self, db: int) -> Deadlines:
        """The keys of database `db` that have a deadline (the one to ask which are due)."""
        return self._slots.deadlines_of(db)

    def deadline(self, key: bytes, db: int = 0) -> int:
        """The key's deadline in Unix ms; 0 if it has none (or does not exist)."""
        return self._slots.deadline(key, db)

    def databases(self) -> int:
        """How many databases were ever written to (the highest number + 1)."""
        return self._slots.databases()

    def types_of(self, db: int) -> KeyTypes:
        return self._slots.types_of(db)

    def type_of(self, key: bytes, db: int = 0) -> int:
        return self._slots.type_of(key, db)

    def collection_version(self, key: bytes, db: int = 0) -> int:
        """The version of `key` if its value is element records, else 0 (a string, a
        value packed whole, or no such key); no disk access."""
        space = self._slots.find(db)
        if space is None or not space.collections:
            return 0
        found = space.collections.get(key)
        return found.version if found is not None else 0
