"""Replies out: RESP bytes, built for the protocol of each connection.

Most replies are the same bytes in RESP2 and RESP3 (`+OK`, integers, errors,
bulk strings, arrays of them): those are the module-level constants and
functions, and the common ones are precomputed, as Redis keeps its `shared`
replies. What differs by protocol -- null, maps, sets, verbatim text,
doubles, booleans -- goes through the connection's encoder (`conn.resp`),
as Redis's `addReply*` picks `shared.null[c->resp]`: a command says "null"
or "map", never which bytes. A connection speaks RESP2 until `HELLO 3`
switches its encoder to RESP3 (and `HELLO 2` back).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from typing import cast

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
EMPTY_ARRAY = b"*0\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"

# Precomputed replies for the integers commands answer most (counts, DEL, EXISTS,
# lengths), as Redis keeps its shared.integers: no formatting per reply.
_SHARED_INTEGERS = 10_000
_INTEGERS = [b":%d\r\n" % n for n in range(_SHARED_INTEGERS)]
# The headers of bulk strings up to 1 KiB, and how many items an array needs before
# bulks() builds it from them (below that, formatting each item is quicker).
_BULK_HEADERS = [b"$%d\r\n" % n for n in range(1024)]
_FEW = 16
CRLF = b"\r\n"


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def integer(value: int) -> bytes:
    if 0 <= value < _SHARED_INTEGERS:
        return _INTEGERS[value]
    return b":%d\r\n" % value


def status(text: str) -> bytes:
    return b"+" + text.encode() + b"\r\n"


def error(text: str | bytes) -> bytes:
    """An error reply; `text` starts with its code (ERR, WRONGTYPE, NOAUTH...). Bytes
    are sent as they are (a client's own bytes, echoed like Redis does), but for
    CR and LF, which become spaces as in Redis."""
    if isinstance(text, str):
        text = text.encode()
    return b"-" + text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def array(encoded: list[bytes]) -> bytes:
    """An array of replies that are already encoded."""
    return b"*%d\r\n" % len(encoded) + b"".join(encoded)


class Resp2:
    """The replies whose bytes depend on the protocol, as RESP2 writes them."""

    version = 2
    null = b"$-1\r\n"  # a missing value
    null_array = b"*-1\r\n"  # a missing aggregate (EXEC aborted by WATCH, ...)

    def bulk_or_null(self, value: bytes | None) -> bytes:
        return self.null if value is None else b"$%d\r\n%s\r\n" % (len(value), value)

    def bulks(self, items: Sequence[bytes | None]) -> bytes:
        """An array of bulk strings (None is a null element, as MGET has them)."""
        return b"*%d\r\n" % len(items) + self._bulk_run(items)

    def bulk_map(self, flat: Sequence[bytes]) -> bytes:
        """A map of bulk strings given as key, value, key, value... (HGETALL): a flat
        array in RESP2."""
        return self.bulks(flat)

    def _bulk_run(self, items: Sequence[bytes | None]) -> bytes:
        """Bulk strings one after the other, without the aggregate's header."""
        if len(items) > _FEW:
            plain = cast(Sequence[bytes], items)  # (a None fails len(): TypeError)
            try:  # headers looked up and everything joined in C: LRANGE's 100 in 60%
                return b"".join(chain.from_iterable(zip(
                    map(_BULK_HEADERS.__getitem__, map(len, plain)), plain, repeat(CRLF))))
            except (IndexError, TypeError):  # a longer item, or a null: item by item
                pass
        null = self.null
        return b"".join([null if item is None else b"$%d\r\n%s\r\n" % (len(item), item)
                         for item in items])

    def map(self, pairs: Iterable[tuple[object, object]]) -> bytes:
        """RESP2 has no map: a flat array of key, value, key, value..."""
        flat = [self.value(part) for pair in pairs for part in pair]
        return array(flat)

    def verbatim(self, text: bytes) -> bytes:
        """Text meant for people (INFO, CLIENT LIST): a bulk string in RESP2."""
        return bulk(text)

    # What scripts return (Redis's luaReplyToRedisReply): already encoded parts.
    def boolean(self, value: bool) -> bytes:
        return ONE if value else ZERO

    def double(self, value: float) -> bytes:
        return bulk(_double_text(value))

    def big_number(self, digits: bytes) -> bytes:
        return bulk(digits)

    def verbatim_as(self, format: bytes, text: bytes) -> bytes:
        return bulk(text)

    def map_of(self, encoded: list[bytes]) -> bytes:
        """Keys and values in turn, encoded."""
        return array(encoded)

    def push(self, items: list) -> bytes:
        """A pub/sub message or (un)subscribe confirmation: an array in RESP2, a push
        (`>`) in RESP3. Items: bytes (bulk), int, None (null)."""
        return self.push_header(len(items)) + b"".join(
            bulk(item) if isinstance(item, bytes) else
            self.null if item is None else integer(item) for item in items)

    def push_header(self, count: int) -> bytes:
        return b"*%d\r\n" % count

    def set_of(self, encoded: list[bytes]) -> bytes:
        return array(encoded)

    def value(self, value: object) -> bytes:
        """Any reply value: bytes/str -> bulk, int -> integer, None -> null, list -> array,
        dict -> map."""
        if value is None:
            return self.null
        if isinstance(value, bool):
            return integer(int(value))
        if isinstance(value, int):
            return integer(value)
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, (bytes, bytearray)):
            return bulk(bytes(value))
        if isinstance(value, dict):
            return self.map(value.items())
        if isinstance(value, (list, tuple)):
            return array([self.value(v) for v in value])
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")


class Resp3(Resp2):
    """RESP3's own types where Redis 7.0 uses them: null `_`, map `%`, verbatim `=`."""

    version = 3
    null = b"_\r\n"
    null_array = b"_\r\n"

    def map(self, pairs: Iterable[tuple[object, object]]) -> bytes:
        pairs = list(pairs)
        return b"%%%d\r\n" % len(pairs) + b"".join(
            self.value(key) + self.value(value) for key, value in pairs)

    def verbatim(self, text: bytes) -> bytes:
        return b"=%d\r\ntxt:%s\r\n" % (len(text) + 4, text)

    def boolean(self, value: bool) -> bytes:
        return b"#t\r\n" if value else b"#f\r\n"

    def double(self, value: float) -> bytes:
        return b"," + _double_text(value) + b"\r\n"

    def big_number(self, digits: bytes) -> bytes:
        return b"(" + digits + b"\r\n"

    def verbatim_as(self, format: bytes, text: bytes) -> bytes:
        return b"=%d\r\n%s:%s\r\n" % (len(text) + 4, format[:3], text)

    def map_of(self, encoded: list[bytes]) -> bytes:
        return b"%%%d\r\n" % (len(encoded) // 2) + b"".join(encoded)

    def bulk_map(self, flat: Sequence[bytes]) -> bytes:
        return b"%%%d\r\n" % (len(flat) // 2) + self._bulk_run(flat)

    def push_header(self, count: int) -> bytes:
        return b">%d\r\n" % count

    def set_of(self, encoded: list[bytes]) -> bytes:
        return b"~%d\r\n" % len(encoded) + b"".join(encoded)


def _double_text(value: float) -> bytes:
    """A double as Redis's addReplyDouble writes it (%.17g; inf and -inf spelled out)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


RESP2 = Resp2()
RESP3 = Resp3()
ENCODERS = {2: RESP2, 3: RESP3}
