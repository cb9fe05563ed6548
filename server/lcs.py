"""LCS's table, computed with bit-parallel rows instead of Redis's table of integers.

Redis fills an (len(a)+1) x (len(b)+1) table of lengths, one cell at a time:
too slow in Python for the strings Redis allows. Hyyro's bit-vector form of
the same dynamic programme computes a whole row per byte of `a` with a few
big-integer operations: row i has a 0 bit at each position j where LCS(a[:i],
b[:j+1]) grows, so LCS(i, j) = j - popcount(row_i & low j bits). The rows are
kept (len(a) * len(b) bits), and the walk back from the corner follows
Redis's choices exactly, so the string and the match ranges are Redis's.
"""

from __future__ import annotations

from collections.abc import Iterator


class LcsTable:
    def __init__(self, a: bytes, b: bytes) -> None:
        self.a, self.b = a, b
        full = (1 << len(b)) - 1
        matches: dict[int, int] = {}
        for j, byte in enumerate(b):
            matches[byte] = matches.get(byte, 0) | 1 << j
        row = full
        self.rows = [row]
        for byte in a:
            u = row & matches.get(byte, 0)
            row = ((row + u) | (row - u)) & full
            self.rows.append(row)
        self.length = len(b) - row.bit_count()

    def at(self, i: int, j: int) -> int:
        """LCS(a[:i], b[:j])."""
        return j - (self.rows[i] & ((1 << j) - 1)).bit_count()

    def _walk(self) -> Iterator[tuple[int, int, bool]]:
        """Redis's walk back from (len a, len b): (i, j, matched) at each step."""
        i, j = len(self.a), len(self.b)
        while i > 0 and j > 0:
            if self.a[i - 1] == self.b[j - 1]:
                yield i, j, True
                i, j = i - 1, j - 1
            else:
                yield i, j, False
                if self.at(i - 1, j) > self.at(i, j - 1):
                    i -= 1
                else:
                    j -= 1

    def common(self) -> bytes:
        """The common subsequence Redis returns."""
        found = bytearray(self.a[i - 1] for i, _, matched in self._walk() if matched)
        found.reverse()
        return bytes(found)

    def ranges(self) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
        """The matching ranges ((a_start, a_end), (b_start, b_end)), last first, as
        Redis's IDX reports them."""
        unset = len(self.a)
        a_start, a_end, b_start, b_end = unset, 0, 0, 0
        for i, j, matched in self._walk():
            emit = False
            if matched:
                if a_start == unset:
                    a_start = a_end = i - 1
                    b_start = b_end = j - 1
                elif a_start == i and b_start == j:
                    a_start, b_start = a_start - 1, b_start - 1
                else:
                    emit = True
                if a_start == 0 or b_start == 0:
                    emit = True
            elif a_start != unset:
                emit = True
            if emit:
                yield (a_start, a_end), (b_start, b_end)
                a_start = unset

