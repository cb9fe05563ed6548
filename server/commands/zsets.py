"""The sorted set commands (Redis's t_zset.c): ZADD ZINCRBY ZREM ZCARD ZSCORE ZMSCORE ZRANK
ZREVRANK ZCOUNT ZLEXCOUNT ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES) ZRANGESTORE ZREVRANGE
ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREMRANGEBYRANK/SCORE/LEX ZPOPMIN
ZPOPMAX ZMPOP ZRANDMEMBER ZUNION ZINTER ZDIFF (+STORE) ZINTERCARD ZSCAN, and the blocking
BZPOPMIN BZPOPMAX BZMPOP.

A sorted set is stored as a hash of member -> score (8 bytes, a double; hashes.py's two
forms): packed while it has at most `zset-max-listpack-entries` members and 32 KiB, then
one element record per member, so a score change writes one small record. Reading in
order needs an index, (score, member) pairs in a sortedcontainers SortedList beside a
member -> score dict (`ZIndex`): a packed set's is built when first read (at most 128
members by default) and kept with its decoding in the decoded cache (`Hash.derived`); a
split set's is kept per key for the collection version it was built for,
and changed in place by every write here (`Keyspace.zindexes`), so a range costs
O(log N + M) and ZADD O(log N).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sortedcontainers import SortedList

from ..errors import CommandError
from ..keyspace import SET, WRONGTYPE, ZSET
from ..protocol import parse_strict_int
from ..resp import ZERO, array, bulk, error, integer
from .common import (
    NOT_INTEGER,
    SYNTAX,
    keyword,
    parse_random_count,
    random_picks,
)
from .hashes import (
    INVALID_CURSOR,
    Hash,
    StoredFields,
    _for_write,
    parse_cursor,
    read,
    scan_step,
    write,
)
from .lists import Take, blocking_multi_pop, multi_pop, parse_timeout, pop_or_block
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context
    from ..keyspace import Keyspace

NOT_FLOAT = error("ERR value is not a valid float")
NAN_RESULT = error("ERR resulting score is not a number (NaN)")
NOT_FLOAT_RANGE = error("ERR min or max is not a float")
NOT_LEX_RANGE = error("ERR min or max not valid string range item")
NOT_POSITIVE = error("ERR value is out of range, must be positive")
DOUBLE = struct.Struct("<d")


def pack_score(score: float) -> bytes:
    return DOUBLE.pack(score)


def unpack_score(packed: bytes) -> float:
    return DOUBLE.unpack(packed)[0]


def parse_score(arg: bytes) -> float | None:
    """A score as Redis's strtod reads it ("inf", "-inf", "+inf" too); None for no
    float, or NaN."""
    try:
        value = float(arg) if arg == arg.strip() and arg else math.nan
    except ValueError:
        return None
    if math.isnan(value):
        return None
    return value + 0.0  # (-0 is 0, as Redis stores it)


def score_text(score: float) -> bytes:
    """Redis's d2string: an integral score as an integer, else %.17g."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    if score == int(score) and abs(score) < 1 << 53:
        return b"-0" if score == 0 and math.copysign(1, score) < 0 else b"%d" % int(score)
    return b"%.17g" % score


