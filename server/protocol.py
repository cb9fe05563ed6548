"""Requests in: the RESP request parser (replies are built in resp.py).

A request is either a multibulk (`*<n>\\r\\n` then n times `$<len>\\r\\n<bytes>\\r\\n`,
what every client library sends) or an inline command (`PING\\r\\n`, what
people type into telnet or nc, with Redis's quoting rules).

`RequestParser` has two paths that accept exactly the same language:

* the fast path hands a whole received chunk to `hiredis.Reader`, which splits
  it into frames in C. hiredis is a reply parser, so it accepts things a
  server must refuse (nested arrays, integers, nulls, `*3000000000`, for
  which it allocates the array up front) and knows nothing of inline
  commands. Chunks that could hold a large array header never reach it; the fast path
  therefore only keeps frames that are non-empty lists of bytes and counts the
  bytes they occupied; the moment anything else turns up -- a partial frame at
  the end of the chunk, an inline command, anything hiredis rejects or a frame
  of the wrong shape -- the rest of the chunk goes to
* the strict path, written in Python after Redis's `processMultibulkBuffer` and
  `processInlineBuffer`: lengths are parsed strictly and bounded *before*
  anything is buffered for them, and the error texts are Redis's.

The strict path keeps the connection until its buffer is empty again, so a
slow client sending one byte at a time, or a 64 MiB value arriving in many
reads, is parsed once, in linear time.
"""

from __future__ import annotations

import re

import hiredis

from .resp import error

# Redis's limits for the parts of a request that are not payload.
MAX_INLINE_SIZE = 64 * 1024
MAX_MULTIBULK_ARGS = 2**31 - 1  # Redis 7: INT_MAX (the bytes are bounded by max_request)
# Before AUTH, when a password is set, Redis 7 refuses larger requests outright
# (CVE-2021-32675: an unauthenticated client could make it buffer gigabytes).
# Redis's proto-max-bulk-len default: a longer bulk is malformed to Redis (a protocol
# error); below it, kvd's own, smaller limits refuse the request politely (Refused).
# Above this an argument is copied out of the buffer through a memoryview: one copy
# instead of two, which matters for a value of many megabytes.
BIG_ARGUMENT = 1 << 16
PROTO_MAX_BULK = 512 * 1024 * 1024
MAX_UNAUTHENTICATED_ARGS = 10
MAX_UNAUTHENTICATED_BULK = 16 * 1024

# hiredis allocates an array as soon as it reads its header: `*3000000000`
# costs seconds of CPU and gigabytes of address space before any element
# arrives. A chunk with anything that could be such a header (a '*' and five
# or more digits, wherever it is) goes to the strict path, which bounds it.
_LARGE_ARRAY_HEADER = re.compile(rb"\*-?[0-9]{5}").search
# Fed after a chunk by the plain path: parsed back on its own only at a request boundary.
# (A client that sends the same bytes is told apart: see _parse_plain.)
_SENTINEL_FRAME = [b"\0\xff", b"\0"]
_SENTINEL = b"*2\r\n$2\r\n\0\xff\r\n$1\r\n\0\r\n"


_MISREAD = b"+=(~>|"
# Such a byte matters only where an element starts: the chunk's first byte, or one right
# after a line's "\n" (every element ends with "\r\n"). A value starting with one is a
# false alarm that costs the verifying path, nothing more.
_MISREAD_AFTER_LINE = re.compile(rb"\n[+=(~>|]").search
# The plain path's own cost (a scan, a sentinel) is fixed per chunk: it pays off from a few
# requests on, as pipelines send them; a lone request takes the verifying path.
_PLAIN_MIN = 256


def _misread_types(data: bytes) -> bool:
    """Whether an element of `data` may start with a RESP3 type byte whose value hiredis
    returns as bytes or a list, as it would a bulk string or an array (status, verbatim,
    big number, set, push, attribute). Looking only where elements start keeps the plain
    path for values that merely contain such a byte (redis-benchmark's random values
    contain `=` and `>`; any base64 contains `+` and `=`)."""
    return data[0] in _MISREAD or _MISREAD_AFTER_LINE(data) is not None


