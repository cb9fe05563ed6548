"""A key's whole value, of any type, read out and written back as one plain form
(rdb_objects.Value): what DUMP, RESTORE and MIGRATE move, whatever the type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CommandError
from ..keyspace import HASH, LIST, SET, STREAM, STRING, ZSET
from ..rdb_objects import Entries, Value
from ..resp import error
from .hashes import Hash, read, write
from .lists import StoredList
from .sets import members
from .streams import ID, LAST, Stream, pack_pairs
from .zsets import ZIndex, Zset, load, save

if TYPE_CHECKING:
    from ..context import Context
    from ..keyspace import Keyspace

BAD_DATA = error("ERR Bad data format")


def read_value(keyspace: Keyspace, key: bytes, counted: bool = True) -> Value | None:
    """The value at `key` (None if there is none); a stream is refused."""
    found = keyspace.read_any(key, counted)
    if found is None:
        return None
    raw, kind = found
    if kind == STRING:
        return Value(STRING, raw)
    if kind == LIST:
        return Value(LIST, StoredList(keyspace, key).range(0, -1))
    hash_ = read(keyspace, key, counted=False, kind=kind)
    assert hash_ is not None
    if kind == HASH:
        return Value(HASH, list(hash_.fields.items()))
    if kind == STREAM:
        stream = Stream(hash_)
        return Value(STREAM, Entries(stream.last, [
            (ID.unpack(packed), stream.pairs(packed)) for packed in stream.ids]))
    if kind == SET:
        return Value(SET, members(hash_))
    zset = load(keyspace, key, counted=False)  # (its ordered index, as ZRANGE reads it)
    assert zset is not None
    return Value(ZSET, [(member, score) for score, member in zset.index.order])


def write_value(ctx: Context, key: bytes, value: Value, deadline: int) -> None:
    """`key` of the current database becomes `value` with `deadline` (whatever it held),
    as one batch; CommandError (nothing written) for an empty collection or a repeated
    member, which no Redis writes."""
    keyspace = ctx.keyspace
    kind, data = value
    if kind == STRING:
        keyspace.put(key, data, deadline)  # type: ignore[arg-type]
        return
    if kind == STREAM:
        stream: Entries = data  # type: ignore[assignment]
        last, entries = stream
        fields = {ID.pack(*entry_id): pack_pairs(pairs) for entry_id, pairs in entries}
        if len(fields) != len(entries) or any(len(pairs) % 2 or not pairs
                                              for _, pairs in entries):
            raise CommandError(BAD_DATA)
        for packed in fields.values():
            keyspace.check_sizes(key, packed)
        fields[LAST] = ID.pack(*max([last, *(entry_id for entry_id, _ in entries)]))
        write(ctx, key, Hash(fields), STREAM, deadline=deadline)
        return
    items: list = data  # type: ignore[assignment]
    names = [item[0] for item in items] if kind in (HASH, ZSET) else items
    if not items or (kind != LIST and len(set(names)) != len(names)):
        raise CommandError(BAD_DATA)
    for item in items:
        for part in (item if isinstance(item, tuple) else (item,)):
            if isinstance(part, bytes):
                keyspace.check_sizes(key, part)
    keyspace.begin_batch()
    try:
        if kind == LIST:
            keyspace.create_collection(key, LIST, deadline)
            keyspace.write_elements(key, dict(enumerate(items)))
        elif kind == ZSET:
            if any(score != score for _, score in items):  # NaN
                raise CommandError(BAD_DATA)
            save(ctx, Zset(keyspace, key, Hash({}), ZIndex()), dict(items), deadline=deadline)
        else:
            fields = dict(items) if kind == HASH else dict.fromkeys(items, b"")
            write(ctx, key, Hash(fields), kind, deadline=deadline)
    finally:
        keyspace.end_batch()