class ZIndex:
    """A sorted set in order: (score, member) pairs, and each member's score. The order
    is built when first needed: ZADD, ZSCORE, ZINCRBY, ZREM need only the scores."""

    __slots__ = ("_order", "scores")

    def __init__(self, items: Iterable[tuple[bytes, float]] = ()) -> None:
        self.scores: dict[bytes, float] = dict(items)
        self._order: SortedList | None = None

    @property
    def order(self) -> SortedList:
        if self._order is None:
            self._order = SortedList((score, member) for member, score in self.scores.items())
        return self._order

    def __len__(self) -> int:
        return len(self.scores)

    def copy(self) -> ZIndex:
        """An index of its own (a dict copy, and the order's if it was built: both in C)."""
        twin = ZIndex()
        twin.scores = dict(self.scores)
        if self._order is not None:
            twin._order = self._order.copy()
        return twin

    def set(self, member: bytes, score: float) -> None:
        old = self.scores.get(member)
        order = self._order
        if order is not None:
            if old is not None:
                order.remove((old, member))
            order.add((score, member))
        self.scores[member] = score

    def remove(self, member: bytes) -> None:
        score = self.scores.pop(member)
        if self._order is not None:
            self._order.remove((score, member))

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        return None if score is None else self.order.bisect_left((score, member))

    def score_span(self, low: float, low_open: bool, high: float, high_open: bool
                   ) -> tuple[int, int]:
        """Ranks [start, end) of the scores within the bounds."""
        order = self.order
        if low_open:
            start = len(order) if low == math.inf else order.bisect_left(
                (math.nextafter(low, math.inf), b""))
        else:
            start = order.bisect_left((low, b""))
        if high_open:
            end = order.bisect_left((high, b""))
        else:
            end = len(order) if high == math.inf else order.bisect_left(
                (math.nextafter(high, math.inf), b""))
        return start, max(start, end)

    def lex_span(self, low: tuple, high: tuple) -> tuple[int, int]:
        """Ranks [start, end) of the members within lex bounds (all scores the same, as
        Redis requires; elsewise the members between the bounds in their order)."""
        members = [member for _, member in self.order]
        start = next((i for i, m in enumerate(members) if _above(m, low)), len(members))
        end = start
        while end < len(members) and _below(members[end], high):
            end += 1
        return start, end


def _above(member: bytes, bound: tuple) -> bool:
    kind, value = bound
    return kind == "-" or (kind == "[" and member >= value) or (kind == "(" and member > value)


def _below(member: bytes, bound: tuple) -> bool:
    kind, value = bound
    return kind == "+" or (kind == "[" and member <= value) or (kind == "(" and member < value)


def parse_lex(arg: bytes) -> tuple | None:
    if arg == b"-" or arg == b"+":
        return (arg.decode(), b"")
    if arg[:1] in (b"[", b"("):
        return (arg[:1].decode(), arg[1:])
    return None


def parse_score_bound(arg: bytes) -> tuple[float, bool] | None:
    """A score range bound: (value, exclusive), None if it is no float."""
    exclusive = arg.startswith(b"(")
    value = parse_score(arg[1:] if exclusive else arg)
    return None if value is None else (value, exclusive)


class Zset:
    """One sorted set as commands see it: its stored form and its index."""

    def __init__(self, keyspace: Keyspace, key: bytes, hash_: Hash, index: ZIndex) -> None:
        self.keyspace, self.key, self.hash, self.index = keyspace, key, hash_, index


def load(keyspace: Keyspace, key: bytes, counted: bool = True) -> Zset | None:
    """The sorted set at `key`, None if there is none; WRONGTYPE for another type."""
    hash_ = read(keyspace, key, counted, kind=ZSET)
    if hash_ is None:
        return None
    return Zset(keyspace, key, hash_, _index_of(keyspace, key, hash_))


def _index_of(keyspace: Keyspace, key: bytes, hash_: Hash) -> ZIndex:
    if not isinstance(hash_.fields, StoredFields):
        # A packed set's index: built once per decoding and kept with it (Hash.derived;
        # a command that changes the set works on a copy of both).
        if hash_.derived is None:
            hash_.derived = ZIndex((m, unpack_score(s)) for m, s in hash_.fields.items())
        return hash_.derived
    version = keyspace.collection_version(key)
    kept = keyspace.zindexes.get(key)
    if kept is not None and kept[0] == version:
        return kept[1]  # type: ignore[return-value]
    fields = hash_.fields
    names = list(fields)
    scores = keyspace.store.get_elements(key, names, keyspace.db)
    index = ZIndex((m, unpack_score(s)) for m, s in zip(names, scores) if s is not None)
    keyspace.zindexes[key] = (version, index)
    return index


