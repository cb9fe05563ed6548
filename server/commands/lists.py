"""The list commands (Redis's t_list.c): LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LINDEX
LSET LRANGE LTRIM LINSERT LREM LPOS LMOVE RPOPLPUSH LMPOP, and the blocking BLPOP BRPOP
BLMOVE BRPOPLPUSH BLMPOP (the waiting itself is server/blocking.py's).

A list is a collection of element records (docs/data-model.md) whose elements are named
by their positions, integers without a gap from `head` to `tail` (Kvrocks's layout):
index i is position head + i. A push at either end writes one record, a pop one
tombstone, LINDEX and LSET find their element at once, LRANGE reads what it returns.
LINSERT and LREM, which shift elements, write the list again under a new version (O(N),
as Redis's are). A list left empty is deleted, as in Redis. Every command is one write
batch. Lists are never packed whole: a queue's push and pop must stay O(1) on disk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import notify
from ..blocking import BLOCKED, Blocked
from ..connection import Connection
from ..errors import CommandError
from ..keyspace import LIST, WRONGTYPE
from ..protocol import parse_strict_int
from ..resp import OK, ZERO, array, bulk, error, integer
from .common import NOT_INTEGER, SYNTAX, keyword, parse_multi_pop, wrong_arity
from .table import row

if TYPE_CHECKING:
    from ..context import Context
    from ..keyspace import Keyspace

OUT_OF_RANGE = error("ERR index out of range")
NO_SUCH_KEY = error("ERR no such key")
NOT_POSITIVE = error("ERR value is out of range, must be positive")
LEFT, RIGHT = True, False
# take(keyspace, key): pop what `key` holds for a client, and the reply; None if nothing
Take = Callable[["Keyspace", bytes], "bytes | None"]


class StoredList:
    """One list as commands see it: its length and elements by index, read from the store;
    changes go through the keyspace (batches, WATCH) and keep positions without a gap."""

    def __init__(self, keyspace: Keyspace, key: bytes) -> None:
        self.keyspace, self.key = keyspace, key
        self.store, self.db = keyspace.store, keyspace.db
        self.head, self.tail = self.store.element_range(key, self.db)

    def __len__(self) -> int:
        return self.tail - self.head

    def at(self, index: int) -> bytes:
        """The element at a non-negative index within the list."""
        value = self.store.get_element(self.key, self.head + index, self.db)
        assert value is not None, "a list's positions have no gap"
        return value

    def range(self, start: int, stop: int) -> list[bytes]:
        """Elements start..stop inclusive (Redis's negative and out-of-range indexes)."""
        start, stop = clip(start, stop, len(self))
        head = self.head
        values = self.store.get_elements(self.key, range(head + start, head + stop + 1),
                                         self.db)
        assert None not in values, "a list's positions have no gap"
        return values  # type: ignore[return-value]

    def push(self, values: list[bytes], left: bool) -> None:
        changes: dict = {}
        head, tail = self.head, self.tail
        for value in values:
            if left:
                head -= 1
                changes[head] = value
            else:
                changes[tail] = value
                tail += 1
        self.keyspace.write_elements(self.key, changes)
        self.head, self.tail = head, tail

    def pop(self, count: int, left: bool) -> list[bytes]:
        """Up to `count` elements from one end, in the order popped; the list is deleted
        once empty."""
        count = min(count, len(self))
        positions = (range(self.head, self.head + count) if left
                     else range(self.tail - 1, self.tail - 1 - count, -1))
        values = [self.at(p - self.head) for p in positions]
        if count == len(self):
            self.keyspace.delete(self.key)
            self.head = self.tail = 0
        else:
            self.keyspace.write_elements(self.key, dict.fromkeys(positions))
            if left:
                self.head += count
            else:
                self.tail -= count
        return values

    def rewrite(self, values: list[bytes]) -> None:
        """The list becomes `values` (under a new version), or goes if it is empty."""
        keyspace = self.keyspace
        if not values:
            keyspace.delete(self.key)
            return
        keyspace.begin_batch()
        try:
            keyspace.create_collection(self.key, LIST, keyspace.deadline(self.key))
            keyspace.write_elements(self.key, dict(enumerate(values)))
        finally:
            keyspace.end_batch()
        self.head, self.tail = 0, len(values)


def clip(start: int, stop: int, length: int) -> tuple[int, int]:
    """Redis's range rule: negative indexes count from the end; an empty range is
    (0, -1)."""
    if start < 0:
        start += length
    if stop < 0:
        stop += length
    start = max(start, 0)
    if start > stop or start >= length:
        return 0, -1
    return start, min(stop, length - 1)


def read(keyspace: Keyspace, key: bytes, counted: bool = True) -> StoredList | None:
    """The list at `key`, None if there is none; WRONGTYPE for another type."""
    found = keyspace.read_any(key, counted)
    if found is None:
        return None
    if found[1] != LIST:
        raise CommandError(WRONGTYPE)
    return StoredList(keyspace, key)


def create(keyspace: Keyspace, key: bytes) -> StoredList:
    """A new, empty list at `key` (which holds nothing); it exists once pushed to."""
    keyspace.create_collection(key, LIST)
    return StoredList(keyspace, key)


def push_to(keyspace: Keyspace, key: bytes, values: list[bytes], left: bool,
            existing: StoredList | None) -> int:
    """Push `values` to `key`'s list (made first if `existing` is None), as one batch;
    the new length. (Onto an existing list the push is write_elements' own batch -- none
    for one element: a queue's LPUSH writes one record and no batch markers.)"""
    for value in values:
        keyspace.check_sizes(key, value)
    if existing is not None:
        existing.push(values, left)
        target = existing
    else:
        keyspace.begin_batch()
        try:
            target = create(keyspace, key)
            target.push(values, left)
        finally:
            keyspace.end_batch()
    keyspace.notify(notify.LIST, b"lpush" if left else b"rpush", key)
    return len(target)


def tell_popped(keyspace: Keyspace, key: bytes, left: bool) -> None:
    """The notifications of a pop (Redis's listElementsRemoved): "lpop" or "rpop", then
    "del" if the list went."""
    if keyspace.events.flags:
        keyspace.notify(notify.LIST, b"lpop" if left else b"rpop", key)
        if not keyspace.store.contains(key, keyspace.db):
            keyspace.notify(notify.GENERIC, b"del", key)


def side(arg: bytes) -> bool | None:
    """LEFT or RIGHT (Redis's getListPositionFromObjectOrReply), None for neither."""
    word = keyword(arg)
    return LEFT if word == b"left" else RIGHT if word == b"right" else None


# -- the commands -----------------------------------------------------------------------

def push(ctx: Context, conn: Connection, args: list) -> bytes:
    """LPUSH, RPUSH (the list is made if need be), LPUSHX, RPUSHX (only onto a list)."""
    name = args[0].upper()
    existing = read(ctx.keyspace, args[1], counted=False)
    if existing is None and name.endswith(b"X"):
        return ZERO
    return integer(push_to(ctx.keyspace, args[1], args[2:], name.startswith(b"L"), existing))


def pop(ctx: Context, conn: Connection, args: list) -> bytes:
    """LPOP / RPOP key [count]: a bulk, or with a count an array (null for no list)."""
    if len(args) > 3:
        return wrong_arity(args[0])
    count = None
    if len(args) == 3:
        count = parse_strict_int(args[2])
        if count is None or count < 0:  # (Redis's getPositiveLongFromObjectOrReply)
            return NOT_POSITIVE
    target = read(ctx.keyspace, args[1], counted=False)  # (a write's: as lookupKeyWrite)
    if target is None:
        return conn.resp.null if count is None else conn.resp.null_array
    if count == 0:
        return array([])
    left = args[0].upper().startswith(b"L")
    values = target.pop(count or 1, left)  # (one record, or write_elements' own batch)
    tell_popped(ctx.keyspace, args[1], left)
    return bulk(values[0]) if count is None else conn.resp.bulks(values)


def llen(ctx: Context, conn: Connection, args: list) -> bytes:
    target = read(ctx.keyspace, args[1])
    return integer(0 if target is None else len(target))


def index_in(target: StoredList, arg: bytes) -> int | bytes | None:
    """LINDEX's and LSET's index as a position from the head (negative: from the tail),
    None past either end, or the error reply for a non-integer."""
    index = parse_strict_int(arg)
    if index is None:
        return NOT_INTEGER
    if index < 0:
        index += len(target)
    return index if 0 <= index < len(target) else None


def lindex(ctx: Context, conn: Connection, args: list) -> bytes:
    target = read(ctx.keyspace, args[1])
    if target is None:
        return conn.resp.null
    index = index_in(target, args[2])
    if isinstance(index, bytes):
        return index
    return conn.resp.null if index is None else bulk(target.at(index))


def lset(ctx: Context, conn: Connection, args: list) -> bytes:
    target = read(ctx.keyspace, args[1], counted=False)
    if target is None:
        return NO_SUCH_KEY
    index = index_in(target, args[2])
    if isinstance(index, bytes):
        return index
    if index is None:
        return OUT_OF_RANGE
    ctx.keyspace.check_sizes(args[1], args[3])
    ctx.keyspace.write_elements(args[1], {target.head + index: args[3]})
    ctx.keyspace.notify(notify.LIST, b"lset", args[1])
    return OK


def lrange(ctx: Context, conn: Connection, args: list) -> bytes:
    start, stop = parse_strict_int(args[2]), parse_strict_int(args[3])
    if start is None or stop is None:
        return NOT_INTEGER
    target = read(ctx.keyspace, args[1])
    if target is None:
        return array([])
    return conn.resp.bulks(target.range(start, stop))


def ltrim(ctx: Context, conn: Connection, args: list) -> bytes:
    start, stop = parse_strict_int(args[2]), parse_strict_int(args[3])
    if start is None or stop is None:
        return NOT_INTEGER
    target = read(ctx.keyspace, args[1], counted=False)
    if target is None:
        return OK
    length = len(target)
    start, stop = clip(start, stop, length)
    keep = stop - start + 1
    keyspace = ctx.keyspace
    if keep <= 0:
        keyspace.delete(args[1])
    elif keep < length:
        positions = [*range(target.head, target.head + start),
                     *range(target.tail - 1, target.head + stop, -1)]
        keyspace.write_elements(args[1], dict.fromkeys(positions))
    keyspace.notify(notify.LIST, b"ltrim", args[1])
    if keep <= 0:
        keyspace.notify(notify.GENERIC, b"del", args[1])
    return OK


def linsert(ctx: Context, conn: Connection, args: list) -> bytes:
    where = keyword(args[2])
    if where not in (b"before", b"after"):
        return SYNTAX
    target = read(ctx.keyspace, args[1], counted=False)
    if target is None:
        return ZERO
    values = target.range(0, -1)
    try:
        at = values.index(args[3])
    except ValueError:
        return integer(-1)
    ctx.keyspace.check_sizes(args[1], args[4])
    values.insert(at + (where == b"after"), args[4])
    target.rewrite(values)
    ctx.keyspace.notify(notify.LIST, b"linsert", args[1])
    return integer(len(values))


def lrem(ctx: Context, conn: Connection, args: list) -> bytes:
    count = parse_strict_int(args[2])
    if count is None:
        return NOT_INTEGER
    target = read(ctx.keyspace, args[1], counted=False)
    if target is None:
        return ZERO
    values = target.range(0, -1)
    element, limit = args[3], abs(count)
    order = range(len(values)) if count >= 0 else range(len(values) - 1, -1, -1)
    removed: set[int] = set()
    for i in order:
        if values[i] == element:
            removed.add(i)
            if limit and len(removed) == limit:
                break
    if removed:
        target.rewrite([v for i, v in enumerate(values) if i not in removed])
        ctx.keyspace.notify(notify.LIST, b"lrem", args[1])
        if len(removed) == len(values):
            ctx.keyspace.notify(notify.GENERIC, b"del", args[1])
    return integer(len(removed))


def lpos(ctx: Context, conn: Connection, args: list) -> bytes:
    """LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]."""
    rank, count, maxlen = 1, -1, 0
    j = 3
    while j < len(args):
        option, more = keyword(args[j]), j + 1 < len(args)
        if option == b"rank" and more:
            rank = parse_strict_int(args[j + 1])  # type: ignore[assignment]
            if rank is None:
                return NOT_INTEGER
            if rank == 0:
                return error("ERR RANK can't be zero: use 1 to start from the first match, "
                             "2 from the second ... or use negative to start from the end of "
                             "the list")
        elif option in (b"count", b"maxlen") and more:
            value = parse_strict_int(args[j + 1])
            if value is None or value < 0:
                return error(f"ERR {option.decode().upper()} can't be negative")
            if option == b"count":
                count = value
            else:
                maxlen = value
        else:
            return SYNTAX
        j += 2
    target = read(ctx.keyspace, args[1])
    if target is None:
        return array([]) if count != -1 else conn.resp.null
    length = len(target)
    backwards = rank < 0
    rank = abs(rank)
    scanned = range(length - 1, -1, -1) if backwards else range(length)
    if maxlen:
        scanned = scanned[:maxlen]
    matches: list[int] = []
    seen = 0
    for index in scanned:
        if target.at(index) == args[2]:
            seen += 1
            if seen >= rank:
                matches.append(index)
                if count == -1 or (count and len(matches) >= count):
                    break
    if count == -1:
        return integer(matches[0]) if matches else conn.resp.null
    return array([integer(i) for i in matches])


def move(ctx: Context, keyspace: Keyspace, source: bytes, destination: bytes, from_left: bool,
         to_left: bool) -> bytes | None:
    """Pop one element of `source` and push it onto `destination`, one batch: the element,
    or None if `source` is no list. WRONGTYPE (nothing moved) if `destination` holds
    another type."""
    origin = read(keyspace, source, counted=False)
    if origin is None:
        return None
    found = keyspace.read_any(destination, counted=False)
    if found is not None and found[1] != LIST:
        raise CommandError(WRONGTYPE)
    keyspace.begin_batch()
    try:
        (value,) = origin.pop(1, from_left)
        target = read(keyspace, destination, counted=False)  # (gone if it was the source)
        push_to(keyspace, destination, [value], to_left, target)
    finally:
        keyspace.end_batch()
    tell_popped(keyspace, source, from_left)  # (after the push's, as Redis tells them)
    return value


def move_ends(args: list) -> tuple[bool, bool] | None:
    """(from LEFT, to LEFT) of LMOVE and BLMOVE; RPOPLPUSH's and BRPOPLPUSH's fixed ones
    (their name ends in PUSH); None for a word that is neither LEFT nor RIGHT."""
    if args[0].upper().endswith(b"PUSH"):
        return RIGHT, LEFT
    from_side, to_side = side(args[3]), side(args[4])
    if from_side is None or to_side is None:
        return None
    return from_side, to_side


def lmove(ctx: Context, conn: Connection, args: list) -> bytes:
    """LMOVE source destination LEFT|RIGHT LEFT|RIGHT; RPOPLPUSH source destination."""
    ends = move_ends(args)
    if ends is None:
        return SYNTAX
    from_left, to_left = ends
    value = move(ctx, ctx.keyspace, args[1], args[2], from_left, to_left)
    return conn.resp.null if value is None else bulk(value)


def popped_from(keyspace: Keyspace, key: bytes, left: bool, count: int) -> list[bytes] | None:
    """Pop up to `count` elements of the list at `key` (one batch), None if there is no
    list there (WRONGTYPE for another type)."""
    target = read(keyspace, key, counted=False)
    if target is None:
        return None
    values = target.pop(count, left)  # (one record, or write_elements' own batch)
    tell_popped(keyspace, key, left)
    return values


def mpop_taker(conn: Connection, left: bool, count: int) -> Take:
    """LMPOP's and BLMPOP's pop of one key: [key, [elements]], None if it has none. (A
    write's lookup, not counted as a hit or miss, as Redis's mpopGenericCommand.)"""
    def take(keyspace: Keyspace, key: bytes) -> bytes | None:
        values = popped_from(keyspace, key, left, count)
        return array([bulk(key), conn.resp.bulks(values)]) if values else None
    return take


def first_taken(keyspace: Keyspace, keys: list[bytes], take: Take) -> bytes | None:
    """The reply of the first of `keys` that `take` pops from, or None."""
    for key in keys:
        reply = take(keyspace, key)
        if reply is not None:
            return reply
    return None


# A multi-pop's pop of one key, from the end its word names (True: LEFT, MAX) and count
Taker = Callable[[bool, int], Take]
LIST_ENDS = (b"right", b"left")


def multi_pop(ctx: Context, conn: Connection, args: list, ends: tuple[bytes, bytes],
              taker: Taker) -> bytes:
    """LMPOP and ZMPOP numkeys key [key ...] <end> [COUNT count]: the first key that has
    something pops (`ends`: the two words, the second meaning True), else a null array."""
    parsed = parse_multi_pop(args, 1, ends)
    if isinstance(parsed, bytes):
        return parsed
    keys, end, count = parsed
    found = first_taken(ctx.keyspace, keys, taker(end, count))
    return conn.resp.null_array if found is None else found


def blocking_multi_pop(ctx: Context, conn: Connection, args: list, ends: tuple[bytes, bytes],
                       taker: Taker) -> bytes:
    """BLMPOP and BZMPOP timeout numkeys key [key ...] <end> [COUNT count]."""
    seconds = parse_timeout(args[1])
    if isinstance(seconds, bytes):
        return seconds
    parsed = parse_multi_pop(args, 2, ends)
    if isinstance(parsed, bytes):
        return parsed
    keys, end, count = parsed
    return pop_or_block(ctx, conn, keys, seconds, taker(end, count), args[0].decode().lower())


def lmpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]."""
    return multi_pop(ctx, conn, args, LIST_ENDS,
                     lambda left, count: mpop_taker(conn, left, count))


# -- blocking ---------------------------------------------------------------------------

def parse_timeout(arg: bytes) -> float | bytes:
    """A blocking command's timeout in seconds (Redis's getTimeoutFromObjectOrReply: a
    float; 0 waits for ever), or the error reply."""
    try:
        seconds = float(arg) if arg == arg.strip() else math.nan
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds):
        return error("ERR timeout is not a float or out of range")
    if seconds < 0:
        return error("ERR timeout is negative")
    if seconds * 1000 >= 1 << 62:
        return error("ERR timeout is out of range")
    return seconds


def may_block(conn: Connection) -> bool:
    """A client may wait: not a script's, not inside EXEC (there a blocking command that
    finds nothing answers as if it timed out, as in Redis)."""
    return isinstance(conn, Connection) and not conn.tx.executing


def block(ctx: Context, conn: Connection, keys: list[bytes], seconds: float,
          timeout_reply: bytes, serve, command: str) -> bytes:
    """Register `conn` as waiting on `keys`; the gate then holds its further requests."""
    deadline = time.monotonic() + seconds if seconds else 0.0
    ctx.databases.blocking.block(Blocked(conn, conn.db, keys, deadline, timeout_reply, serve,
                                         command))
    return BLOCKED


def pop_or_block(ctx: Context, conn: Connection, keys: list[bytes], seconds: float,
                 take: Take, command: str) -> bytes:
    """The path BLPOP, BRPOP, BLMPOP, BZPOPMIN, BZPOPMAX and BZMPOP share: the first of
    `keys` that `take` pops from answers now (WRONGTYPE for one of another type); else the
    client waits, served later by the same `take` -- where a key that holds another type
    by then serves nothing, as Redis skips it -- or, where it may not wait (inside EXEC, a
    script), gets the null a timeout would give."""
    found = first_taken(ctx.keyspace, keys, take)
    if found is not None:
        return found
    if not may_block(conn):
        return conn.resp.null_array

    def served(keyspace: Keyspace, key: bytes) -> bytes | None:
        try:
            return take(keyspace, key)
        except CommandError:
            return None

    return block(ctx, conn, keys, seconds, conn.resp.null_array, served, command)


def bpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """BLPOP / BRPOP key [key ...] timeout: [key, element] of the first key that has one,
    else wait; null on a timeout."""
    seconds = parse_timeout(args[-1])
    if isinstance(seconds, bytes):
        return seconds
    left = args[0].upper() == b"BLPOP"

    def take(keyspace: Keyspace, key: bytes) -> bytes | None:
        values = popped_from(keyspace, key, left, 1)
        return conn.resp.bulks([key, values[0]]) if values else None

    return pop_or_block(ctx, conn, args[1:-1], seconds, take, args[0].decode().lower())


def blmove(ctx: Context, conn: Connection, args: list) -> bytes:
    """BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout; BRPOPLPUSH source
    destination timeout."""
    ends = move_ends(args)
    if ends is None:
        return SYNTAX
    from_left, to_left = ends
    seconds = parse_timeout(args[-1])
    if isinstance(seconds, bytes):
        return seconds
    source, destination = args[1], args[2]
    value = move(ctx, ctx.keyspace, source, destination, from_left, to_left)
    if value is not None:
        return bulk(value)
    if not may_block(conn):
        return conn.resp.null

    def serve(keyspace: Keyspace, key: bytes) -> bytes | None:
        """The element moved; WRONGTYPE (answered, nothing moved) for a destination of
        another type, as Redis's serveClientBlockedOnList; None while the source is no
        list."""
        try:
            moved = move(ctx, keyspace, source, destination, from_left, to_left)
        except CommandError as refused:
            found = keyspace.read_any(source, counted=False)
            return refused.reply if found is not None and found[1] == LIST else None
        return None if moved is None else bulk(moved)

    # (a timeout answers a null array, as every list wait's in Redis 7.0: blocked.c)
    return block(ctx, conn, [source], seconds, conn.resp.null_array, serve,
                 args[0].decode().lower())


def blmpop(ctx: Context, conn: Connection, args: list) -> bytes:
    """BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]."""
    return blocking_multi_pop(ctx, conn, args, LIST_ENDS,
                              lambda left, count: mpop_taker(conn, left, count))


COMMANDS = [
    row("lpush", push),
    row("rpush", push),
    row("lpushx", push),
    row("rpushx", push),
    row("lpop", pop),
    row("rpop", pop),
    row("llen", llen),
    row("lindex", lindex),
    row("lset", lset),
    row("lrange", lrange),
    row("ltrim", ltrim),
    row("linsert", linsert),
    row("lrem", lrem),
    row("lpos", lpos),
    row("lmove", lmove),
    row("rpoplpush", lmove),
    row("lmpop", lmpop),
    row("blpop", bpop),
    row("brpop", bpop),
    row("blmove", blmove),
    row("brpoplpush", blmove),
    row("blmpop", blmpop),
]
