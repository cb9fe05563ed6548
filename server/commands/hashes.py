"""The hash commands (Redis's t_hash.c): HSET HGET HMGET HGETALL HDEL HEXISTS HLEN HSTRLEN
HKEYS HVALS HSETNX HMSET HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN.

A small hash is stored packed whole, as Redis keeps a small hash in a listpack: one
record of type hash (storage's `kind` 1) holding msgpack `[converted, {field: value}]`,
fields in insertion order (HGETALL answers in the order Redis's listpack would).
`converted` remembers that the hash once passed `hash-max-listpack-entries` or
`hash-max-listpack-value` -- Redis's hashtable encoding, which it never leaves -- for
OBJECT ENCODING. Changing a field rewrites the record, at most PACKED_MAX_BYTES.

A hash of more than `hash-max-listpack-entries` fields, or whose packed record would pass
PACKED_MAX_BYTES, is split (once, for good, as Redis converts): a metadata record and one
element record per field (docs/data-model.md). Then changing a field writes that field
only, and deleting the hash writes one record, however many fields it has. Commands see
both forms through one mapping (`Hash.fields`); for a split hash it is `StoredFields`,
which reads the store and stages changes until `write` makes them one batch. A hash
left without fields is deleted, as in Redis.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from itertools import chain
from typing import TYPE_CHECKING, Any

import msgpack

from .. import longdouble, notify
from ..errors import CommandError
from ..keyspace import HASH, SET, STREAM, WRONGTYPE, ZSET
from ..protocol import parse_strict_int
from ..resp import OK, ONE, ZERO, array, bulk, error, integer
from .common import (
    INT64_MAX,
    INT64_MIN,
    NOT_FLOAT,
    NOT_INTEGER,
    parse_random_count,
    random_picks,
    scan_options,
    wrong_arity,
)
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context
    from ..keyspace import Keyspace



# A packed hash is rewritten whole on every change: past this size it is split instead, so
# a write costs at most this many bytes plus the change. Above the largest hash Redis keeps
# in a listpack under its default limits (128 fields, names and values of at most 64
# bytes: about 17 KiB packed), so that with those limits kvd splits only what Redis calls
# a hashtable (OBJECT ENCODING agrees).
PACKED_MAX_BYTES = 32 << 10


class StoredFields(MutableMapping[bytes, bytes]):
    """The fields of a split hash: read from the store on demand; changes are staged here
    (`changes`, None for a deleted field) until `write` makes them one batch."""

    def __init__(self, keyspace: Keyspace, key: bytes) -> None:
        self.store, self.db, self.key = keyspace.store, keyspace.db, key
        self.changes: dict[bytes, bytes | None] = {}
        self._added = 0  # fields the staged changes add (negative: remove)

    def __getitem__(self, field: bytes) -> bytes:
        value = self.changes[field] if field in self.changes else \
            self.store.get_element(self.key, field, self.db)
        if value is None:
            raise KeyError(field)
        return value

    def __contains__(self, field: object) -> bool:
        if field in self.changes:
            return self.changes[field] is not None
        return self.store.has_element(self.key, field, self.db)  # type: ignore[arg-type]

    def __setitem__(self, field: bytes, value: bytes) -> None:
        if field not in self:
            self._added += 1
        self.changes[field] = value

    def __delitem__(self, field: bytes) -> None:
        if field not in self:
            raise KeyError(field)
        self.changes[field] = None
        self._added -= 1

    def __len__(self) -> int:
        return self.store.element_count(self.key, self.db) + self._added

    def written(self) -> None:
        """The staged changes are in the store now."""
        self.changes = {}
        self._added = 0

    def __bool__(self) -> bool:
        """Whether any field is left: counted only after a removal (a split hash is never
        empty in the store, and counting costs the sqlite engine a query)."""
        return None not in self.changes.values() or len(self) > 0

    def items(self):
        """(field, value) pairs, read in one store call when nothing is staged (HGETALL,
        SMEMBERS and DUMP of a large collection), not one per field."""
        if self.changes:
            return super().items()
        names = self.store.element_names(self.key, self.db)
        return list(zip(names, self.store.get_elements(self.key, names, self.db)))

    def values(self):
        if self.changes:
            return super().values()
        return [value for _, value in self.items()]

    def __iter__(self) -> Iterator[bytes]:
        names = self.store.element_names(self.key, self.db)
        if not self.changes:
            return iter(names)
        stored = set(names)
        kept = [field for field in names if self.changes.get(field, b"") is not None]
        return iter(kept + [field for field, value in self.changes.items()
                            if value is not None and field not in stored])


class Hash:
    """A hash read from its record(s): its fields, and whether Redis would hold it as a
    hashtable by now. `derived`: what a command built from the fields of a packed one
    (a sorted set's index, zsets.py), kept with them in the decoded cache; anything
    with a copy() that stays true to the fields as they change."""

    __slots__ = ("fields", "converted", "derived")

    def __init__(self, fields: MutableMapping[bytes, bytes], converted: bool = False,
                 derived: Any = None) -> None:
        self.fields = fields
        self.converted = converted
        self.derived = derived

    def copy(self) -> Hash:
        """A copy to change: its fields (and what was derived from them) its own."""
        derived = self.derived
        return Hash(dict(self.fields), self.converted,
                    None if derived is None else derived.copy())


def read(keyspace: Keyspace, key: bytes, counted: bool = True, kind: int = HASH
         ) -> Hash | None:
    """The hash at `key` (or the set, for `kind` SET: members with empty values), None if
    there is none; WRONGTYPE for another type. Callers must not change what it returns
    (_for_write copies): it may be the decoded cache's."""
    found = keyspace.read_any(key, counted)
    if found is None:
        return None
    value, found_kind = found
    if found_kind != kind:
        raise CommandError(WRONGTYPE)
    if keyspace.collection_version(key):
        return Hash(StoredFields(keyspace, key), True)
    cache = keyspace.decoded
    hit = cache.get(key)
    if hit is not None and hit[0] is value and isinstance(hit[1], Hash):  # the same record
        return hit[1]
    converted, fields = msgpack.unpackb(value, use_list=False, strict_map_key=False)
    hash_ = Hash(fields, bool(converted))
    _remember(keyspace, key, value, hash_)
    return hash_


def _remember(keyspace: Keyspace, key: bytes, value: bytes, hash_: Hash) -> None:
    """Keep `hash_` as the decoding of record bytes `value` (see DECODED_CACHE_SIZE)."""
    cache = keyspace.decoded
    cache[key] = (value, hash_)
    if len(cache) > DECODED_CACHE_SIZE:
        del cache[next(iter(cache))]  # the oldest decoded


# Decoded hashes kept per database, by key, beside the record bytes they came from: the
# store's value cache hands back the very same bytes object for a record it still holds,
# so `is` proves the decoding current (a rewrite is another record, another object).
DECODED_CACHE_SIZE = 1024


# The class of keyspace notifications (notify.py) of each type's events
EVENT_CLASS = {HASH: notify.HASH, SET: notify.SET, ZSET: notify.ZSET, STREAM: notify.STREAM}


def write(ctx: Context, key: bytes, hash_: Hash, kind: int = HASH, event: bytes = b"",
          deadline: int | None = None) -> None:
    """Store `hash_` (keeping the key's deadline, or with `deadline`), or delete the key if
    it is empty: a split hash writes its staged changes, a packed one its record, or
    splits (one batch). A set (`kind` SET) is stored the same way, its members as fields.
    Then the command's notification `event` (Redis's name), and "del" if the key went."""
    _store(ctx, key, hash_, kind, deadline)
    keyspace = ctx.keyspace
    if keyspace.events.flags:
        if event:
            keyspace.notify(EVENT_CLASS[kind], event, key)
        if not hash_.fields:
            keyspace.notify(notify.GENERIC, b"del", key)


def replace(ctx: Context, key: bytes, hash_: Hash, kind: int, event: bytes) -> None:
    """`key` becomes `hash_` whatever it held, without a deadline (a *STORE command's
    result, told as `event`); an empty one deletes it (told as "del" if it was there)."""
    if hash_.fields:
        write(ctx, key, hash_, kind, event, deadline=0)
    else:
        ctx.keyspace.remove(key)


def _store(ctx: Context, key: bytes, hash_: Hash, kind: int, deadline: int | None) -> None:
    keyspace, fields = ctx.keyspace, hash_.fields
    if not fields:
        keyspace.delete(key)
        return
    if deadline is None:
        deadline = keyspace.deadline(key)
    if isinstance(fields, StoredFields):
        keyspace.write_elements(key, fields.changes)
        fields.written()
        return
    config = ctx.config
    if not hash_.converted and _converts(config, kind, fields):
        hash_.converted = True
    packed = msgpack.packb([int(hash_.converted), fields])
    split_past = (config.hash_max_listpack_entries if kind == HASH
                  else config.zset_max_listpack_entries if kind == ZSET
                  else config.set_max_intset_entries if kind == SET
                  else 128)  # (a stream's entries)
    if len(fields) <= split_past and len(packed) <= PACKED_MAX_BYTES:
        keyspace.put(key, packed, deadline, kind=kind)
        # The next read finds these very bytes in the store's value cache: decoded
        # already (a copy: the caller still holds `fields`).
        _remember(keyspace, key, packed, hash_.copy())
        return
    keyspace.begin_batch()
    try:
        keyspace.create_collection(key, kind, deadline)
        keyspace.write_elements(key, dict(fields))
    finally:
        keyspace.end_batch()


def _converts(config, kind: int, fields: MutableMapping[bytes, bytes]) -> bool:
    """Whether Redis 7.0 would hold this as a hashtable by now: a hash past its listpack
    limits; a set that is no intset (only integers, at most set-max-intset-entries)."""
    # (max(map(len, ...)): the lengths compared in C -- a generator over a hash of 100
    # fields took a third of each HSET on it)
    if kind == HASH:
        limit = config.hash_max_listpack_value
        return len(fields) > config.hash_max_listpack_entries or bool(fields) and (
            max(map(len, fields)) > limit or max(map(len, fields.values())) > limit)
    if kind not in (SET, ZSET):  # a stream: its encoding has one name
        return False
    if kind == ZSET:  # (a skiplist, once past its listpack limits)
        limit = config.zset_max_listpack_value
        return len(fields) > config.zset_max_listpack_entries or bool(fields) and max(
            map(len, fields)) > limit
    return len(fields) > config.set_max_intset_entries or not all_integers(fields)


# Integers as Redis writes them (no sign but '-', no leading zero, no "-0"), of at
# most 19 digits -- within 64 bits but for some of 19 digits, checked apart -- one
# per line.
_INTEGER = rb"(?:0|-?[1-9][0-9]{0,18})"
_INTEGER_LINES = re.compile(_INTEGER + rb"(?:\n" + _INTEGER + rb")*")


def all_integers(members: Iterable[bytes]) -> bool:
    """Whether Redis's intset would hold every member (a 64-bit integer written as
    Redis writes it), matched in C in one pass over them joined by newlines (as many
    as the members less one: none holds one itself). Checking each member in Python
    cost a write to an intset of 500 members 0.3 ms."""
    members = list(members)
    if not members:
        return True
    joined = b"\n".join(members)
    if joined.count(b"\n") != len(members) - 1 or not _INTEGER_LINES.fullmatch(joined):
        return False
    if max(map(len, members)) < 19:
        return True
    return all(-1 << 63 <= int(member) < 1 << 63 for member in members if len(member) >= 19)


def encoding(value: bytes, kind: int = HASH) -> bytes:
    """OBJECT ENCODING of a packed hash (listpack or hashtable) or set (intset or
    hashtable), as Redis 7.0 would report it."""
    converted, _ = msgpack.unpackb(value, use_list=False, strict_map_key=False)
    if converted:
        return b"skiplist" if kind == ZSET else b"hashtable"
    return b"intset" if kind == SET else b"listpack"


def _for_write(ctx: Context, key: bytes, kind: int = HASH) -> Hash:
    """A copy to change (the one `read` returns may be shared); a split hash stages its
    changes in its own StoredFields."""
    hash_ = read(ctx.keyspace, key, counted=False, kind=kind)
    if hash_ is None:
        return Hash({})
    if isinstance(hash_.fields, StoredFields):
        return hash_
    return hash_.copy()


# -- the commands -----------------------------------------------------------------------

def hset(ctx: Context, conn: Connection, args: list) -> bytes:
    """HSET key field value [field value ...] (the number of new fields); HMSET (OK)."""
    if len(args) % 2:
        return wrong_arity(args[0])
    key = args[1]
    hash_ = _for_write(ctx, key)
    fields = hash_.fields
    added = 0
    for i in range(2, len(args), 2):
        ctx.keyspace.check_sizes(key, args[i + 1])
        if args[i] not in fields:
            added += 1
        fields[args[i]] = args[i + 1]
    write(ctx, key, hash_, event=b"hset")
    return OK if args[0].upper() == b"HMSET" else integer(added)


def hsetnx(ctx: Context, conn: Connection, args: list) -> bytes:
    key, field = args[1], args[2]
    hash_ = _for_write(ctx, key)
    if field in hash_.fields:
        return ZERO
    ctx.keyspace.check_sizes(key, args[3])
    hash_.fields[field] = args[3]
    write(ctx, key, hash_, event=b"hset")
    return ONE


def hget(ctx: Context, conn: Connection, args: list) -> bytes:
    hash_ = read(ctx.keyspace, args[1])
    return conn.resp.bulk_or_null(None if hash_ is None else hash_.fields.get(args[2]))


def hmget(ctx: Context, conn: Connection, args: list) -> bytes:
    hash_ = read(ctx.keyspace, args[1])
    fields = hash_.fields if hash_ is not None else {}
    return conn.resp.bulks([fields.get(field) for field in args[2:]])


def hgetall(ctx: Context, conn: Connection, args: list) -> bytes:
    """HGETALL (a map in RESP3), HKEYS, HVALS."""
    hash_ = read(ctx.keyspace, args[1])
    fields = hash_.fields if hash_ is not None else {}
    name = args[0].upper()
    if name == b"HKEYS":
        return conn.resp.bulks(list(fields))
    if name == b"HVALS":
        return conn.resp.bulks(list(fields.values()))
    return conn.resp.bulk_map(list(chain.from_iterable(fields.items())))


def hdel(ctx: Context, conn: Connection, args: list) -> bytes:
    key = args[1]
    if read(ctx.keyspace, key, counted=False) is None:
        return ZERO
    hash_ = _for_write(ctx, key)
    deleted = sum(1 for field in args[2:] if hash_.fields.pop(field, None) is not None)
    if deleted:
        write(ctx, key, hash_, event=b"hdel")
    return integer(deleted)


def hexists(ctx: Context, conn: Connection, args: list) -> bytes:
    hash_ = read(ctx.keyspace, args[1])
    return ONE if hash_ is not None and args[2] in hash_.fields else ZERO


def hlen(ctx: Context, conn: Connection, args: list) -> bytes:
    hash_ = read(ctx.keyspace, args[1])
    return integer(0 if hash_ is None else len(hash_.fields))


def hstrlen(ctx: Context, conn: Connection, args: list) -> bytes:
    hash_ = read(ctx.keyspace, args[1])
    value = None if hash_ is None else hash_.fields.get(args[2])
    return integer(0 if value is None else len(value))


def hincrby(ctx: Context, conn: Connection, args: list) -> bytes:
    increment = parse_strict_int(args[3])  # (an int64, or None)
    if increment is None:
        return NOT_INTEGER
    key, field = args[1], args[2]
    hash_ = _for_write(ctx, key)
    old = hash_.fields.get(field)
    value = 0
    if old is not None:
        parsed = parse_strict_int(old)
        if parsed is None:
            return error("ERR hash value is not an integer")
        value = parsed
    if not INT64_MIN <= value + increment <= INT64_MAX:
        return error("ERR increment or decrement would overflow")
    hash_.fields[field] = b"%d" % (value + increment)
    write(ctx, key, hash_, event=b"hincrby")
    return integer(value + increment)


def hincrbyfloat(ctx: Context, conn: Connection, args: list) -> bytes:
    """Added and printed as Redis does, in C's long double (server/longdouble.py)."""
    increment = longdouble.parse(args[3])
    if increment is None:
        return NOT_FLOAT
    if isinstance(increment, float):  # an infinity (NaN does not parse)
        return error("ERR value is NaN or Infinity")
    key, field = args[1], args[2]
    hash_ = _for_write(ctx, key)
    old = hash_.fields.get(field)
    value = longdouble.parse(old) if old is not None else 0
    if value is None:
        return error("ERR hash value is not a float")
    if isinstance(value, float):
        return error("ERR increment would produce NaN or Infinity")
    result = longdouble.round_extended(value + increment)
    if isinstance(result, float):
        return error("ERR increment would produce NaN or Infinity")
    text = longdouble.format_human(result)
    hash_.fields[field] = text
    write(ctx, key, hash_, event=b"hincrbyfloat")
    return bulk(text)


def hrandfield(ctx: Context, conn: Connection, args: list) -> bytes:
    """HRANDFIELD key [count [WITHVALUES]]: a positive count, distinct fields (the whole
    hash if it has no more); a negative one, that many picks that may repeat."""
    if len(args) == 2:
        hash_ = read(ctx.keyspace, args[1])
        if hash_ is None:
            return conn.resp.null
        return bulk(random.choice(list(hash_.fields)))
    parsed = parse_random_count(args, b"withvalues")
    if isinstance(parsed, bytes):
        return parsed
    count, with_values = parsed
    hash_ = read(ctx.keyspace, args[1])
    if hash_ is None or count == 0:
        return array([])
    chosen = random_picks(list(hash_.fields), count)
    if not with_values:
        return conn.resp.bulks(chosen)
    fields = hash_.fields
    picked = [(field, fields[field]) for field in chosen]
    if conn.resp.version == 2:
        return conn.resp.bulks([part for pair in picked for part in pair])
    return array([conn.resp.bulks(list(pair)) for pair in picked])


def hscan(ctx: Context, conn: Connection, args: list) -> bytes:
    """HSCAN key cursor [MATCH pattern] [COUNT count]: a packed hash answers whole, with
    cursor 0, as Redis answers for a listpack; a split one a step at a time, as SCAN
    (every field present for the whole scan returned once)."""
    cursor = parse_cursor(args[2])
    if cursor is None:
        return INVALID_CURSOR
    hash_ = read(ctx.keyspace, args[1])
    if hash_ is None:  # before the options are read, as Redis
        return array([bulk(b"0"), array([])])
    fields = hash_.fields
    step = scan_step(ctx, args, cursor, fields, lambda: list(fields))
    if isinstance(step, bytes):
        return step
    return array([bulk(b"%d" % step[0]), conn.resp.bulks(
        [part for field in step[1] for part in (field, fields[field])])])


INVALID_CURSOR = error("ERR invalid cursor")


def parse_cursor(arg: bytes) -> int | None:
    """A cursor as Redis's strtoul reads it (a negative one wraps around)."""
    cursor = parse_strict_int(arg)
    return None if cursor is None else cursor % (1 << 64)


def scan_step(ctx: Context, args: list, cursor: int, fields: MutableMapping,
              packed_names: Callable[[], list[bytes]]) -> tuple[int, list[bytes]] | bytes:
    """HSCAN's, SSCAN's and ZSCAN's step over a collection's `fields` (options from
    args[3]): a packed one answers whole with cursor 0 (`packed_names()` in the order
    Redis would list them), a split one `COUNT` names per call, as SCAN (every name
    present for the whole scan returned once); (next cursor, names) or the error reply."""
    options = scan_options(args, 3, with_type=False)
    if isinstance(options, bytes):
        return options
    match = options.match
    if isinstance(fields, StoredFields):
        step = ctx.keyspace.element_scans.step(lambda: fields, fields.__contains__, cursor,
                                               options.count, match)
        return INVALID_CURSOR if step is None else step
    return 0, [name for name in packed_names() if match is None or match(name)]


COMMANDS = [
    row("hset", hset),
    row("hmset", hset),
    row("hsetnx", hsetnx),
    row("hget", hget),
    row("hmget", hmget),
    row("hgetall", hgetall),
    row("hkeys", hgetall),
    row("hvals", hgetall),
    row("hdel", hdel),
    row("hexists", hexists),
    row("hlen", hlen),
    row("hstrlen", hstrlen),
    row("hincrby", hincrby),
    row("hincrbyfloat", hincrbyfloat),
    row("hrandfield", hrandfield),
    row("hscan", hscan),
]