def for_write(ctx: Context, key: bytes) -> Zset:
    """The sorted set at `key` to change (an empty one if there is none)."""
    keyspace = ctx.keyspace
    hash_ = _for_write(ctx, key, ZSET)
    return Zset(keyspace, key, hash_, _index_of(keyspace, key, hash_))


def save(ctx: Context, zset: Zset, changes: dict[bytes, float | None], event: bytes = b"",
         deadline: int | None = None) -> None:
    """Write `changes` (member -> new score, or None: removed) to the set and its index:
    one batch; the key goes once empty. `event`, `deadline`: as hashes.write's."""
    if not changes:
        return
    fields, index = zset.hash.fields, zset.index
    for member, score in changes.items():
        if score is None:
            if member in index.scores:
                del fields[member]
                index.remove(member)
        else:
            fields[member] = pack_score(score)
            index.set(member, score)
    keyspace, key = zset.keyspace, zset.key
    write(ctx, key, zset.hash, ZSET, event, deadline)
    version = keyspace.collection_version(key)
    if version and len(index):
        keyspace.zindexes[key] = (version, index)


def store_result(ctx: Context, key: bytes, items: list[tuple[bytes, float]],
                 event: bytes) -> None:
    """`key` becomes a new sorted set of `items` (whatever it held, deadline included),
    told as `event`; or is deleted if there are none (told as "del" if it was there)."""
    keyspace = ctx.keyspace
    if items:
        save(ctx, Zset(keyspace, key, Hash({}), ZIndex()), dict(items), event, deadline=0)
    else:
        keyspace.remove(key)


# -- replies ------------------------------------------------------------------------------

def with_scores(conn: Connection, items: list[tuple[bytes, float]], pairs: bool) -> bytes:
    """Members and scores: flat in RESP2; in RESP3 pairs where `pairs` (ZRANGE, ZPOP with
    a count...), flat otherwise."""
    resp = conn.resp
    if pairs and resp.version == 3:
        return array([array([bulk(m), resp.double(s)]) for m, s in items])
    return array([part for m, s in items for part in (bulk(m), resp.double(s))])


# -- adding and removing ------------------------------------------------------------------

def zadd(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]; ZINCRBY."""
    key = args[1]
    nx = xx = gt = lt = ch = incr = False
    j = 2
    if args[0].upper() == b"ZINCRBY":
        incr = True
    else:
        while j < len(args):
            option = keyword(args[j])
            if option == b"nx":
                nx = True
            elif option == b"xx":
                xx = True
            elif option == b"ch":
                ch = True
            elif option == b"incr":
                incr = True
            elif option == b"gt":
                gt = True
            elif option == b"lt":
                lt = True
            else:
                break
            j += 1
    pairs = args[j:]
    if len(pairs) % 2 or not pairs:
        return SYNTAX
    if nx and xx:
        return error("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        return error("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and len(pairs) > 2:
        return error("ERR INCR option supports a single increment-element pair")
    scores = [parse_score(pairs[i]) for i in range(0, len(pairs), 2)]
    if None in scores:
        return NOT_FLOAT
    keyspace = ctx.keyspace
    zset = for_write(ctx, key)
    if xx and not zset.index:  # (no members: no key)
        return conn.resp.null if incr else ZERO
    changes: dict[bytes, float | None] = {}
    added = updated = 0
    result: float | None = None
    for score, member in zip(scores, pairs[1::2]):
        keyspace.check_sizes(key, member)
        assert score is not None
        current = changes.get(member, zset.index.scores.get(member))
        if current is not None:
            if nx:
                continue
            if incr:
                score += current
                if math.isnan(score):
                    save(ctx, zset, changes, b"zincr" if incr else b"zadd")
                    return NAN_RESULT
            if (lt and score >= current) or (gt and score <= current):
                continue
            if score != current:
                changes[member] = score
                updated += 1
            result = score
        else:
            if xx:
                continue
            changes[member] = score
            added += 1
            result = score
    save(ctx, zset, changes, b"zincr" if incr else b"zadd")
    if incr:
        return conn.resp.null if result is None else conn.resp.double(result)
    return integer(added + updated if ch else added)


def zrem(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    if load(ctx.keyspace, key, counted=False) is None:
        return ZERO
    zset = for_write(ctx, key)
    gone = {m: None for m in dict.fromkeys(args[2:]) if m in zset.index.scores}
    save(ctx, zset, gone, b"zrem")  # type: ignore[arg-type]
    return integer(len(gone))


# -- reading ------------------------------------------------------------------------------

def zcard(ctx: Context, conn: Connection, args: list) -> bytes:
    zset = load(ctx.keyspace, args[1])
    return integer(0 if zset is None else len(zset.index))


def zscore(ctx: Context, conn: Connection, args: list) -> bytes:
    zset = load(ctx.keyspace, args[1])
    score = None if zset is None else zset.index.scores.get(args[2])
    return conn.resp.null if score is None else conn.resp.double(score)


def zmscore(ctx: Context, conn: Connection, args: list) -> bytes:
    zset = load(ctx.keyspace, args[1])
    scores = {} if zset is None else zset.index.scores
    return array([conn.resp.null if scores.get(m) is None else conn.resp.double(scores[m])
                  for m in args[2:]])


def zrank(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZRANK / ZREVRANK key member."""
    zset = load(ctx.keyspace, args[1])
    rank = None if zset is None else zset.index.rank(args[2])
    if rank is None:
        return conn.resp.null
    assert zset is not None
    return integer(len(zset.index) - 1 - rank if args[0].upper() == b"ZREVRANK" else rank)


