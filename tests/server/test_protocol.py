"""RESP2 at the byte level: the parser in-process, then the same corpus against a real daemon."""

from __future__ import annotations

import random
import socket
import tracemalloc

import hiredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from server.protocol import ProtocolError, Refused, RequestParser, split_inline

MAX_BULK = 1 << 20
MAX_REQUEST = 4 << 20


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


VALID = [
    (encode(b"PING"), [[b"PING"]]),
    (encode(b"SET", b"k", b"v") + encode(b"GET", b"k"), [[b"SET", b"k", b"v"], [b"GET", b"k"]]),
    (encode(b"SET", b"", b"\x00\r\n\xff"), [[b"SET", b"", b"\x00\r\n\xff"]]),
    (b"PING\r\n", [[b"PING"]]),
    (b"PING\n", [[b"PING"]]),
    (b"  set  a   b \r\n", [[b"set", b"a", b"b"]]),
    (b'SET "a b" \'c d\'\r\n', [[b"SET", b"a b", b"c d"]]),
    (b'ECHO "\\x41\\n\\t\\"q\\""\r\n', [[b"ECHO", b'A\n\t"q"']]),
    (b"ECHO 'it\\'s'\r\n", [[b"ECHO", b"it's"]]),
    (b"\r\n\r\nPING\r\n", [[b"PING"]]),  # empty inline lines are skipped
    (b"*0\r\n*-1\r\nPING\r\n", [[b"PING"]]),  # empty multibulks are skipped, as in Redis
    (encode(b"PING") + b"PING\r\n" + encode(b"ECHO", b"x"),
     [[b"PING"], [b"PING"], [b"ECHO", b"x"]]),
    (encode(b"SET", b"big", b"x" * 300_000), [[b"SET", b"big", b"x" * 300_000]]),
]

# RESP3 aggregates are not requests: hiredis parses a set or a push as a list,
# Redis reads each line as an inline command.
RESP3_AGGREGATES = [b"~1\r\n$4\r\nPING\r\n", b">1\r\n$4\r\nPING\r\n"]

