"""RDB's value types beyond strings: what a DUMP payload or an RDB file holds for a hash,
list, set or sorted set, read in every encoding Redis 6.x and 7.0 write and written in
encodings Redis 7.0 reads (Redis's rdb.c, ziplist.c, listpack.c, intset.c, zipmap.c).

A value crosses as a plain Python form, whatever its encoding:

    Value(STRING, b"...")               Value(LIST, [element, ...])
    Value(HASH, [(field, value), ...])   Value(SET, [member, ...])
    Value(ZSET, [(member, score), ...])  (score: a float)
    Value(STREAM, Entries(last ID, [((ms, seq), [field, value, ...]), ...]))

Read: the plain forms (list 1, set 2, zset 3 and 5, hash 4), zipmap (9), ziplist (list
10, zset 12, hash 13), intset (11), quicklist (14: ziplists), listpack (hash 16, zset
17, and Redis 7.2's set 20) and quicklist 2 (18: listpacks and plain nodes); any string
inside may be an integer or LZF encoding. Written: the plain forms (list 1, set 2, zset 5
with binary scores, hash 4), which Redis converts to its compact encodings as it loads
them; streams (15, 19 and Redis 7.2's 21) are read, written as 15. A stream with
consumer groups and module values (6, 7) are refused with a PayloadError.
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

from .rdb import (
    RDB_VERSION,
    PayloadError,
    _length,
    _read_length,
    _read_string,
    crc64,
    dump_parts,
    encode_string,
    verify,
)

# kvd's kinds (keyspace.py's), named here to keep this module free of the server
STRING, HASH, LIST, SET, ZSET, STREAM = 0, 1, 2, 3, 4, 5

T_STRING, T_LIST, T_SET, T_ZSET, T_HASH, T_ZSET_2 = 0, 1, 2, 3, 4, 5
T_MODULE, T_MODULE_2 = 6, 7
T_HASH_ZIPMAP, T_LIST_ZIPLIST, T_SET_INTSET, T_ZSET_ZIPLIST, T_HASH_ZIPLIST = 9, 10, 11, 12, 13
T_LIST_QUICKLIST, T_STREAM_LISTPACKS = 14, 15
T_HASH_LISTPACK, T_ZSET_LISTPACK, T_LIST_QUICKLIST_2, T_STREAM_LISTPACKS_2 = 16, 17, 18, 19
T_SET_LISTPACK, T_STREAM_LISTPACKS_3 = 20, 21  # (Redis 7.2)
STREAM_TYPES = (T_STREAM_LISTPACKS, T_STREAM_LISTPACKS_2, T_STREAM_LISTPACKS_3)
_BAD = "ERR Bad data format"


class Value(NamedTuple):
    kind: int  # STRING, HASH, LIST, SET, ZSET or STREAM
    data: object


class Entries(NamedTuple):
    """A stream's entries in ID order, and the greatest ID it ever had."""

    last: tuple[int, int]
    entries: list[tuple[tuple[int, int], list[bytes]]]


# -- reading ------------------------------------------------------------------------------

