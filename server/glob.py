"""Glob patterns exactly as Redis's `stringmatchlen` reads them, in polynomial time.

Redis matches KEYS, SCAN MATCH and CONFIG GET patterns with a recursive
backtracking matcher (`src/util.c`). Translating the glob into a Python
regular expression, as kvd once did, inherits the backtracking without
Redis's escape hatch: `a*a*a*...*b` against a long run of `a` takes
exponential time, and one request stalls the server for good.

Here the pattern is read once into the same tokens Redis's matcher walks
(a star, or one byte out of a set of bytes), and a key is matched by the
classic greedy algorithm: the pieces between stars each match a fixed number
of bytes, so placing each piece at its leftmost possible position is never
wrong. A key costs at most O(len(pattern) x len(key)), and most patterns are
a `startswith`, an `endswith` and a few `bytes.find` calls.

Redis's results are kept exactly, quirks included (the differential test in
tests/torture/test_glob_differential.py checks them against redis-server):

* `\\x` is a literal x; a trailing `\\` is a literal backslash.
* `[...]`: `^` negates; `\\x` inside is x compared exactly (even with nocase);
  `a-z` is a range whose ends are swapped if reversed and compared as C's
  signed chars (so `[a-\\xff]` is the bytes 0xff and 0x00-0x61); a `]` right
  after `-` ends a range, not the class; a class with no closing `]` runs to
  the end of the pattern; `[]` matches nothing and `[^]` any byte.
* An empty key matches only the empty pattern (not even `*`; KEYS and SCAN
  special-case the pattern `*` before matching, as Redis does).
* Redis gives up below 1000 nested stars: a pattern with more than 1000 stars
  followed by something else matches nothing.
* nocase (CONFIG GET) folds ASCII letters only, as C's tolower in the C locale.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_NEVER = re.compile(rb"(?!)")  # a literal piece has no pattern (never used)


ALL_BYTES = (1 << 256) - 1
_UPPER = sum(1 << c for c in range(ord("A"), ord("Z") + 1))
_LOW_HALF = (1 << 128) - 1
MAX_NESTED_STARS = 1000  # Redis's "protection against abusive patterns"
_SPECIAL = re.compile(rb"\*+|\?+|[\[\\]")
_STAR = None  # the token for a run of stars; every other token is a 256-bit set of bytes


def _lower(c: int) -> int:
    """C's tolower() in the C locale, on a signed char's value."""
    return c + 32 if 65 <= c <= 90 else c


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _literal(byte: int, nocase: bool) -> int:
    if nocase and (65 <= byte <= 90 or 97 <= byte <= 122):
        return 1 << (byte | 32) | 1 << (byte & ~32)
    return 1 << byte


def _range(first: int, last: int, nocase: bool) -> int:
    """The bytes c of `[first-last]`: Redis compares signed chars, after tolower with nocase."""
    start, end = sorted((_signed(first), _signed(last)))
    if nocase:
        start, end = _lower(start), _lower(end)
    if start > end:
        return 0
    # Bits indexed by signed value + 128, then rotated into byte order.
    by_signed = ((1 << (end - start + 1)) - 1) << (start + 128)
    mask = by_signed >> 128 | (by_signed & _LOW_HALF) << 128
    if nocase:  # c matches when tolower(c) is in range: an upper-case letter by its lower case
        mask = (mask & ~_UPPER) | ((mask >> 32) & _UPPER)
    return mask


def _bracket(pattern: bytes, i: int, nocase: bool) -> tuple[int, int]:
    """The set of bytes of the class opening at pattern[i] == '[', and the index after it.

    Walks the class exactly as Redis's loop does, so where it ends (and what
    `]`, `-` and `\\` mean inside) is the same.
    """
    n = len(pattern)
    i += 1
    negate = i < n and pattern[i] == 0x5E  # ^
    if negate:
        i += 1
    mask = 0
    while True:
        if i < n and pattern[i] == 0x5C and n - i >= 2:  # \x: x, compared exactly
            i += 1
            mask |= 1 << pattern[i]
        elif i < n and pattern[i] == 0x5D:  # ]
            break
        elif i >= n:  # no closing bracket: the class ends with the pattern
            i -= 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # a-z
            mask |= _range(pattern[i], pattern[i + 2], nocase)
            i += 2
        else:
            mask |= _literal(pattern[i], nocase)
        i += 1
    return (mask ^ ALL_BYTES if negate else mask), i + 1


def tokens(pattern: bytes, nocase: bool = False) -> list:
    """The pattern as Redis's matcher walks it: _STAR for a run of stars, else a set of bytes
    (a 256-bit int) matching exactly one byte of the key. Runs of plain bytes between
    special characters are sliced, not walked byte by byte."""
    out: list = []
    i, n = 0, len(pattern)
    while i < n:
        special = _SPECIAL.search(pattern, i)
        stop = special.start() if special else n
        out.extend(_literal(b, nocase) for b in pattern[i:stop])
        if special is None:
            break
        run = special.group()
        if run[0] == 0x2A:  # *
            out.append(_STAR)
            i = special.end()
        elif run[0] == 0x3F:  # ?
            out.extend([ALL_BYTES] * len(run))
            i = special.end()
        elif run == b"[":
            mask, i = _bracket(pattern, stop, nocase)
            out.append(mask)
        else:  # \x is x; a trailing \ is itself
            i = stop + 1 if stop + 1 < n else stop
            out.append(_literal(pattern[i], nocase))
            i += 1
    return out


class _Piece:
    """The tokens between two stars: a fixed number of bytes, matched by plain bytes
    comparisons when they are all literal, else by a star-free regular expression
    (which cannot backtrack beyond its own fixed width)."""

    __slots__ = ("width", "literal", "regex")

    def __init__(self, masks: list[int]) -> None:
        self.width = len(masks)
        singles = [m.bit_length() - 1 for m in masks if m and (m & (m - 1)) == 0]
        if len(singles) == len(masks):
            self.literal: bytes | None = bytes(singles)
            self.regex = _NEVER
        else:
            self.literal = None
            self.regex = re.compile(b"".join(_runs(masks)))

    def at(self, key: bytes, pos: int) -> bool:
        if self.literal is not None:
            return key.startswith(self.literal, pos)
        return self.regex.match(key, pos) is not None

    def find(self, key: bytes, start: int, end: int) -> int:
        """Leftmost position p in [start, end - width] where the piece matches, or -1."""
        if self.literal is not None:
            return key.find(self.literal, start, end)
        found = self.regex.search(key, start, end)
        return -1 if found is None else found.start()


def _runs(masks: list[int]) -> list[bytes]:
    """The regex of each run of equal sets: `[...]{n}`, so that a hundred thousand `?`
    compile as one repeat, not as a hundred thousand classes."""
    parts, i = [], 0
    while i < len(masks):
        j = i + 1
        while j < len(masks) and masks[j] == masks[i]:
            j += 1
        parts.append(_byte_class(masks[i]) + (b"{%d}" % (j - i) if j - i > 1 else b""))
        i = j
    return parts


def _byte_class(mask: int) -> bytes:
    """A regex matching exactly one byte of the set."""
    if mask == 0:
        return b"(?!)"
    runs, c = [], 0
    while c < 256:
        if mask >> c & 1:
            start = c
            while c < 256 and mask >> c & 1:
                c += 1
            last = c - 1
            runs.append(b"\\x%02x" % start if last == start
                        else b"\\x%02x-\\x%02x" % (start, last))
        else:
            c += 1
    return b"[" + b"".join(runs) + b"]"


class Glob:
    """A compiled pattern: `Glob(pattern).matches(key)` answers as Redis's stringmatchlen."""

    __slots__ = ("pattern", "_pieces", "_stars", "_never")

    def __init__(self, pattern: bytes, nocase: bool = False) -> None:
        self.pattern = pattern
        pieces: list[list[int]] = [[]]
        for token in tokens(pattern, nocase):
            if token is _STAR:
                pieces.append([])
            else:
                pieces[-1].append(token)
        self._stars = len(pieces) - 1
        # Each star followed by more pattern is one level of Redis's recursion.
        nested = self._stars - (1 if self._stars and not pieces[-1] else 0)
        self._never = nested > MAX_NESTED_STARS or any(0 in p for p in pieces)
        self._pieces = [_Piece(p) for p in pieces]

    def matches(self, key: bytes) -> bool:
        if not key or not self.pattern:
            return key == self.pattern
        if self._never:
            return False
        pieces = self._pieces
        first = pieces[0]
        if not self._stars:
            return len(key) == first.width and first.at(key, 0)
        if not first.at(key, 0):
            return False
        pos, end = first.width, len(key)
        last = pieces[-1]
        end -= last.width
        if end < pos or not last.at(key, end):
            return False
        for piece in pieces[1:-1]:
            found = piece.find(key, pos, end)
            if found < 0:
                return False
            pos = found + piece.width
        return True


@functools.lru_cache(maxsize=256)
def _cached(pattern: bytes, nocase: bool) -> Glob:
    return Glob(pattern, nocase)


def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """The match function of `pattern`; short patterns are compiled once and cached
    (SCAN sends the same MATCH on every call)."""
    if len(pattern) <= 1024:
        return _cached(pattern, nocase).matches
    return Glob(pattern, nocase).matches
