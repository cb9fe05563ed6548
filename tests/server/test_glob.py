"""The glob matcher against a line-by-line port of Redis 7.0's stringmatchlen.

The port below is the oracle (it keeps Redis's recursion, its
skipLongerMatches escape and its nesting limit, so it is fast enough on small
inputs); server/glob.py must give the same answer for every pattern and key,
case-sensitive and not. tests/torture/test_glob_differential.py checks the
same against a real redis-server.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.glob import Glob, compile_glob


def _c(byte: int) -> int:
    """A C `char` on x86: signed."""
    return byte - 256 if byte > 127 else byte


def _tolower(c: int) -> int:
    return c + 32 if 65 <= c <= 90 else c


def redis_stringmatchlen(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """src/util.c stringmatchlen_impl, transcribed; index past the end reads C's NUL."""
    skip = [False]

    def at(buf: bytes, i: int) -> int:
        return _c(buf[i]) if i < len(buf) else 0

    def impl(p: int, plen: int, s: int, slen: int, nesting: int) -> bool:
        if nesting > 1000:
            return False
        while plen and slen:
            pc = at(pattern, p)
            if pc == 0x2A:  # *
                while plen and at(pattern, p + 1) == 0x2A:
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, plen - 1, s, slen, nesting + 1):
                        return True
                    if skip[0]:
                        return False
                    s += 1
                    slen -= 1
                skip[0] = True
                return False
            if pc == 0x3F:  # ?
                s += 1
                slen -= 1
            elif pc == 0x5B:  # [
                p += 1
                plen -= 1
                negate = at(pattern, p) == 0x5E
                if negate:
                    p += 1
                    plen -= 1
                match = False
                while True:
                    if at(pattern, p) == 0x5C and plen >= 2:
                        p += 1
                        plen -= 1
                        if at(pattern, p) == at(string, s):
                            match = True
                    elif at(pattern, p) == 0x5D:
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and at(pattern, p + 1) == 0x2D:
                        start, end, c = at(pattern, p), at(pattern, p + 2), at(string, s)
                        if start > end:
                            start, end = end, start
                        if nocase:
                            start, end, c = _tolower(start), _tolower(end), _tolower(c)
                        p += 2
                        plen -= 2
                        if start <= c <= end:
                            match = True
                    elif nocase:
                        if _tolower(at(pattern, p)) == _tolower(at(string, s)):
                            match = True
                    elif at(pattern, p) == at(string, s):
                        match = True
                    p += 1
                    plen -= 1
                if negate:
                    match = not match
                if not match:
                    return False
                s += 1
                slen -= 1
            else:
                if pc == 0x5C and plen >= 2:
                    p += 1
                    plen -= 1
                a, b = at(pattern, p), at(string, s)
                if (_tolower(a) != _tolower(b)) if nocase else (a != b):
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while at(pattern, p) == 0x2A:
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, len(pattern), 0, len(string), 0)


ALPHABET = b"ab*?[]^-\\zA\x00\xff\x80"
PATTERNS = (st.binary(max_size=14)
            | st.lists(st.sampled_from(list(ALPHABET)), max_size=14).map(bytes))
KEYS = st.lists(st.sampled_from(list(b"abzA-]\\*^\x00\xff\x80")), max_size=10).map(bytes)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(PATTERNS, KEYS, st.booleans())
def test_same_answer_as_redis(pattern: bytes, key: bytes, nocase: bool) -> None:
    assert Glob(pattern, nocase).matches(key) == redis_stringmatchlen(pattern, key, nocase)


CASES = [
    # (pattern, key, nocase, expected)
    (b"*", b"", False, False),  # an empty key matches only the empty pattern
    (b"", b"", False, True),
    (b"h?llo", b"hallo", False, True),
    (b"h*llo", b"hllo", False, True),
    (b"h[ae]llo", b"hillo", False, False),
    (b"h[^e]llo", b"hallo", False, True),
    (b"h[a-b]llo", b"hbllo", False, True),
    (b"h[b-a]llo", b"hbllo", False, True),  # reversed range: swapped
    (b"[a-]", b"]", False, True),  # a-] is the range ']'..'a', and the class is unclosed
    (b"[a-]", b"b", False, False),
    (b"[", b"x", False, False),  # unclosed, empty: nothing
    (b"[^", b"x", False, True),  # unclosed, negated empty: anything
    (b"[]", b"]", False, False),
    (b"[^]", b"]", False, True),
    (b"\\*", b"*", False, True),
    (b"\\*", b"a", False, False),
    (b"a\\", b"a\\", False, True),  # a trailing backslash is itself
    (b"[\\]]", b"]", False, True),
    (b"[a-\xff]", b"\x00", False, True),  # signed chars: -1..97
    (b"[a-\xff]", b"\x80", False, False),
    (b"[a-\xff]", b"\xff", False, True),
    (b"HELLO", b"hello", True, True),
    (b"[A-C]", b"b", True, True),
    (b"[Z-a]", b"_", True, False),  # tolower'd ends: z..a, empty
    (b"[\\A]", b"a", True, False),  # an escaped byte in a class is compared exactly
    (b"\\A", b"a", True, True),  # ...but not outside one
]


@pytest.mark.parametrize("pattern,key,nocase,expected", CASES)
def test_corner_cases(pattern: bytes, key: bytes, nocase: bool, expected: bool) -> None:
    assert Glob(pattern, nocase).matches(key) is expected
    assert redis_stringmatchlen(pattern, key, nocase) is expected


def test_nested_stars_limit() -> None:
    key = b"a" * 1200
    assert Glob(b"a*" * 1000 + b"a").matches(key)
    assert not Glob(b"a*" * 1001 + b"a").matches(key)
    assert Glob(b"a*" * 1001).matches(key)  # a final star is no recursion: 1000 nested ones
    assert not Glob(b"a*" * 1002).matches(key)
    assert not Glob(b"a*" * 1001 + b"a").matches(b"a" * 2000)


def test_adversarial_pattern_is_polynomial() -> None:
    """The request that hung kvd: a backtracking matcher takes exponential time here."""
    key = b"a" * 40
    assert not compile_glob(b"a*" * 20 + b"b")(key)
    assert not compile_glob(b"*a" * 500 + b"*b")(b"a" * 100_000)
    assert compile_glob(b"*?[a-b]" * 300 + b"*")(b"ab" * 50_000)
