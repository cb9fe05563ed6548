"""Output backpressure: a client that sends requests but does not read its
replies stops being read from once more than --max-output-buffer is owed to
it; it is served again, completely and in order, once it reads; and nobody
else waits meanwhile."""

from __future__ import annotations

import hiredis

from tests.kvd_process import wait_for

VALUE = b"v" * (256 * 1024)
LIMIT = 1024 * 1024


def _commands_processed(client) -> int:
    """INFO's count, which (as in Redis) leaves out the INFO asking."""
    return int(client.info("stats")["total_commands_processed"])


def _read_replies(sock, count: int) -> list:
    reader = hiredis.Reader()
    replies: list = []
    while len(replies) < count:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {len(replies)} of {count} replies"
        reader.feed(chunk)
        reply = reader.gets()
        while reply is not False:
            replies.append(reply)
            reply = reader.gets()
    return replies


def test_a_client_that_does_not_read_stops_being_read_until_it_does(make_daemon):
    kvd = make_daemon("--max-output-buffer", str(LIMIT))
    bystander = kvd.client()
    bystander.set(b"big", VALUE)
    hog = kvd.raw()
    hog.sendall(b"GET big\r\n" * 40)  # 10 MiB of replies, never read for now
    wait_for(lambda: any(c["cmd"] == "get" and int(c["obl"]) > LIMIT
                         for c in bystander.client_list()),
             what="the 40 GETs answered into the hog's output buffer")

    # More requests from the hog now stay in its socket: each bystander round
    # trip is a loop pass that would have read and counted them.
    before = _commands_processed(bystander)
    hog.sendall(b"GET big\r\n" * 5)
    for _ in range(5):
        assert bystander.ping()
        assert bystander.get(b"big") == VALUE
    assert _commands_processed(bystander) - before == 1 + 10  # the first INFO, ours

    # Reading resumes the hog: all 45 replies arrive whole and in order.
    replies = _read_replies(hog, 45)
    assert replies == [VALUE] * 45
    hog.sendall(b"PING\r\n")
    assert _read_replies(hog, 1) == [b"PONG"]
    hog.close()
    assert bystander.get(b"big") == VALUE