class ProtocolError(Exception):
    """The client broke the protocol; reply with the message, then close."""

    def __init__(self, message: str | bytes) -> None:
        text = message if isinstance(message, bytes) else message.encode()
        super().__init__(text.decode(errors="replace"))
        self.reply = error(b"ERR Protocol error: " + text)  # CR/LF become spaces, as in Redis
        self.requests: list[list[bytes]] = []  # complete requests that came before the error


def parse_strict_int(text: bytes) -> int | None:
    """Redis's `string2ll`: optional '-', digits, no leading zeros, no spaces or '+'.

    Returns None for anything else, and for values outside a signed 64-bit int.
    """
    if not text or len(text) > 20:
        return None
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or not digits.isascii():
        return None
    if digits[:1] == b"0" and (len(digits) > 1 or text[:1] == b"-"):
        return None
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        return None
    return value


def _header_size(length: int) -> int:
    """Bytes of `$<length>\\r\\n` (or `*<length>\\r\\n`)."""
    if length < 10:
        return 4
    if length < 100:
        return 5
    return len(b"%d" % length) + 3


# Header plus trailing CRLF of a bulk of each small length, for the fast path's
# accounting: a list index costs less than a call per argument.
_BULK_OVERHEAD = [_header_size(n) + 2 for n in range(10_000)]