def zcount(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZCOUNT key min max; ZLEXCOUNT key min max."""
    lex = args[0].upper() == b"ZLEXCOUNT"
    span = _parse_span(args[2], args[3], lex)
    if isinstance(span, bytes):
        return span
    zset = load(ctx.keyspace, args[1])
    if zset is None:
        return ZERO
    start, end = _span(zset.index, span, lex)
    return integer(end - start)


def _parse_span(low: bytes, high: bytes, lex: bool) -> tuple | bytes:
    if lex:
        bounds = parse_lex(low), parse_lex(high)
        return NOT_LEX_RANGE if None in bounds else bounds
    low_bound, high_bound = parse_score_bound(low), parse_score_bound(high)
    if low_bound is None or high_bound is None:
        return NOT_FLOAT_RANGE
    return low_bound, high_bound


def _span(index: ZIndex, span: tuple, lex: bool) -> tuple[int, int]:
    if lex:
        return index.lex_span(*span)
    (low, low_open), (high, high_open) = span
    if low > high:
        return 0, 0
    return index.score_span(low, low_open, high, high_open)


def _rank_span(start: int, stop: int, length: int) -> tuple[int, int]:
    """Ranks [start, end) of Redis's start..stop (negative from the end)."""
    if start < 0:
        start += length
    if stop < 0:
        stop += length
    start = max(start, 0)
    if start > stop or start >= length:
        return 0, 0
    return start, min(stop, length - 1) + 1


class RangeQuery:
    """What a Z*RANGE* command asks for, parsed as Redis's zrangeGenericCommand does."""

    __slots__ = ("key", "by", "reverse", "low", "high", "offset", "limit", "scores")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.by = "rank"
        self.reverse = False
        self.low: Any = 0  # a rank, or a (score | lex) bound
        self.high: Any = 0
        self.offset, self.limit, self.scores = 0, -1, False


def parse_range(args: list, at: int, by: str | None, reverse: bool, store: bool
                ) -> RangeQuery | bytes:
    """args[at] is the key, then min and max, then options (ZRANGE's, or the older
    commands': `by` and `reverse` fixed by the command's name)."""
    query = RangeQuery(args[at])
    chosen_by, chosen_reverse = by, reverse
    j = at + 3
    while j < len(args):
        option, left = keyword(args[j]), len(args) - j - 1
        if not store and option == b"withscores":
            query.scores = True
        elif option == b"limit" and left >= 2:
            offset, limit = parse_strict_int(args[j + 1]), parse_strict_int(args[j + 2])
            if offset is None or limit is None:
                return NOT_INTEGER
            query.offset, query.limit = offset, limit
            j += 2
        elif by is None and not chosen_reverse and option == b"rev":
            chosen_reverse = True
        elif by is None and chosen_by is None and option in (b"bylex", b"byscore"):
            chosen_by = option[2:].decode()
        else:
            return SYNTAX
        j += 1
    query.by, query.reverse = chosen_by or "rank", chosen_reverse
    if query.limit != -1 and query.by == "rank" and (by is None or store):
        return error("ERR syntax error, LIMIT is only supported in combination with either "
                     "BYSCORE or BYLEX")
    if query.scores and query.by == "lex":
        return error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    low, high = args[at + 1], args[at + 2]
    if query.reverse and query.by != "rank":
        low, high = high, low
    if query.by == "rank":
        start, stop = parse_strict_int(low), parse_strict_int(high)
        if start is None or stop is None:
            return NOT_INTEGER
        query.low, query.high = start, stop
    else:
        span = _parse_span(low, high, query.by == "lex")
        if isinstance(span, bytes):
            return span
        query.low, query.high = span
    return query


def run_range(index: ZIndex, query: RangeQuery) -> list[tuple[bytes, float]]:
    order, length = index.order, len(index)
    if query.by == "rank":
        start, end = _rank_span(query.low, query.high, length)
        if query.reverse:
            start, end = length - end, length - start
        picked = list(order.islice(start, end))
        return [(m, s) for s, m in (reversed(picked) if query.reverse else picked)]
    start, end = _span(index, (query.low, query.high), query.by == "lex")
    if query.offset < 0 or (query.offset > 0 and query.offset >= length):
        return []
    if query.reverse:
        stop_at = end - query.offset
        first = stop_at - query.limit if query.limit >= 0 else start
        picked = list(order.islice(max(start, first), max(start, stop_at)))[::-1]
    else:
        begin = start + query.offset
        last = begin + query.limit if query.limit >= 0 else end
        picked = list(order.islice(min(begin, end), min(last, end)))
    return [(m, s) for s, m in picked]


# The older commands: (by, reverse) fixed by the name.
RANGE_FORMS = {b"ZRANGE": (None, False), b"ZREVRANGE": ("rank", True),
               b"ZRANGEBYSCORE": ("score", False), b"ZREVRANGEBYSCORE": ("score", True),
               b"ZRANGEBYLEX": ("lex", False), b"ZREVRANGEBYLEX": ("lex", True)}


def zrange(ctx: Context, conn: Connection, args: list) -> bytes:
    by, reverse = RANGE_FORMS[args[0].upper()]
    query = parse_range(args, 1, by, reverse, store=False)
    if isinstance(query, bytes):
        return query
    zset = load(ctx.keyspace, query.key)
    if zset is None:
        return array([])
    items = run_range(zset.index, query)
    if query.scores:
        return with_scores(conn, items, pairs=True)
    return conn.resp.bulks([m for m, _ in items])


def zrangestore(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZRANGESTORE destination source min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]."""
    query = parse_range(args, 2, None, False, store=True)
    if isinstance(query, bytes):
        return query
    zset = load(ctx.keyspace, query.key)
    items = [] if zset is None else run_range(zset.index, query)
    store_result(ctx, args[1], items, b"zrangestore")
    return integer(len(items))


def zremrange(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZREMRANGEBYRANK / BYSCORE / BYLEX key min max: how many went."""
    by = args[0].upper()[11:].lower().decode()
    start = stop = 0
    span: tuple | bytes = ()
    if by == "rank":
        first, last = parse_strict_int(args[2]), parse_strict_int(args[3])
        if first is None or last is None:
            return NOT_INTEGER
        start, stop = first, last
    else:
        span = _parse_span(args[2], args[3], by == "lex")
        if isinstance(span, bytes):
            return span
    zset = load(ctx.keyspace, args[1], counted=False)
    if zset is None:
        return ZERO
    index = zset.index
    if by == "rank":
        begin, end = _rank_span(start, stop, len(index))
    else:
        begin, end = _span(index, span, by == "lex")  # type: ignore[arg-type]
    gone = [m for _, m in index.order.islice(begin, end)]
    if gone:
        zset = for_write(ctx, args[1])
        save(ctx, zset, dict.fromkeys(gone), b"zremrangeby" + by.encode())
    return integer(len(gone))


# -- popping ------------------------------------------------------------------------------

def popped(ctx: Context, keyspace: Keyspace, key: bytes, maximum: bool, count: int
           ) -> list[tuple[bytes, float]] | None:
    """Remove up to `count` members with the lowest (highest) scores; None if no set."""
    if load(keyspace, key, counted=False) is None:
        return None
    previous, ctx.keyspace = ctx.keyspace, keyspace
    try:
        zset = for_write(ctx, key)
        order = zset.index.order
        picked = (list(order.islice(len(order) - count, len(order)))[::-1] if maximum
                  else list(order.islice(0, count)))
        save(ctx, zset, {m: None for _, m in picked}, b"zpopmax" if maximum else b"zpopmin")
    finally:
        ctx.keyspace = previous
    return [(m, s) for s, m in picked]


def zpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZPOPMIN / ZPOPMAX key [count]."""
    if len(args) > 3:
        return SYNTAX
    count = 1
    if len(args) == 3:
        parsed = parse_strict_int(args[2])
        if parsed is None or parsed < 0:
            return NOT_POSITIVE
        count = parsed
    if count == 0:
        if load(ctx.keyspace, args[1], counted=False) is None:
            return array([])
        return array([])
    items = popped(ctx, ctx.keyspace, args[1], args[0].upper() == b"ZPOPMAX", count)
    if not items:
        return array([])
    return with_scores(conn, items, pairs=len(args) == 3)


ZSET_ENDS = (b"min", b"max")  # (MAX: True)


def zpop_taker(ctx: Context, conn: Connection, maximum: bool, count: int | None) -> Take:
    """ZMPOP's, BZMPOP's (count) and BZPOPMIN/MAX's (None: [key, member, score]) pop of
    one key; None if it holds nothing."""
    def take(keyspace: Keyspace, key: bytes) -> bytes | None:
        items = popped(ctx, keyspace, key, maximum, count or 1)
        if not items:
            return None
        if count is None:
            return array([bulk(key), bulk(items[0][0]), conn.resp.double(items[0][1])])
        return array([bulk(key), array([array([bulk(m), conn.resp.double(s)])
                                        for m, s in items])])
    return take


def zmpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]."""
    return multi_pop(ctx, conn, args, ZSET_ENDS,
                     lambda maximum, count: zpop_taker(ctx, conn, maximum, count))


def bzpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """BZPOPMIN / BZPOPMAX key [key ...] timeout: [key, member, score]."""
    seconds = parse_timeout(args[-1])
    if isinstance(seconds, bytes):
        return seconds
    take = zpop_taker(ctx, conn, args[0].upper() == b"BZPOPMAX", None)
    return pop_or_block(ctx, conn, args[1:-1], seconds, take, args[0].decode().lower())


def bzmpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]."""
    return blocking_multi_pop(ctx, conn, args, ZSET_ENDS,
                              lambda maximum, count: zpop_taker(ctx, conn, maximum, count))


# -- random members, scans ----------------------------------------------------------------

def zrandmember(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZRANDMEMBER key [count [WITHSCORES]]."""
    if len(args) == 2:
        zset = load(ctx.keyspace, args[1])
        if zset is None:
            return conn.resp.null
        return bulk(random.choice(list(zset.index.scores)))
    parsed = parse_random_count(args, b"withscores")
    if isinstance(parsed, bytes):
        return parsed
    count, scores_too = parsed
    zset = load(ctx.keyspace, args[1])
    if zset is None or count == 0:
        return array([])
    scores = zset.index.scores
    chosen = random_picks([m for _, m in zset.index.order], count)
    if scores_too:
        return with_scores(conn, [(m, scores[m]) for m in chosen], pairs=True)
    return conn.resp.bulks(chosen)


