"""Streams, the part job queues use (Redis's t_stream.c): XADD (auto and explicit IDs,
NOMKSTREAM, MAXLEN/MINID trimming), XRANGE, XREVRANGE, XLEN, XDEL, XTRIM. Consumer groups
and XREAD are not here yet.

A stream is stored as a hash of entry -> its fields (hashes.py's two forms: packed while
small, one element record per entry past 128): the entry's ID as 16 big-endian bytes
(milliseconds, sequence), so IDs sort as bytes; its fields and values msgpack'd. One more
field, `LAST`, keeps the greatest ID ever added, so IDs only grow after XDEL, as Redis's.
A stream emptied by XDEL or XTRIM stays, as in Redis.

Trimming with `~` removes whole blocks of `stream-node-max-entries` (100) oldest entries
(the newest block may be partial), as Redis removes whole nodes: a stream capped with
`MAXLEN ~ 10` keeps up to about 100 entries, as Redis's does.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING

import msgpack

from .. import notify
from ..keyspace import STREAM
from ..protocol import parse_strict_int
from ..resp import ZERO, array, bulk, error, integer
from .common import NOT_INTEGER, SYNTAX, keyword, wrong_arity
from .hashes import Hash, _for_write, read, write
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context
    from ..keyspace import Keyspace

ID = struct.Struct(">QQ")
LAST = b"LAST"  # (4 bytes: never an entry's 16)
MAX64 = (1 << 64) - 1
NODE = 100  # Redis's stream-node-max-entries: the block `~` trims by
INVALID_ID = error("ERR Invalid stream ID specified as stream command argument")
StreamID = tuple[int, int]


def parse_id(arg: bytes, missing_seq: int = 0, strict: bool = False,
             star_seq: bool = False) -> StreamID | None:
    """Redis's streamGenericParseIDOrReply: "-" and "+" (unless strict), "ms" (seq:
    missing_seq), "ms-seq", and with `star_seq` "ms-*" (seq -1: to be chosen)."""
    if arg == b"-" and not strict:
        return (0, 0)
    if arg == b"+" and not strict:
        return (MAX64, MAX64)
    head, dash, tail = arg.partition(b"-")
    ms = _u64(head)
    if ms is None:
        return None
    if not dash:
        return (ms, missing_seq)
    if star_seq and tail == b"*":
        return (ms, -1)
    seq = _u64(tail)
    return None if seq is None else (ms, seq)


def _u64(text: bytes) -> int | None:
    if not text or not text.isdigit() or (len(text) > 1 and text[0:1] == b"0"):
        return None
    value = int(text)
    return value if value <= MAX64 else None


def id_text(entry: StreamID) -> bytes:
    return b"%d-%d" % entry


class Stream:
    """A stream as commands see it: its entries in ID order and the last ID given."""

    def __init__(self, hash_: Hash) -> None:
        self.hash = hash_
        last = hash_.fields.get(LAST)
        self.last: StreamID = ID.unpack(last) if last else (0, 0)
        self._ids: list[bytes] | None = None

    @property
    def ids(self) -> list[bytes]:
        """The entries' IDs in order: sorted when first asked for (by a range or a trim;
        a large stream keeps no ordered index yet), not for XADD or XLEN."""
        if self._ids is None:
            self._ids = sorted(key for key in self.hash.fields if len(key) == 16)
        return self._ids

    def __len__(self) -> int:
        return len(self.hash.fields) - 1  # (every field but LAST, which every stream has)

    def pairs(self, packed_id: bytes) -> list[bytes]:
        """An entry's fields and values, in turn."""
        return msgpack.unpackb(self.hash.fields[packed_id])

    def entry(self, packed_id: bytes) -> list:
        return [bulk(id_text(ID.unpack(packed_id))),
                array([bulk(part) for part in self.pairs(packed_id)])]


def pack_pairs(pairs: list[bytes]) -> bytes:
    """An entry's fields and values as the stream's hash holds them (Stream.pairs)."""
    return msgpack.packb(list(pairs))


def load(keyspace: Keyspace, key: bytes, counted: bool = True) -> Stream | None:
    found = read(keyspace, key, counted, kind=STREAM)
    return None if found is None else Stream(found)