INVALID = [
    (b"*3000000000\r\n", "invalid multibulk length"),
    (b"*2147483648\r\n", "invalid multibulk length"),
    (b"*1x\r\n", "invalid multibulk length"),
    (b"* 1\r\n$4\r\nPING\r\n", "invalid multibulk length"),
    (b"*+1\r\n$4\r\nPING\r\n", "invalid multibulk length"),
    (b"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"),
    (b"*1\r\n$ 4\r\nPING\r\n", "invalid bulk length"),
    (b"*1\r\n$-1\r\n", "invalid bulk length"),
    (b"*1\r\n$3000000000\r\n", "invalid bulk length"),
    (b"*1\r\n:1\r\n", "expected '$', got ':'"),
    # Elements hiredis hands back as bytes although they are not bulk strings.
    (b"*1\r\n+PING\r\n", "expected '$', got '+'"),
    (b"*3\r\n$3\r\nSET\r\n+key\r\n$1\r\nv\r\n", "expected '$', got '+'"),
    (b"*1\r\n=8\r\ntxt:PING\r\n", "expected '$', got '='"),
    (b"*1\r\n(123\r\n", "expected '$', got '('"),
    # A status 3 bytes shorter than its bulk reading and a verbatim 3 bytes longer:
    # the frame's total size matches, each element's position does not.
    (b"*3\r\n$3\r\nSET\r\n+abcd\r\n=5\r\ntxt:x\r\n", "expected '$', got '+'"),
    (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
    (b'SET "a b\r\n', "unbalanced quotes in request"),
    (b'SET "a"b c\r\n', "unbalanced quotes in request"),
    (b"x" * (64 * 1024 + 1), "too big inline request"),
    (b"*" + b"1" * (64 * 1024 + 1), "too big mbulk count string"),
]


def feed_in_pieces(data: bytes, sizes) -> list[list[bytes]]:
    parser = RequestParser(MAX_BULK, MAX_REQUEST)
    out: list[list[bytes]] = []
    pos = 0
    for size in sizes:
        out += parser.feed(data[pos : pos + size])
        pos += size
    out += parser.feed(data[pos:]) if pos < len(data) else []
    assert parser.pending == 0
    return out


@pytest.mark.parametrize("data,expected", VALID, ids=[f"valid{i}" for i in range(len(VALID))])
def test_valid_requests_parse_the_same_whole_and_in_any_pieces(data, expected):
    assert feed_in_pieces(data, [len(data)]) == expected
    assert feed_in_pieces(data, [1] * len(data)) == expected
    rng = random.Random(len(data))
    for _ in range(20):
        sizes = [rng.randint(1, max(1, len(data) // 3)) for _ in range(10)]
        assert feed_in_pieces(data, sizes) == expected


def test_before_auth_requests_are_small_and_come_one_at_a_time():
    parser = RequestParser(MAX_BULK, MAX_REQUEST, unauthenticated=True)
    two = encode(b"AUTH", b"pw") + encode(b"MSET", *[b"k"] * 20)
    assert parser.feed(two) == [[b"AUTH", b"pw"]] and parser.held_back
    parser.unauthenticated = False  # what a successful AUTH does
    assert parser.feed(b"") == [[b"MSET", *[b"k"] * 20]] and not parser.held_back


@pytest.mark.parametrize("data,message", [
    (b"*11\r\n", "unauthenticated multibulk length"),
    (b"*2\r\n$4\r\nECHO\r\n$16385\r\n", "unauthenticated bulk length"),
    (b"*2147483648\r\n", "invalid multibulk length"),  # the general error comes first
])
def test_before_auth_larger_requests_get_redis_errors(data, message):
    parser = RequestParser(MAX_BULK, MAX_REQUEST, unauthenticated=True)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(data)
    assert caught.value.reply == b"-ERR Protocol error: " + message.encode() + b"\r\n"
    # The same sizes are fine at Redis 7's limits once authenticated.
    for header in (b"*11\r\n", b"*2000000000\r\n", b"*1\r\n$16385\r\n"):
        assert RequestParser(MAX_BULK, MAX_REQUEST).feed(header) == []  # waits for the rest


@pytest.mark.parametrize("data", RESP3_AGGREGATES)
def test_resp3_aggregates_are_read_as_inline_lines_like_redis_does(data):
    expected = [[line] for line in data.split(b"\r\n")[:-1]]
    assert feed_in_pieces(data, [len(data)]) == expected
    assert feed_in_pieces(data, [1] * len(data)) == expected


@pytest.mark.parametrize("data,message", INVALID, ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_invalid_requests_raise_redis_errors_without_waiting_for_more_data(data, message):
    parser = RequestParser(MAX_BULK, MAX_REQUEST)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(encode(b"PING") + data)  # the request before the error is kept
    assert caught.value.reply == b"-ERR Protocol error: " + message.encode() + b"\r\n"
    assert caught.value.requests == [[b"PING"]]


@pytest.mark.parametrize("data,message", INVALID, ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_invalid_requests_after_a_pipeline_get_the_same_errors(data, message):
    """A chunk of pipelined requests (256 bytes and more) takes the parser's plain path,
    which looks for RESP3 type bytes only where an element can start."""
    pipeline = [[b"SET", b"k%d" % i, b"=>+(" * 10] for i in range(8)]  # values start so
    parser = RequestParser(MAX_BULK, MAX_REQUEST)
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"".join(encode(*r) for r in pipeline) + data)
    assert caught.value.reply == b"-ERR Protocol error: " + message.encode() + b"\r\n"
    assert caught.value.requests == pipeline


def test_values_with_resp3_type_bytes_anywhere_parse_as_values():
    values = [bytes([first]) + b"=>+(~|\n=\r\n+" * 20 for first in b"+=(~>|x"]
    requests = [[b"SET", b"k", value] for value in values] + [[b"GET", b"k"]]
    data = b"".join(encode(*r) for r in requests)
    assert feed_in_pieces(data, [len(data)]) == requests
    assert feed_in_pieces(data, [300, 700]) == requests


@pytest.mark.parametrize("data", [
    b"*2000000000\r\n",
    b"*1\r\n*1000000000\r\n",  # nested, which hiredis would accept
    encode(b"PING") + b"*1048576\r\n",  # allowed, but nothing is allocated for it yet
])
def test_a_large_array_header_allocates_nothing_up_front(data):
    # hiredis allocates the whole array when it reads the header; the parser
    # must not let it see one (2e9 elements is 16 GB of pointers).
    parser = RequestParser(MAX_BULK, MAX_REQUEST)
    tracemalloc.start()
    try:
        parser.feed(data)
    except ProtocolError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_a_value_that_looks_like_a_large_array_header_is_still_parsed():
    request = [b"SET", b"k", b"*1000000000\r\n$5\r\n"]
    assert feed_in_pieces(encode(*request), [1000]) == [request]


def test_a_request_over_a_limit_is_refused_read_and_thrown_away_as_it_arrives():
    """Over the argument or the request limit, a request is refused from the header that
    shows it; the rest is read without being held, and the requests after it go on."""
    for header, size, refusal in (
            (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n", MAX_BULK + 1,
             b"-ERR value is too large (%d bytes; --max-value-size is %d)\r\n"
             % (MAX_BULK + 1, MAX_BULK)),
            (b"*4\r\n$4\r\nMSET\r\n$1\r\nk\r\n", MAX_BULK, None)):
        parser = RequestParser(MAX_BULK, max_request=MAX_BULK + 16)
        assert parser.feed(header) == []
        assert parser.feed(b"$%d\r\n" % size + b"x" * 1000) == []
        for _ in range((size - 1000) // 65536):
            assert parser.feed(b"x" * 65536) == []
            assert parser.pending < 70_000  # nothing of the value is held
        tail = b"x" * ((size - 1000) % 65536) + b"\r\n"
        if refusal is None:  # the MSET's second pair passes the request limit
            tail += b"$1\r\nv\r\n"
        requests = parser.feed(tail + b"*1\r\n$4\r\nPING\r\n")
        assert len(requests) == 2 and requests[1] == [b"PING"]
        assert isinstance(requests[0], Refused)
        reply = requests[0].reply
        if refusal is not None:
            assert reply == refusal
        else:
            assert reply.startswith(b"-ERR request is too large (over ")
            assert reply.endswith(b"bytes; --max-request-size is %d)\r\n" % (MAX_BULK + 16))
    parser = RequestParser(max_bulk=1 << 30, max_request=1 << 20)
    parser.feed(b"*1\r\n$100\r\n")  # small declared size: waits
    with pytest.raises(ProtocolError):
        parser.feed(b"x" * (2 << 20))  # but never buffers past the limit


class _WorkBound(Exception):
    pass


def _parse_counting(monkeypatch, request: bytes, step: int, bound: int) -> list[list[bytes]]:
    """Feed `request` in pieces of `step` bytes, counting the length fields parsed: past
    `bound` the parse is not linear (a quadratic one re-parses the arguments it already
    had on every read) and the test stops at once."""
    import server.protocol as protocol

    parsed = 0
    real = protocol.parse_strict_int

    def counting(text: bytes):
        nonlocal parsed
        parsed += 1
        if parsed > bound:
            raise _WorkBound(f"{parsed} length fields parsed for a request that has {bound}")
        return real(text)

    monkeypatch.setattr(protocol, "parse_strict_int", counting)
    parser = RequestParser(max_bulk=1 << 20, max_request=1 << 30)
    requests = []
    for i in range(0, len(request), step):
        requests += parser.feed(request[i:i + step])
    assert parser.examined <= 2 * len(request)  # bytes searched or copied: about each once
    return requests


def _mset(arguments: int) -> tuple[list[bytes], bytes]:
    args = [b"MSET"] + [b"k%d" % (i // 2) if i % 2 == 0 else b"v" for i in range(arguments)]
    return args, encode(*args)


@pytest.mark.slow
def test_a_million_arguments_in_64k_reads_are_parsed_in_linear_time(monkeypatch):
    args, request = _mset(1_000_000)
    assert _parse_counting(monkeypatch, request, 65536, len(args) + 1) == [args]


@pytest.mark.slow
@pytest.mark.slow
def test_a_million_arguments_one_byte_at_a_time_are_parsed_in_linear_time(monkeypatch):
    args, request = _mset(1_000_000)
    assert _parse_counting(monkeypatch, request, 1, len(args) + 1) == [args]


def test_a_long_header_arriving_byte_by_byte_is_searched_once(monkeypatch):
    header = b"*" + b"1" * 60_000  # (a header may be up to 64 KiB; it never ends here)
    parser = RequestParser(max_bulk=1 << 20, max_request=1 << 20)
    for i in range(len(header)):
        assert parser.feed(header[i:i + 1]) == []
    assert parser.examined <= 2 * len(header)


def test_the_inline_splitter_follows_redis_quoting():
    assert split_inline(b'a "b c" d') == [b"a", b"b c", b"d"]
    assert split_inline(b'"\\x4g"') == [b"x4g"]  # not a hex escape: the char itself
    assert split_inline(b"''") == [b""]
    assert split_inline(b'"unterminated') is None


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1,
                      max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=40),
)
def test_random_requests_in_random_pieces(requests, cuts):
    data = b"".join(encode(*r) for r in requests)
    assert feed_in_pieces(data, cuts) == requests


# -- against a real daemon ------------------------------------------------------------------


def recv_until(sock: socket.socket, expected_len: int) -> bytes:
    """Read until `expected_len` bytes or EOF."""
    data = b""
    while len(data) < expected_len:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def exchange(sock: socket.socket, payload: bytes, reply: bytes) -> bytes:
    sock.sendall(payload)
    return recv_until(sock, len(reply))


@pytest.fixture
def kvd(shared_kvd):
    return shared_kvd


@pytest.fixture
def bystander(kvd):
    """A well-behaved client that must be unaffected by everyone else's errors."""
    client = kvd.client()
    client.set(b"bystander", b"\x00still here\xff")
    yield client
    assert client.ping() is True
    assert client.get(b"bystander") == b"\x00still here\xff"


@pytest.mark.parametrize("data,message", INVALID,
                         ids=[f"invalid{i}" for i in range(len(INVALID))])
def test_malformed_requests_get_the_error_then_only_that_connection_closes(kvd, bystander, data,
                                                                          message):
    sock = kvd.raw()
    expected = b"+PONG\r\n-ERR Protocol error: " + message.encode() + b"\r\n"
    assert exchange(sock, b"PING\r\n" + data, expected) == expected
    assert sock.recv(100) == b""  # closed by the server after the error, no hang
    sock.close()


def test_valid_corpus_over_a_real_socket(kvd, bystander):
    sock = kvd.raw()
    for data, requests in VALID:
        sock.sendall(data)
        reader = hiredis.Reader()
        replies: list = []
        while len(replies) < len(requests):
            reader.feed(sock.recv(65536))
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        assert len(replies) == len(requests)
        for request, reply in zip(requests, replies):
            assert not isinstance(reply, hiredis.ReplyError), (request[:3], reply)
            if request[0].upper() == b"ECHO":
                assert reply == request[1]
    sock.close()


def test_a_resp3_set_gets_redis_replies_for_each_line(kvd, bystander):
    sock = kvd.raw()
    expected = (b"-ERR unknown command '~1', with args beginning with: \r\n"
                b"-ERR unknown command '$4', with args beginning with: \r\n+PONG\r\n")
    assert exchange(sock, RESP3_AGGREGATES[0], expected) == expected
    sock.close()


def test_inline_commands_with_quotes_as_typed_in_telnet(kvd, bystander):
    sock = kvd.raw()
    reply = exchange(sock, b'SET "my key" "a\\tb"\r\nGET "my key"\r\n', b"+OK\r\n$3\r\na\tb\r\n")
    assert reply == b"+OK\r\n$3\r\na\tb\r\n"


def test_pipelined_requests_are_answered_in_order(kvd, bystander):
    sock = kvd.raw()
    payload = b"".join(encode(b"INCR", b"counter") for _ in range(500))
    expected = b"".join(b":%d\r\n" % i for i in range(1, 501))
    assert exchange(sock, payload, expected) == expected


def test_a_slow_client_sending_byte_by_byte_does_not_block_others(kvd, bystander):
    slow = kvd.raw()
    payload = encode(b"SET", b"slow", b"value") + encode(b"GET", b"slow")
    for i, byte in enumerate(payload):
        slow.sendall(bytes([byte]))
        if i % 7 == 0:
            assert bystander.ping() is True  # the loop keeps serving between the bytes
    assert recv_until(slow, 16) == b"+OK\r\n$5\r\nvalue\r\n"


def test_a_large_value_arriving_in_many_reads(kvd, bystander):
    value = bytes(range(256)) * 40_000  # 10 MB
    sock = kvd.raw(timeout=30)
    payload = encode(b"SET", b"large", value)
    for start in range(0, len(payload), 65_536):
        sock.sendall(payload[start : start + 65_536])
    assert recv_until(sock, 5) == b"+OK\r\n"
    assert bystander.get(b"large") == value


def test_a_value_over_the_limit_is_a_clear_error(make_daemon):
    kvd = make_daemon("--max-value-size", "1000", "--max-key-size", "500",
                      "--max-request-size", "2000000")
    client = kvd.client()
    with pytest.raises(Exception, match="value is too large"):
        client.set(b"k", b"x" * 1001)
    client.set(b"k", b"x" * 1000)
    assert client.get(b"k") == b"x" * 1000
    # A value the server would never hold is refused from its header: the client, still
    # writing it, reads the error afterwards on a connection that goes on, and the
    # server held none of it.
    peak_before = _peak_rss_mb(kvd.pid)
    with pytest.raises(redis.ResponseError, match=r"value is too large \(100000000 bytes; "
                                                  r"--max-value-size is 1000\)"):
        client.set(b"k", b"x" * 100_000_000)
    assert client.get(b"k") == b"x" * 1000
    assert _peak_rss_mb(kvd.pid) < peak_before + 20  # 100 MB came in; none of it was held
    # Over Redis's own limit (proto-max-bulk-len, 512 MiB) a bulk is malformed, as in Redis.
    sock = kvd.raw()
    expected = b"-ERR Protocol error: invalid bulk length\r\n"
    assert exchange(sock, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n", expected) == expected


def _peak_rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) // 1024


def test_half_closed_clients_still_get_their_replies(kvd, bystander):
    sock = kvd.raw()
    sock.sendall(encode(b"SET", b"half", b"closed") + b"GET half\r\n")
    sock.shutdown(socket.SHUT_WR)  # as `nc -N` or a pipe into redis-cli does
    assert recv_until(sock, 1000) == b"+OK\r\n$6\r\nclosed\r\n"


def test_nothing_after_quit_is_read_even_if_malformed(kvd):
    """Found by the raw-protocol differential test: Redis stops reading at QUIT, so a
    malformed request after it in the same packet gets no protocol error."""
    with kvd.raw() as sock:
        sock.sendall(b"PING\r\nQUIT\r\n*01\r\n$4\r\nPING\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b"+PONG\r\n+OK\r\n"


def test_a_request_that_looks_like_the_plain_paths_sentinel_is_parsed_as_any_other():
    """The parser feeds hiredis a sentinel request after a chunk to prove the chunk ended
    at a request boundary; a client sending the same bytes gets them parsed, once each,
    in order."""
    look_alike, ping = [b"\0\xff", b"\0"], [b"PING"]
    for requests in ([look_alike], [look_alike, ping], [ping, look_alike], [look_alike] * 3):
        data = b"".join(encode(*request) for request in requests)
        assert feed_in_pieces(data, [len(data)]) == requests
        assert feed_in_pieces(data, [1] * len(data)) == requests
