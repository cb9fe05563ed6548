"""SORT and SORT_RO (Redis's sort.c): the elements of a list, set or sorted set, sorted as
numbers (or bytes with ALPHA), by themselves or by the keys and hash fields a BY pattern
names, then LIMIT, GET patterns, and STORE into a list.
"""

from __future__ import annotations

import math
from functools import cmp_to_key
from typing import TYPE_CHECKING

from .. import notify
from ..connection import Connection
from ..keyspace import HASH, LIST, SET, STRING, WRONGTYPE, ZSET
from ..protocol import parse_strict_int
from ..resp import error, integer
from .common import NOT_INTEGER, SYNTAX, keyword
from .hashes import read as read_hash
from .lists import StoredList
from .sets import members, read_set
from .table import row
from .zsets import load as load_zset

if TYPE_CHECKING:
    from ..context import Context
    from ..keyspace import Keyspace

NOT_DOUBLE = error("ERR One or more scores can't be converted into double")


def lookup(keyspace: Keyspace, pattern: bytes, element: bytes) -> bytes | None:
    """Redis's lookupKeyByPattern: "#" is the element; else the first '*' is replaced by
    it, and "->field" after it reads a hash field instead of a string."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field, pattern = pattern[arrow + 2:], pattern[:arrow]
    key = pattern[:star] + element + pattern[star + 1:]
    found = keyspace.read_any(key)
    if found is None:
        return None
    if field is None:
        return found[0] if found[1] == STRING else None
    if found[1] != HASH:
        return None
    hash_ = read_hash(keyspace, key, counted=False)
    return None if hash_ is None else hash_.fields.get(field)


def _number(text: bytes) -> float | None:
    """strtod over the whole text, as SORT reads a score (NaN refused)."""
    try:
        value = float(text) if text == text.rstrip() else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def sort(ctx: Context, conn: Connection, args: list) -> bytes:
    """SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
    [STORE destination]; SORT_RO, without STORE."""
    read_only = args[0].upper() == b"SORT_RO"
    desc = alpha = False
    start_at, count = 0, -1
    by: bytes | None = None
    store: bytes | None = None
    gets: list[bytes] = []
    dont_sort = False
    j = 2
    while j < len(args):
        option, left = keyword(args[j]), len(args) - j - 1
        if option == b"asc":
            desc = False
        elif option == b"desc":
            desc = True
        elif option == b"alpha":
            alpha = True
        elif option == b"limit" and left >= 2:
            first, many = parse_strict_int(args[j + 1]), parse_strict_int(args[j + 2])
            if first is None or many is None:
                return NOT_INTEGER
            start_at, count = first, many
            j += 2
        elif not read_only and option == b"store" and left >= 1:
            store = args[j + 1]
            j += 1
        elif option == b"by" and left >= 1:
            by = args[j + 1]
            dont_sort = b"*" not in by
            j += 1
        elif option == b"get" and left >= 1:
            gets.append(args[j + 1])
            j += 1
        else:
            return SYNTAX
        j += 1
    keyspace = ctx.keyspace
    found = keyspace.read_any(args[1])
    kind = found[1] if found is not None else LIST
    if kind not in (LIST, SET, ZSET):
        return WRONGTYPE
    elements = _elements(keyspace, args[1], kind) if found is not None else []
    if dont_sort and kind == SET and (store is not None or not isinstance(conn, Connection)):
        dont_sort, alpha, by = False, True, None  # (a set's order made deterministic)
    length = len(elements)
    start = min(max(start_at, 0), length)
    count = min(max(count, -1), length)
    end = length - 1 if count < 0 else start + count - 1
    if start >= length:
        start, end = length - 1, length - 2
    end = min(end, length - 1)
    if dont_sort:
        if desc and kind != SET:
            elements = elements[::-1]
    else:
        keyed = _sorted(keyspace, elements, by, alpha, desc)
        if keyed is None:
            return NOT_DOUBLE
        elements = keyed
    chosen = elements[start:end + 1] if end >= start else []
    if gets:
        output = [lookup(keyspace, pattern, element) for element in chosen
                  for pattern in gets]
    else:
        output = list(chosen)
    if store is None:
        return conn.resp.bulks(output)
    _store(ctx, store, [value if value is not None else b"" for value in output])
    return integer(len(output))


def _elements(keyspace: Keyspace, key: bytes, kind: int) -> list[bytes]:
    if kind == LIST:
        return StoredList(keyspace, key).range(0, -1)
    if kind == SET:
        return members(read_set(keyspace, key, counted=False))
    zset = load_zset(keyspace, key, counted=False)
    return [] if zset is None else [member for _, member in zset.index.order]


def _sorted(keyspace: Keyspace, elements: list[bytes], by: bytes | None, alpha: bool,
            desc: bool) -> list[bytes] | None:
    """The elements in SORT's order (sortCompare): numbers (a missing BY value is 0) or,
    with ALPHA, bytes (a missing BY value first); ties by the elements themselves. None
    if a value is no number."""
    weights: list = []
    for element in elements:
        value = lookup(keyspace, by, element) if by is not None else element
        if alpha:
            weights.append(value if by is not None else element)
        elif value is None:
            weights.append(0.0)
        else:
            number = _number(value)
            if number is None:
                return None
            weights.append(number)

    def compare(a: tuple, b: tuple) -> int:
        (wa, ea), (wb, eb) = a, b
        if alpha and by is not None and (wa is None or wb is None):
            result = 0 if wa is wb else (-1 if wa is None else 1)
        else:
            result = (wa > wb) - (wa < wb)
        if result == 0 and not (alpha and by is not None):
            result = (ea > eb) - (ea < eb)
        return -result if desc else result

    ordered = sorted(zip(weights, elements), key=cmp_to_key(compare))
    return [element for _, element in ordered]


def _store(ctx: Context, key: bytes, values: list[bytes]) -> None:
    """The destination becomes a list of `values` (no deadline), or goes if empty."""
    keyspace = ctx.keyspace
    if not values:
        keyspace.remove(key)
        return
    keyspace.begin_batch()
    try:
        keyspace.create_collection(key, LIST)  # (a new version replaces what was there)
        keyspace.write_elements(key, dict(enumerate(values)))
    finally:
        keyspace.end_batch()
    keyspace.notify(notify.LIST, b"sortstore", key)


COMMANDS = [
    row("sort", sort),
    row("sort_ro", sort),
]