def encode_request(*args: bytes) -> bytes:
    """A request as clients send it (an array of bulk strings): what MIGRATE sends its
    target, what `kvctl export` writes."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


REFUSED = b"\x00refused"  # the name of a Refused request: no command has it


class Refused(list):
    """A request the parser refused (over a size limit) and read no further: `[REFUSED]`,
    with `reply`, the error to answer. The gate finds no command by that name and answers
    the reply instead of "unknown command"."""

    def __init__(self, reply: bytes) -> None:
        super().__init__([REFUSED])
        self.reply = reply


class RequestParser:
    """Splits one connection's byte stream into requests (lists of bytes).

    `max_bulk` bounds a single argument and `max_request` the bytes a request may
    occupy. A request that a header shows would pass one is *refused*, not a protocol
    error: the rest of it is read and thrown away as it arrives (never held), and it
    comes out as a `Refused` request, whose error the gate answers; the connection
    goes on. So a client that sends a value over the limit reads an error, instead of
    a reset connection while it is still writing, and the server never holds the value.

    Parsing costs O(n) for n bytes, however they are split across reads: a
    multibulk request that is still arriving keeps the arguments parsed so far
    (Redis's argv, multibulklen and bulklen), so each byte is parsed once, and a
    line still arriving (a header, an inline request) is searched only from where
    the last search stopped. `examined` counts the bytes the strict path looked at
    (searched, copied or parsed), which is how a test holds it to that.

    While `unauthenticated` (a password is set and the client has not given
    it), requests are held to Redis's small pre-AUTH limits and returned one
    at a time: the server runs each before the next is parsed, so an AUTH
    lifts the limits for the requests pipelined behind it, as in Redis.
    `held_back` then says a complete request may be waiting in the buffer;
    `feed(b"")` returns it.
    """

    __slots__ = ("max_bulk", "max_request", "bulk_limit", "unauthenticated", "held_back",
                 "examined",
                 "_reader", "_buffer", "_need", "_searched", "_args", "_remaining",
                 "_bulk_len", "_request_size", "_refusal", "_skip")

    def __init__(self, max_bulk: int, max_request: int, unauthenticated: bool = False,
                 bulk_limit: str = "--max-value-size") -> None:
        self.max_bulk = max_bulk
        self.max_request = max_request
        self.bulk_limit = bulk_limit  # the setting max_bulk comes from, for the refusal
        self.unauthenticated = unauthenticated
        self.held_back = False
        self.examined = 0
        self._reader = hiredis.Reader()
        self._buffer = bytearray()  # strict path: bytes not yet parsed
        self._need = 0  # strict path: don't re-parse until the buffer has this many bytes
        self._searched = 0  # a line still arriving has no line end before this position
        # A multibulk request still arriving: its arguments so far (None between
        # requests), how many are still to come, the length of the one whose payload is
        # awaited (-1: its header is), and the bytes the request has taken so far.
        self._args: list[bytes] | None = None
        self._remaining = 0
        self._bulk_len = -1
        self._request_size = 0
        # A refused request still arriving: its error, and the bytes of the argument being
        # thrown away that are still to come (with its CRLF).
        self._refusal: bytes | None = None
        self._skip = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete request held by the parser."""
        partial = self._request_size if self._args is not None else 0
        return len(self._buffer) + partial

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse a received chunk; return the complete requests in it, in order.

        Raises ProtocolError for a malformed request, carrying the complete
        requests that preceded it (`exc.requests`); the connection must then be
        closed after answering them and the error.
        """
        self.held_back = False
        if self._buffer or self._args is not None or self.unauthenticated:
            self._buffer += data
            if len(self._buffer) < self._need:
                if self.pending > self.max_request:
                    raise ProtocolError("request too large (see --max-request-size)")
                return []
            return self._parse_strict([])
        return self._parse_fast(data)

    def _parse_fast(self, data: bytes) -> list[list[bytes]]:
        """hiredis over a whole chunk; hands over to the strict path on anything odd.

        hiredis parses any RESP reply, RESP3 included, and hands some types
        back as bytes or lists although they are no bulk string or array
        (`+status`, `=verbatim`, `(bignum`, a `~set`). So each frame it returns
        is checked against the chunk itself: it must start with `*` where the
        previous frame ended, and each element with `$` where the previous
        element ended -- which proves, frame by frame, that it was exactly an
        array of bulk strings (hiredis accepts no non-canonical lengths, so
        the positions are exact). From the first frame that is not, the rest
        of the chunk is re-parsed strictly, which gives Redis's error.
        """
        requests: list[list[bytes]] = []
        if _LARGE_ARRAY_HEADER(data):
            self._buffer += data
            return self._parse_strict(requests)
        if len(data) >= _PLAIN_MIN and not _misread_types(data):
            plain = self._parse_plain(data)
            if plain is not None:
                return plain
        reader = self._reader
        reader.feed(data)
        used = 0
        bulk = bytes
        overhead = _BULK_OVERHEAD
        try:
            while True:
                frame = reader.gets()
                if frame is False or type(frame) is not list or not frame or data[used] != 0x2A:
                    break  # no frame, or not a multibulk ('*')
                pos = used + _header_size(len(frame))
                for arg in frame:
                    if type(arg) is not bulk or data[pos] != 0x24:
                        break  # not a bulk string ('$')
                    n = len(arg)
                    pos += n + (overhead[n] if n < 10_000 else _header_size(n) + 2)
                else:
                    used = pos
                    requests.append(frame)
                    continue
                break
        except (hiredis.ProtocolError, IndexError):  # IndexError: a position past the chunk
            pass
        if used == len(data):
            return requests
        self._reader = hiredis.Reader()  # its partial state is unknown; start clean
        self._buffer += memoryview(data)[used:]
        return self._parse_strict(requests)

    def _parse_plain(self, data: bytes) -> list[list[bytes]] | None:
        """The requests of a chunk without any type byte that hiredis would hand back as
        a bulk string or an array (`+ = ( ~ > |`, see _misread_types): each list of bytes
        it returns is then an array of bulk strings, so the types are checked and no
        positions. That the chunk ends where a request ends is proved by a sentinel
        request fed after it: it comes back on its own only if nothing was left half-read.
        None (with a fresh reader) for anything else; the caller then verifies the chunk
        the long way."""
        reader = self._reader
        reader.feed(data)
        reader.feed(_SENTINEL)
        requests: list[list[bytes]] = []
        bulk = bytes
        try:
            while True:
                frame = reader.gets()
                if type(frame) is not list or not frame:
                    break
                for arg in frame:
                    if type(arg) is not bulk:
                        break
                else:
                    if frame == _SENTINEL_FRAME:
                        if reader.gets() is False:  # ours, not a client's look-alike
                            return requests
                        break
                    requests.append(frame)
                    continue
                break
        except hiredis.ProtocolError:
            pass
        self._reader = hiredis.Reader()
        return None

    def _parse_strict(self, requests: list[list[bytes]]) -> list[list[bytes]]:
        buffer = self._buffer
        pos = 0
        try:
            while pos < len(buffer):
                if self._args is None:  # at a request boundary
                    if buffer[pos] != 0x2A:  # not '*': an inline request
                        request, end = self._inline(buffer, pos)
                        if end < 0:
                            break
                        pos = end
                        if request and self._complete(request, requests, pos, buffer):
                            break
                        continue
                    end = self._multibulk_header(buffer, pos)
                    if end < 0:
                        break
                    pos = end
                    continue
                pos = self._bulks(buffer, pos)
                if self._remaining:
                    break  # the rest has not arrived yet
                request, self._args = self._args, None
                if self._refusal is not None:
                    request, self._refusal = Refused(self._refusal), None
                if self._complete(request, requests, pos, buffer):
                    break
        except ProtocolError as exc:
            exc.requests = requests
            raise
        finally:
            del buffer[:pos]
            self._need -= pos  # they were measured from the old start of the buffer
            self._searched = max(0, self._searched - pos)
        if self.pending > self.max_request:
            too_large = ProtocolError("request too large (see --max-request-size)")
            too_large.requests = requests
            raise too_large
        if not buffer:
            self._need = 0
        return requests

    def _complete(self, request: list[bytes], requests: list[list[bytes]], pos: int,
                  buffer: bytearray) -> bool:
        """A request is complete: add it; True if parsing must stop here (before AUTH,
        requests are returned one at a time)."""
        requests.append(request)
        if not self.unauthenticated:
            return False
        self.held_back = pos < len(buffer)
        self._need = pos  # after the del in _parse_strict: 0, parse the rest next time
        return True

    def _multibulk_header(self, buffer: bytearray, pos: int) -> int:
        """A `*<count>` line at `pos`: starts the request's arguments; where it ends, or -1
        while it is still arriving. A count of 0 or less is no request (as in Redis)."""
        line_end = self._header_end(buffer, pos, "too big mbulk count string")
        if line_end < 0:
            return -1
        count = parse_strict_int(bytes(buffer[pos + 1 : line_end]))
        if count is None or count > MAX_MULTIBULK_ARGS:
            raise ProtocolError("invalid multibulk length")
        if self.unauthenticated and count > MAX_UNAUTHENTICATED_ARGS:
            raise ProtocolError("unauthenticated multibulk length")
        if count > 0:
            self._args, self._remaining, self._bulk_len = [], count, -1
            self._request_size = line_end + 2 - pos
        return line_end + 2

    def _bulks(self, buffer: bytearray, pos: int) -> int:
        """Read the arguments of the request in progress that have arrived, from `pos`;
        return where the bytes they took end."""
        args = self._args
        assert args is not None
        while self._remaining:
            if self._skip:  # an argument of a refused request: thrown away as it arrives
                taken = min(self._skip, len(buffer) - pos)
                self._skip -= taken
                self.examined += taken
                pos += taken
                if self._skip:
                    self._need = 0
                    return pos
                self._remaining -= 1
                continue
            if self._bulk_len < 0:
                line_end = self._header_end(buffer, pos, "too big bulk count string")
                if line_end < 0:
                    return pos
                if buffer[pos] != 0x24:  # '$', checked once the line is there, as Redis does
                    raise ProtocolError(b"expected '$', got '%c'" % buffer[pos])
                length = parse_strict_int(bytes(buffer[pos + 1 : line_end]))
                if length is None or length < 0 or length > max(PROTO_MAX_BULK,
                                                                  self.max_bulk):
                    raise ProtocolError("invalid bulk length")
                if self.unauthenticated and length > MAX_UNAUTHENTICATED_BULK:
                    raise ProtocolError("unauthenticated bulk length")
                header = line_end + 2 - pos
                if self._refusal is None:
                    self._refusal = self._refuse(length, header)
                if self._refusal is not None:  # this argument and the rest are not kept
                    args.clear()
                    self._skip = length + 2
                    pos = line_end + 2
                    continue
                self._request_size += header
                self._bulk_len = length
                pos = line_end + 2
            end = pos + self._bulk_len + 2  # like Redis, the CRLF after it is not checked
            if end > len(buffer):
                self._need = end
                return pos
            if self._bulk_len < BIG_ARGUMENT:
                args.append(bytes(buffer[pos : pos + self._bulk_len]))
            else:  # one copy, not two (a bytearray slice, then bytes of it)
                with memoryview(buffer) as view:
                    args.append(view[pos : pos + self._bulk_len].tobytes())
            self.examined += self._bulk_len
            self._request_size += self._bulk_len + 2
            self._bulk_len = -1
            self._remaining -= 1
            pos = end
        return pos

    def _refuse(self, length: int, header: int) -> bytes | None:
        """The error refusing the request in progress if an argument of `length` would pass
        a limit (the request is then read no further), else None."""
        if length > self.max_bulk:
            what = "value" if self.bulk_limit == "--max-value-size" else "argument"
            return error(f"ERR {what} is too large ({length} bytes; {self.bulk_limit} is "
                         f"{self.max_bulk})")
        if self._request_size + header + length > self.max_request:
            return error(f"ERR request is too large (over {self._request_size + header + length}"
                         f" bytes; --max-request-size is {self.max_request})")
        return None

    def _header_end(self, buffer: bytearray, pos: int, too_big: str) -> int:
        """Where a `*` or `$` header line starting at `pos` ends, or -1 while it is still
        arriving. Like Redis, the line ends at the first CR once one more byte (the LF,
        not checked) has arrived; both are skipped."""
        found = self._line_end(buffer, pos, b"\r", too_big)
        if found >= 0 and found + 1 >= len(buffer):
            self._need = found + 2
            return -1
        return found

    def _line_end(self, buffer: bytearray, pos: int, end: bytes, too_big: str) -> int:
        """Where the line starting at `pos` ends, or -1 while it is still arriving (it may
        not grow past MAX_INLINE_SIZE, Redis's bound for a header or an inline request).
        What an earlier call searched in vain is not searched again."""
        start = pos if self._searched <= pos else self._searched
        found = buffer.find(end, start)
        if found < 0:
            self.examined += len(buffer) - start
            if len(buffer) - pos > MAX_INLINE_SIZE:
                raise ProtocolError(too_big)
            self._need = len(buffer) + 1
            self._searched = len(buffer)
            return -1
        self.examined += found + 1 - start
        self._searched = 0
        return found

    def _inline(self, buffer: bytearray, pos: int) -> tuple[list[bytes] | None, int]:
        """One inline request at `pos` (a line of words): (request, end) or (None, -1)."""
        newline = self._line_end(buffer, pos, b"\n", "too big inline request")
        if newline < 0:
            return None, -1
        line = bytes(buffer[pos:newline])
        if line.endswith(b"\r"):
            line = line[:-1]
        words = split_inline(line)
        if words is None:
            raise ProtocolError("unbalanced quotes in request")
        return words, newline + 1


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
# sdssplitargs skips blanks with isspace() (which includes \v and \f) but ends an
# unquoted word only at these five; "a\vb" is one word. (A NUL ends the C string
# Redis splits; here it separates words.)
_SPACE = b" \t\r\n\v\f\0"
_WORD_END = b" \t\r\n\0"
_HEX = b"0123456789abcdefABCDEF"


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command into words as Redis's `sdssplitargs` does.

    Double quotes allow \\n \\r \\t \\b \\a \\\\ \\" and \\xHH escapes; single
    quotes allow only \\'. A closing quote must be followed by a space or the
    end of the line. Returns None for unbalanced quotes.
    """
    words: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return words
        word = bytearray()
        quote = 0
        while True:
            if quote == 0:
                if i >= n or line[i] in _WORD_END:
                    break
                c = line[i]
                if c in (0x22, 0x27):  # " or '
                    quote = c
                else:
                    word.append(c)
                i += 1
                continue
            if i >= n:
                return None  # unterminated quotes
            c = line[i]
            if quote == 0x22 and c == 0x5C and i + 1 < n:  # backslash in "..."
                nxt = line[i + 1]
                if (nxt == 0x78 and i + 3 < n and line[i + 2] in _HEX and line[i + 3] in _HEX):
                    word.append(int(line[i + 2 : i + 4], 16))
                    i += 4
                    continue
                word += _ESCAPES.get(nxt, bytes((nxt,)))
                i += 2
                continue
            if quote == 0x27 and c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                word.append(0x27)
                i += 2
                continue
            if c == quote:
                if i + 1 < n and line[i + 1] not in _SPACE:
                    return None  # closing quote must be followed by a space
                quote = 0
                i += 1
                break
            word.append(c)
            i += 1
        words.append(bytes(word))
