"""Output backpressure: a client that sends requests but does not read its
replies stops being read from once more than --max-output-buffer is owed to
it; it is served again, completely and in order, once it reads; and nobody
else waits meanwhile."""

from __future__ import annotations

import hiredis
import pytest

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
    # The GETs run until the replies owed pass the cap; the others wait, read but not run.
    wait_for(lambda: any(c["cmd"] == "get" and int(c["obl"]) > 0 and int(c["qbuf"]) > 0
                         for c in bystander.client_list()),
             what="the hog's output buffer full and the rest of its GETs kept back")

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


# -- the cap holds within one read ------------------------------------------------------

def test_one_read_of_gets_runs_only_until_the_cap_then_the_rest_waits(tmp_path):
    """In-process: 40 GETs of 256 KiB arrive in one read; only those whose replies fit
    under the 1 MiB cap (and the one that passes it) run, the rest is handed back."""
    from tests.server.test_commands_inprocess import Harness

    h = Harness(str(tmp_path / "data"), max_output_buffer=LIMIT)
    h("SET", "big", VALUE)
    conn = h.conn
    rest = h.gate.run(conn, [[b"GET", b"big"]] * 40)
    ran = len(conn.replies)
    assert 0 < ran < 40 and len(rest) == 40 - ran
    assert sum(map(len, conn.replies[:-1])) <= LIMIT  # all but the one that passed the cap
    conn.replies.clear()  # the client read them: the rest runs, as far as the cap allows
    while rest:
        rest = h.gate.run(conn, rest)
        assert all(reply == b"$%d\r\n%s\r\n" % (len(VALUE), VALUE) for reply in conn.replies)
        conn.replies.clear()
    # The slow path too: GETRANGE is no GET run.
    rest = h.gate.run(conn, [[b"GETRANGE", b"big", b"0", b"-1"]] * 10 + [[b"PING"]])
    assert len(conn.replies) + len(rest) == 11 and rest[-1] == [b"PING"]
    assert sum(map(len, conn.replies[:-1])) <= LIMIT < sum(map(len, conn.replies))
    conn.replies.clear()
    # QUIT still ends a read: what follows it is dropped, not kept.
    assert h.gate.run(conn, [[b"PING"], [b"QUIT"], [b"GET", b"big"]]) == []


def _peak_rss_growth(pid: int, action) -> int:
    """Bytes the process's peak resident memory grew by while `action` ran (the kernel's
    VmHWM, reset first)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current size

    def field(name: str) -> int:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {name} in /proc/{pid}/status")

    before = field("VmRSS")
    action()
    return field("VmHWM") - before


@pytest.mark.slow
def test_many_gets_of_a_large_value_in_one_write_take_one_buffer_of_memory(make_daemon):
    kvd = make_daemon()  # the default cap, 8 MiB
    value = bytes(range(256)) * 4096  # 1 MiB
    kvd.client().set(b"big", value)
    hog = kvd.raw(timeout=60)
    count = 500  # 500 MiB of replies: all of it in memory at once without the cap

    def ask_and_read() -> None:
        hog.sendall(b"GET big\r\n" * count)  # 4.5 KB: one read for the daemon
        assert _read_replies(hog, count) == [value] * count

    growth = _peak_rss_growth(kvd.pid, ask_and_read)
    assert growth < 96 << 20, f"the daemon's peak memory grew by {growth >> 20} MiB"
    assert kvd.client().ping()


@pytest.mark.slow
@pytest.mark.slow
def test_gets_of_a_value_larger_than_memory_allows_do_not_take_the_daemon_down(make_daemon):
    import resource

    kvd = make_daemon()
    value = b"x" * (32 << 20)
    kvd.client().set(b"huge", value)
    with open(f"/proc/{kvd.pid}/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = size + (768 << 20)  # room for a few copies of the value, not for 64 of them
    resource.prlimit(kvd.pid, resource.RLIMIT_AS, (limit, limit))
    hog = kvd.raw(timeout=120)
    hog.sendall(b"GET huge\r\n" * 64)  # 2 GiB of replies
    replies = _read_replies(hog, 64)
    assert all(reply == value for reply in replies)
    assert kvd.alive() and kvd.client().ping()