def _trim(stream: Stream, strategy: str, threshold, approximate: bool, limit: int) -> int:
    """Delete the oldest entries past MAXLEN or below MINID; how many went."""
    ids = stream.ids
    floor = ID.pack(*threshold) if strategy == "minid" else b""
    if not approximate:
        if strategy == "maxlen":
            excess = max(0, len(ids) - threshold)
        else:
            excess = next((i for i, entry in enumerate(ids) if entry >= floor), len(ids))
    else:  # whole blocks of NODE, oldest first, as Redis removes whole nodes (streamTrim)
        excess = 0
        while excess < len(ids):
            block = min(NODE, len(ids) - excess)
            if limit and excess + block > limit:
                break
            if strategy == "maxlen":
                if len(ids) - excess - block < threshold:
                    break
            elif ids[excess + block - 1] >= floor:
                break
            excess += block
    fields = stream.hash.fields
    for entry in ids[:excess]:
        del fields[entry]
    del ids[:excess]
    return excess


def parse_trim(args: list, start: int, xadd: bool) -> tuple | bytes:
    """XADD's and XTRIM's options from args[start]: (strategy, threshold, approximate,
    limit, nomkstream, index of the ID for XADD), or the error reply."""
    strategy: str | None = None
    threshold: object = None
    approximate = nomkstream = limit_given = False
    limit = 0
    i = start
    while i < len(args):
        option, more = keyword(args[i]), len(args) - 1 - i
        if xadd and args[i] == b"*":
            break
        if option in (b"maxlen", b"minid") and more:
            if strategy is not None:
                return error("ERR syntax error, MAXLEN and MINID options at the same time "
                             "are not compatible")
            approximate = False
            if more >= 2 and args[i + 1] in (b"~", b"="):
                approximate = args[i + 1] == b"~"
                i += 1
            if option == b"maxlen":
                threshold = parse_strict_int(args[i + 1])
                if threshold is None:
                    return NOT_INTEGER
                if threshold < 0:
                    return error("ERR The MAXLEN argument must be >= 0.")
            else:
                threshold = parse_id(args[i + 1], strict=True)
                if threshold is None:
                    return INVALID_ID
            strategy = option.decode()
            i += 2
        elif option == b"limit" and more:
            parsed = parse_strict_int(args[i + 1])
            if parsed is None:
                return NOT_INTEGER
            if parsed < 0:
                return error("ERR The LIMIT argument must be >= 0.")
            limit, limit_given = parsed, True
            i += 2
        elif xadd and option == b"nomkstream":
            nomkstream = True
            i += 1
        elif xadd:
            break
        else:
            return SYNTAX
    if limit and strategy is None:
        return error("ERR syntax error, LIMIT cannot be used without specifying a trimming "
                     "strategy")
    if not xadd and strategy is None:
        return error("ERR syntax error, XTRIM must be called with a trimming strategy")
    if limit_given and not approximate:
        return error("ERR syntax error, LIMIT cannot be used without the special ~ option")
    if approximate and not limit_given:
        limit = 100 * NODE
    return strategy, threshold, approximate, limit, nomkstream, i


def xadd(ctx: Context, conn: Connection, args: list) -> bytes:
    """XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value
    [field value ...]."""
    parsed = parse_trim(args, 2, xadd=True)
    if isinstance(parsed, bytes):
        return parsed
    strategy, threshold, approximate, limit, nomkstream, at = parsed
    if at >= len(args):
        return wrong_arity(args[0])
    wanted = None if args[at] == b"*" else parse_id(args[at], strict=True, star_seq=True)
    if args[at] != b"*" and wanted is None:
        return INVALID_ID
    pairs = args[at + 1:]
    if len(pairs) < 2 or len(pairs) % 2:
        return wrong_arity(args[0])
    keyspace, key = ctx.keyspace, args[1]
    existing = load(keyspace, key, counted=False)
    if existing is None and nomkstream:
        return conn.resp.null
    if wanted == (0, 0):
        return error("ERR The ID specified in XADD must be greater than 0-0")
    last = existing.last if existing is not None else (0, 0)
    if wanted is None:
        now = time.time_ns() // 1_000_000
        new = (now, 0) if now > last[0] else (last[0], last[1] + 1)
    elif wanted[1] == -1:
        new = (wanted[0], last[1] + 1 if wanted[0] == last[0] else 0)
        if wanted[0] < last[0] or (wanted[0] == last[0] and last[1] == MAX64):
            return error("ERR The ID specified in XADD is equal or smaller than the target "
                         "stream top item")
    else:
        new = wanted
        if new <= last:
            return error("ERR The ID specified in XADD is equal or smaller than the target "
                         "stream top item")
    for value in pairs:
        keyspace.check_sizes(key, value)
    hash_ = _for_write(ctx, key, STREAM)
    packed = ID.pack(*new)
    hash_.fields[packed] = pack_pairs(pairs)
    hash_.fields[LAST] = packed
    trimmed = 0
    if strategy is not None:
        trimmed = _trim(Stream(hash_), strategy, threshold, approximate, limit)
    write(ctx, key, hash_, STREAM, b"xadd")
    if trimmed:
        keyspace.notify(notify.STREAM, b"xtrim", key)
    return bulk(id_text(new))