def zscan(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZSCAN key cursor [MATCH pattern] [COUNT count]: members and their scores (as Redis
    writes them: d2string)."""
    cursor = parse_cursor(args[2])
    if cursor is None:
        return INVALID_CURSOR
    zset = load(ctx.keyspace, args[1])
    if zset is None:
        return array([bulk(b"0"), array([])])
    index = zset.index
    step = scan_step(ctx, args, cursor, zset.hash.fields, lambda: [m for _, m in index.order])
    if isinstance(step, bytes):
        return step
    return array([bulk(b"%d" % step[0]), conn.resp.bulks(
        [part for m in step[1] for part in (m, score_text(index.scores[m]))])])


# -- combining ----------------------------------------------------------------------------

def _source(keyspace: Keyspace, key: bytes) -> dict[bytes, float] | None:
    """A ZUNION/ZINTER/ZDIFF input: a sorted set's scores, a set's members at 1. (Read, so
    counted as a hit or miss, as Redis's lookupKeyRead -- for the STORE forms too.)"""
    found = keyspace.read_any(key)
    if found is None:
        return None
    if found[1] == SET:
        members = read(keyspace, key, counted=False, kind=SET)
        return dict.fromkeys(members.fields, 1.0) if members is not None else None
    if found[1] != ZSET:
        raise CommandError(WRONGTYPE)
    zset = load(keyspace, key, counted=False)
    return dict(zset.index.scores) if zset is not None else None


class Combine:
    """What ZUNION, ZINTER, ZDIFF (their STORE forms) and ZINTERCARD asked for."""

    __slots__ = ("sources", "weights", "aggregate", "scores", "limit")

    def __init__(self, sources: list[dict[bytes, float] | None]) -> None:
        self.sources = sources
        self.weights = [1.0] * len(sources)
        self.aggregate, self.scores, self.limit = "sum", False, 0


def parse_combine(ctx: Context, args: list, at: int, how: str, option: bytes | None
                  ) -> Combine | bytes:
    """numkeys at args[at], the keys, then the options, in Redis's order (its
    zunionInterDiffGenericCommand): the keys are read -- WRONGTYPE, hits and misses --
    before the options are parsed. `option`: WITHSCORES or LIMIT, where allowed."""
    numkeys = parse_strict_int(args[at])
    if numkeys is None:
        return NOT_INTEGER
    if numkeys < 1:
        name = args[0].decode().lower()
        return error(f"ERR at least 1 input key is needed for '{name}' command")
    if at + 1 + numkeys > len(args):
        return SYNTAX
    asked = Combine([_source(ctx.keyspace, key) for key in args[at + 1:at + 1 + numkeys]])
    weighted = how != "diff" and option != b"limit"
    j = at + 1 + numkeys
    while j < len(args):
        word, left = keyword(args[j]), len(args) - j - 1
        if weighted and word == b"weights" and left >= numkeys:
            weights = [parse_score(w) for w in args[j + 1:j + 1 + numkeys]]
            if None in weights:
                return error("ERR weight value is not a float")
            asked.weights = weights  # type: ignore[assignment]
            j += numkeys
        elif weighted and word == b"aggregate" and left >= 1:
            asked.aggregate = keyword(args[j + 1]).decode()
            if asked.aggregate not in ("sum", "min", "max"):
                return SYNTAX
            j += 1
        elif option == b"withscores" and word == b"withscores":
            asked.scores = True
        elif option == b"limit" and word == b"limit" and left >= 1:
            limit = parse_strict_int(args[j + 1])
            if limit is None or limit < 0:
                return error("ERR LIMIT can't be negative")
            asked.limit = limit
            j += 1
        else:
            return SYNTAX
        j += 1
    return asked


def _combined(asked: Combine, how: str) -> list[tuple[bytes, float]]:
    sources = asked.sources
    if how == "diff":
        first = sources[0] or {}
        rest = [s for s in sources[1:] if s]
        result = {m: s for m, s in first.items() if not any(m in other for other in rest)}
    else:
        weighted = [{m: _weigh(s, w) for m, s in source.items()} if source else {}
                    for source, w in zip(sources, asked.weights)]
        if how == "inter":
            if any(not source for source in weighted):
                return []
            smallest = min(weighted, key=len)
            members = [m for m in smallest if all(m in other for other in weighted)]
        else:
            members = list(dict.fromkeys(m for source in weighted for m in source))
        result = {}
        for m in members:
            values = [source[m] for source in weighted if m in source]
            result[m] = _aggregate(values, asked.aggregate)
    return sorted(result.items(), key=lambda item: (item[1], item[0]))


def _weigh(score: float, weight: float) -> float:
    product = score * weight
    return 0.0 if math.isnan(product) else product


def _aggregate(values: list[float], how: str) -> float:
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    total = values[0]
    for value in values[1:]:
        total += value
        if math.isnan(total):
            total = 0.0
    return total


def zcombine(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZUNION / ZINTER / ZDIFF numkeys key [key ...] [WEIGHTS ...] [AGGREGATE ...]
    [WITHSCORES]."""
    how = args[0].decode().lower()[1:]
    asked = parse_combine(ctx, args, 1, how, b"withscores")
    if isinstance(asked, bytes):
        return asked
    items = _combined(asked, how)
    if asked.scores:
        return with_scores(conn, items, pairs=True)
    return conn.resp.bulks([m for m, _ in items])


def zcombine_store(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE destination numkeys key [key ...] ..."""
    how = args[0].decode().lower()[1:-5]
    asked = parse_combine(ctx, args, 2, how, None)
    if isinstance(asked, bytes):
        return asked
    items = _combined(asked, how)
    store_result(ctx, args[1], items, args[0].lower())
    return integer(len(items))


def zintercard(ctx: Context, conn: Connection, args: list) -> bytes:
    """ZINTERCARD numkeys key [key ...] [LIMIT limit] (Redis parses it as ZINTER's)."""
    asked = parse_combine(ctx, args, 1, "inter", b"limit")
    if isinstance(asked, bytes):
        return asked
    found = len(_combined(asked, "inter"))
    return integer(min(found, asked.limit) if asked.limit else found)


COMMANDS = [
    row("zadd", zadd),
    row("zincrby", zadd),
    row("zrem", zrem),
    row("zcard", zcard),
    row("zscore", zscore),
    row("zmscore", zmscore),
    row("zrank", zrank),
    row("zrevrank", zrank),
    row("zcount", zcount),
    row("zlexcount", zcount),
    row("zrange", zrange),
    row("zrevrange", zrange),
    row("zrangebyscore", zrange),
    row("zrevrangebyscore", zrange),
    row("zrangebylex", zrange),
    row("zrevrangebylex", zrange),
    row("zrangestore", zrangestore),
    row("zremrangebyrank", zremrange),
    row("zremrangebyscore", zremrange),
    row("zremrangebylex", zremrange),
    row("zpopmin", zpop),
    row("zpopmax", zpop),
    row("zmpop", zmpop),
    row("bzpopmin", bzpop),
    row("bzpopmax", bzpop),
    row("bzmpop", bzmpop),
    row("zrandmember", zrandmember),
    row("zscan", zscan),
    row("zunion", zcombine),
    row("zinter", zcombine),
    row("zdiff", zcombine),
    row("zunionstore", zcombine_store),
    row("zinterstore", zcombine_store),
    row("zdiffstore", zcombine_store),
    row("zintercard", zintercard),
]