def read_value(body: memoryview, at: int, rdb_type: int) -> tuple[Value, int]:
    """The value of type `rdb_type` at `at`, and where it ends; PayloadError if it is
    damaged or of a type kvd does not hold."""
    try:
        return _read(body, at, rdb_type)
    except (IndexError, struct.error, ValueError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(_BAD) from None


def _read(body: memoryview, at: int, rdb_type: int) -> tuple[Value, int]:
    if rdb_type == T_STRING:
        value, at = _read_string(body, at)
        return Value(STRING, value), at
    if rdb_type in (T_LIST, T_SET, T_HASH, T_ZSET, T_ZSET_2):
        count, _, at = _read_length(body, at)
        items: list = []
        for _ in range(count):
            item, at = _read_string(body, at)
            if rdb_type == T_HASH:
                second, at = _read_string(body, at)
                items.append((item, second))
            elif rdb_type == T_ZSET:
                size = body[at]
                at += 1
                if size >= 253:
                    score = (math.nan, math.inf, -math.inf)[size - 253]
                else:
                    score = float(bytes(body[at:at + size]))
                    at += size
                items.append((item, score))
            elif rdb_type == T_ZSET_2:
                (score,) = struct.unpack_from("<d", body, at)
                at += 8
                items.append((item, score))
            else:
                items.append(item)
        kind = {T_LIST: LIST, T_SET: SET, T_HASH: HASH}.get(rdb_type, ZSET)
        return Value(kind, items), at
    if rdb_type == T_SET_INTSET:
        blob, at = _read_string(body, at)
        return Value(SET, _intset(blob)), at
    if rdb_type == T_SET_LISTPACK:
        blob, at = _read_string(body, at)
        return Value(SET, _listpack(blob)), at
    if rdb_type == T_HASH_ZIPMAP:
        blob, at = _read_string(body, at)
        return Value(HASH, _zipmap(blob)), at
    if rdb_type in (T_LIST_ZIPLIST, T_ZSET_ZIPLIST, T_HASH_ZIPLIST, T_HASH_LISTPACK,
                    T_ZSET_LISTPACK):
        blob, at = _read_string(body, at)
        entries = (_ziplist(blob) if rdb_type in (T_LIST_ZIPLIST, T_ZSET_ZIPLIST, T_HASH_ZIPLIST)
                   else _listpack(blob))
        if rdb_type == T_LIST_ZIPLIST:
            return Value(LIST, entries), at
        if len(entries) % 2:
            raise PayloadError(_BAD)
        pairs = list(zip(entries[0::2], entries[1::2]))
        if rdb_type in (T_ZSET_ZIPLIST, T_ZSET_LISTPACK):
            return Value(ZSET, [(member, float(score)) for member, score in pairs]), at
        return Value(HASH, pairs), at
    if rdb_type in (T_LIST_QUICKLIST, T_LIST_QUICKLIST_2):
        nodes, _, at = _read_length(body, at)
        elements: list[bytes] = []
        for _ in range(nodes):
            container = 2
            if rdb_type == T_LIST_QUICKLIST_2:
                container, _, at = _read_length(body, at)
            blob, at = _read_string(body, at)
            if container == 1:  # PLAIN: one large element as it is
                elements.append(blob)
            elif rdb_type == T_LIST_QUICKLIST:
                elements += _ziplist(blob)
            else:
                elements += _listpack(blob)
        return Value(LIST, elements), at
    if rdb_type in STREAM_TYPES:
        stream, groups, at = read_stream(body, at, rdb_type)
        if groups:
            raise PayloadError("ERR kvd has no stream consumer groups yet: a stream that has "
                               "some cannot be restored")
        return stream, at
    if rdb_type in (T_MODULE, T_MODULE_2):
        raise PayloadError("ERR kvd has no modules: a module's value cannot be restored")
    raise PayloadError(_BAD)


def read_stream(body: memoryview, at: int, rdb_type: int) -> tuple[Value, int, int]:
    """A stream of any of RDB's three stream types: its value, how many consumer groups
    it has (passed over: kvd has none), and where it ends (Redis's rdbLoadObject)."""
    nodes, _, at = _read_length(body, at)
    entries: list[tuple[tuple[int, int], list[bytes]]] = []
    for _ in range(nodes):
        node_key, at = _read_string(body, at)
        blob, at = _read_string(body, at)
        if len(node_key) != 16:
            raise PayloadError(_BAD)
        master = struct.unpack(">QQ", node_key)
        entries += _stream_node(master, _listpack(blob))
    _, _, at = _read_length(body, at)  # the length
    last_ms, _, at = _read_length(body, at)
    last_seq, _, at = _read_length(body, at)
    if rdb_type != T_STREAM_LISTPACKS:
        for _ in range(5):  # first ID, greatest deleted ID, entries added
            _, _, at = _read_length(body, at)
    groups, _, at = _read_length(body, at)
    for _ in range(groups):
        _, at = _read_string(body, at)  # name
        for _ in range(2 if rdb_type == T_STREAM_LISTPACKS else 3):  # last ID (+ read)
            _, _, at = _read_length(body, at)
        pending, _, at = _read_length(body, at)
        for _ in range(pending):
            at += 16 + 8  # raw ID, delivery time
            _, _, at = _read_length(body, at)  # delivery count
        consumers, _, at = _read_length(body, at)
        for _ in range(consumers):
            _, at = _read_string(body, at)
            at += 8 if rdb_type != T_STREAM_LISTPACKS_3 else 16  # seen (and active) time
            owned, _, at = _read_length(body, at)
            at += owned * 16
    if at > len(body):
        raise PayloadError(_BAD)
    entries.sort()
    return Value(STREAM, Entries((last_ms, last_seq), entries)), groups, at


def _stream_node(master: tuple[int, int], items: list[bytes]
                 ) -> list[tuple[tuple[int, int], list[bytes]]]:
    """The live entries of one stream node's listpack (t_stream.c's layout: the master
    entry -- count, deleted, fields, 0 -- then each entry: flags, ms and seq deltas,
    its fields and values or, with SAMEFIELDS, its values only, and a back count)."""
    numbers = iter(items)
    count, deleted, field_count = int(next(numbers)), int(next(numbers)), int(next(numbers))
    master_fields = [next(numbers) for _ in range(field_count)]
    if next(numbers) != b"0":
        raise PayloadError(_BAD)
    found = []
    for _ in range(count + deleted):
        flags = int(next(numbers))
        entry_id = (master[0] + int(next(numbers)), master[1] + int(next(numbers)))
        if flags & 2:  # SAMEFIELDS
            pairs = [part for name in master_fields for part in (name, next(numbers))]
        else:
            size = int(next(numbers))
            pairs = [next(numbers) for _ in range(2 * size)]
        next(numbers)  # the entry's back count
        if not flags & 1:  # not DELETED
            found.append((entry_id, pairs))
    return found


def _intset(blob: bytes) -> list[bytes]:
    width, count = struct.unpack_from("<II", blob, 0)
    if width not in (2, 4, 8) or 8 + width * count != len(blob):
        raise PayloadError(_BAD)
    fmt = {2: "<h", 4: "<i", 8: "<q"}[width]
    return [b"%d" % number for (number,) in struct.iter_unpack(fmt, blob[8:])]


def _zipmap(blob: bytes) -> list[tuple[bytes, bytes]]:
    at, pairs = 1, []

    def length() -> int:
        nonlocal at
        first = blob[at]
        if first < 254:
            at += 1
            return first
        if first == 254:
            (n,) = struct.unpack_from("<I", blob, at + 1)
            at += 5
            return n
        raise PayloadError(_BAD)

    while blob[at] != 255:
        size = length()
        key = blob[at:at + size]
        at += size
        size = length()
        free = blob[at]
        value = blob[at + 1:at + 1 + size]
        at += 1 + size + free
        pairs.append((key, value))
    return pairs


def _ziplist(blob: bytes) -> list[bytes]:
    """The entries of a ziplist, integers as decimal text."""
    at, entries = 10, []
    while blob[at] != 0xFF:
        at += 5 if blob[at] == 0xFE else 1  # the previous entry's length
        encoding = blob[at]
        kind = encoding >> 6
        if kind == 0:
            size, at = encoding & 0x3F, at + 1
        elif kind == 1:
            size, at = (encoding & 0x3F) << 8 | blob[at + 1], at + 2
        elif kind == 2:
            (size,) = struct.unpack_from(">I", blob, at + 1)
            at += 5
        else:
            at += 1
            if encoding == 0xC0:
                (number,) = struct.unpack_from("<h", blob, at)
                at += 2
            elif encoding == 0xD0:
                (number,) = struct.unpack_from("<i", blob, at)
                at += 4
            elif encoding == 0xE0:
                (number,) = struct.unpack_from("<q", blob, at)
                at += 8
            elif encoding == 0xF0:
                number = int.from_bytes(blob[at:at + 3], "little", signed=True)
                at += 3
            elif encoding == 0xFE:
                number = struct.unpack_from("<b", blob, at)[0]
                at += 1
            elif 0xF1 <= encoding <= 0xFD:
                number = (encoding & 0x0F) - 1
            else:
                raise PayloadError(_BAD)
            entries.append(b"%d" % number)
            continue
        if at + size > len(blob):
            raise PayloadError(_BAD)
        entries.append(bytes(blob[at:at + size]))
        at += size
    return entries


def _listpack(blob: bytes) -> list[bytes]:
    """The elements of a listpack, integers as decimal text."""
    at, entries = 6, []
    while blob[at] != 0xFF:
        start, encoding = at, blob[at]
        if encoding < 0x80:  # 7-bit unsigned
            entries.append(b"%d" % encoding)
            at += 1
        elif encoding >> 6 == 2:  # 6-bit length string
            size = encoding & 0x3F
            entries.append(bytes(blob[at + 1:at + 1 + size]))
            at += 1 + size
        elif encoding >> 5 == 6:  # 13-bit signed
            raw = (encoding & 0x1F) << 8 | blob[at + 1]
            entries.append(b"%d" % (raw - (1 << 13) if raw >= 1 << 12 else raw))
            at += 2
        elif encoding >> 4 == 14:  # 12-bit length string
            size = (encoding & 0x0F) << 8 | blob[at + 1]
            entries.append(bytes(blob[at + 2:at + 2 + size]))
            at += 2 + size
        elif encoding == 0xF0:  # 32-bit length string
            (size,) = struct.unpack_from("<I", blob, at + 1)
            entries.append(bytes(blob[at + 5:at + 5 + size]))
            at += 5 + size
        elif 0xF1 <= encoding <= 0xF4:  # 16, 24, 32, 64-bit signed
            width = (2, 3, 4, 8)[encoding - 0xF1]
            entries.append(b"%d" % int.from_bytes(blob[at + 1:at + 1 + width], "little",
                                                  signed=True))
            at += 1 + width
        else:
            raise PayloadError(_BAD)
        if at > len(blob):
            raise PayloadError(_BAD)
        size = at - start
        at += 1 if size < 128 else 2 if size < 16383 else 3 if size < 2097151 else (
            4 if size < 268435455 else 5)  # the entry's back length (lpEncodeBacklen)
    return entries


# -- writing ------------------------------------------------------------------------------

def encode_value(value: Value) -> bytes:
    """The type byte and the value, in a plain encoding Redis 7.0 loads."""
    kind, data = value
    if kind == STRING:
        return bytes([T_STRING]) + encode_string(data)  # type: ignore[arg-type]
    if kind == STREAM:
        return _encode_stream(data)  # type: ignore[arg-type]
    items: list = data  # type: ignore[assignment]
    if kind == HASH:
        parts = [bytes([T_HASH]), _length(len(items))]
        for field, item in items:
            parts += [encode_string(field), encode_string(item)]
    elif kind == ZSET:
        parts = [bytes([T_ZSET_2]), _length(len(items))]
        for member, score in items:
            parts += [encode_string(member), struct.pack("<d", score)]
    else:
        parts = [bytes([T_LIST if kind == LIST else T_SET]), _length(len(items))]
        parts += [encode_string(item) for item in items]
    return b"".join(parts)


# -- DUMP payloads ------------------------------------------------------------------------

def dump_payload(value: Value) -> list[bytes]:
    """The DUMP payload of `value`, in pieces to join once (a large string is not copied
    into a second buffer before the reply's)."""
    if value.kind == STRING:
        return dump_parts(value.data)  # type: ignore[arg-type]
    body = encode_value(value) + struct.pack("<H", RDB_VERSION)
    return [body, struct.pack("<Q", crc64(body))]


def load_payload(payload: bytes) -> Value:
    """The value a DUMP payload holds (version and CRC-64 checked first)."""
    verify(payload)
    body = memoryview(payload)[:-10]
    if not len(body):
        raise PayloadError(_BAD)
    value, end = read_value(body, 1, body[0])
    if end != len(body):
        raise PayloadError(_BAD)
    return value


# -- streams, written as Redis 6.x wrote them (RDB_TYPE_STREAM_LISTPACKS) -----------------

NODE_ENTRIES = 100  # entries per node, Redis's stream-node-max-entries


def _encode_stream(stream: Entries) -> bytes:
    """Nodes of up to 100 entries, each a listpack in t_stream.c's layout (its first
    entry's fields as the master fields), the length, the last ID, no consumer groups:
    Redis 7.0 loads this type and works out the rest (first ID, entries added)."""
    entries = stream.entries
    nodes = [entries[i:i + NODE_ENTRIES] for i in range(0, len(entries), NODE_ENTRIES)]
    parts = [bytes([T_STREAM_LISTPACKS]), _length(len(nodes))]
    for node in nodes:
        master_id, first = node[0]
        master_fields = first[0::2]
        items: list[bytes | int] = [len(node), 0, len(master_fields), *master_fields, 0]
        for (ms, seq), pairs in node:
            same = pairs[0::2] == master_fields
            head = [2 if same else 0, ms - master_id[0], seq - master_id[1]]
            body = pairs[1::2] if same else [len(pairs) // 2, *pairs]
            items += [*head, *body, len(head) + len(body)]
        parts += [encode_string(struct.pack(">QQ", *master_id)),
                  encode_string(_build_listpack(items))]
    parts += [_length(len(entries)), _length(stream.last[0]), _length(stream.last[1]),
              _length(0)]
    return b"".join(parts)


def _build_listpack(items: list) -> bytes:
    """A listpack of these strings and integers (listpack.c's encodings)."""
    encoded = []
    for item in items:
        if isinstance(item, int):
            entry = bytes([item]) if 0 <= item < 128 else b"\xf4" + struct.pack("<q", item)
        elif len(item) < 64:
            entry = bytes([0x80 | len(item)]) + item
        elif len(item) < 4096:
            entry = bytes([0xE0 | len(item) >> 8, len(item) & 0xFF]) + item
        else:
            entry = b"\xf0" + struct.pack("<I", len(item)) + item
        encoded.append(entry + _backlen(len(entry)))
    body = b"".join(encoded)
    count = min(len(items), 65535)  # (65535: "count them")
    return struct.pack("<IH", 6 + len(body) + 1, count) + body + b"\xff"


def _backlen(size: int) -> bytes:
    """An entry's length, to be read backwards (listpack.c's lpEncodeBacklen): 7 bits a
    byte, the first byte without the high bit."""
    width = 1 if size <= 127 else 2 if size < 16383 else 3 if size < 2097151 else (
        4 if size < 268435455 else 5)
    return bytes([size >> 7 * (width - 1)] + [(size >> 7 * i) & 127 | 128
                                              for i in range(width - 2, -1, -1)])