def xlen(ctx: Context, conn: Connection, args: list) -> bytes:
    stream = load(ctx.keyspace, args[1])
    return integer(0 if stream is None else len(stream))


def xrange(ctx: Context, conn: Connection, args: list) -> bytes:
    """XRANGE key start end [COUNT count]; XREVRANGE key end start [COUNT count]."""
    reverse = args[0].upper() == b"XREVRANGE"
    low_arg, high_arg = (args[3], args[2]) if reverse else (args[2], args[3])
    low = _bound(low_arg, 0)
    high = _bound(high_arg, MAX64)
    if isinstance(low, bytes):
        return low
    if isinstance(high, bytes):
        return high
    count = -1
    j = 4
    while j < len(args):
        if keyword(args[j]) == b"count" and j + 1 < len(args):
            parsed = parse_strict_int(args[j + 1])
            if parsed is None:
                return NOT_INTEGER
            count = max(parsed, 0)
            j += 2
        else:
            return SYNTAX
    if count == 0:
        return array([])
    stream = load(ctx.keyspace, args[1])
    if stream is None:
        return array([])
    low_id, high_id = low, high
    if low_id is None or high_id is None:
        return array([])
    lo, hi = ID.pack(*low_id), ID.pack(*high_id)
    chosen = [entry for entry in stream.ids if lo <= entry <= hi]
    if reverse:
        chosen.reverse()
    if count > 0:
        chosen = chosen[:count]
    return array([array(stream.entry(entry)) for entry in chosen])


def _bound(arg: bytes, missing_seq: int) -> StreamID | None | bytes:
    """A range bound: an ID (exclusive with "(", then moved by one), None for an empty
    range, or the error reply."""
    if arg.startswith(b"("):
        found = parse_id(arg[1:], missing_seq, strict=True)
        if found is None:
            return INVALID_ID
        if missing_seq == 0:  # a start: the next ID
            if found == (MAX64, MAX64):
                return error("ERR invalid start ID for the interval")
            return (found[0], found[1] + 1) if found[1] < MAX64 else (found[0] + 1, 0)
        if found == (0, 0):
            return error("ERR invalid end ID for the interval")
        return (found[0], found[1] - 1) if found[1] > 0 else (found[0] - 1, MAX64)
    found = parse_id(arg, missing_seq)
    return INVALID_ID if found is None else found


def xdel(ctx: Context, conn: Connection, args: list) -> bytes:
    ids = [parse_id(arg, strict=True) for arg in args[2:]]
    if None in ids:
        return INVALID_ID
    if load(ctx.keyspace, args[1], counted=False) is None:
        return ZERO
    hash_ = _for_write(ctx, args[1], STREAM)
    deleted = 0
    for entry in dict.fromkeys(ids):
        packed = ID.pack(*entry)  # type: ignore[misc]
        if packed in hash_.fields:
            del hash_.fields[packed]
            deleted += 1
    if deleted:
        write(ctx, args[1], hash_, STREAM, b"xdel")
    return integer(deleted)


def xtrim(ctx: Context, conn: Connection, args: list) -> bytes:
    """XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]: how many entries went."""
    parsed = parse_trim(args, 2, xadd=False)
    if isinstance(parsed, bytes):
        return parsed
    strategy, threshold, approximate, limit, _, _ = parsed
    if load(ctx.keyspace, args[1], counted=False) is None:
        return ZERO
    hash_ = _for_write(ctx, args[1], STREAM)
    trimmed = _trim(Stream(hash_), strategy, threshold, approximate, limit)
    if trimmed:
        write(ctx, args[1], hash_, STREAM, b"xtrim")
    return integer(trimmed)


COMMANDS = [
    row("xadd", xadd),
    row("xlen", xlen),
    row("xrange", xrange),
    row("xrevrange", xrange),
    row("xdel", xdel),
    row("xtrim", xtrim),
]
