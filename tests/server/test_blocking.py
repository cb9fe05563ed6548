"""Blocking pops against real daemons: scenarios of several clients blocked on several
keys, byte for byte against redis-server in both protocols (who is served, in what order,
with what reply), and what only kvd can be asked: the drain, a client that disconnects
while it waits, held pipelined requests, CLIENT UNBLOCK, INFO and CLIENT LIST.

A test knows a client is blocked when the server says so (INFO blocked_clients), never
by sleeping."""

from __future__ import annotations

import signal

import pytest
import redis

from tests.kvd_process import RawConnection, wait_for


def blocked_clients(address) -> int:
    client = redis.Redis(unix_socket_path=address) if isinstance(address, str) \
        else redis.Redis(host=address[0], port=address[1])
    try:
        return client.info("clients")["blocked_clients"]
    finally:
        client.close()


# A scenario: (client, command) steps; "B" after a command: it blocks (wait until the
# server counts it), and its reply is read when the step ("read", client) comes.
SCENARIOS = {
    "fifo-across-keys": [
        (1, (b"BLPOP", b"a", b"b", b"0"), "B"), (2, (b"BRPOP", b"b", b"a", b"0"), "B"),
        (3, (b"BLPOP", b"a", b"0"), "B"), (0, (b"RPUSH", b"a", b"1", b"2")), ("read", 1),
        ("read", 2), (0, (b"RPUSH", b"b", b"3")), (0, (b"LPUSH", b"a", b"4")), ("read", 3),
        (0, (b"LRANGE", b"b", b"0", b"-1")), (0, (b"EXISTS", b"a")),
    ],
    "push-in-multi-serves-after-exec": [
        (1, (b"BLPOP", b"q", b"0"), "B"), (0, (b"MULTI",)), (0, (b"RPUSH", b"q", b"a")),
        (0, (b"RPUSH", b"q", b"b")), (0, (b"LLEN", b"q")), (0, (b"EXEC",)), ("read", 1),
        (0, (b"LRANGE", b"q", b"0", b"-1")),
    ],
    "blocking-inside-multi-and-scripts-does-not-wait": [
        (0, (b"MULTI",)), (0, (b"BLPOP", b"none", b"0")), (0, (b"BLMOVE", b"none", b"x",
                                                                 b"LEFT", b"LEFT", b"0")),
        (0, (b"BLMPOP", b"0", b"1", b"none", b"LEFT")), (0, (b"EXEC",)),
        (0, (b"EVAL", b"return redis.call('BRPOP', 'none', 0)", b"0")),
    ],
    "blmove-chain": [
        (1, (b"BLMOVE", b"k1", b"k2", b"LEFT", b"RIGHT", b"0"), "B"),
        (2, (b"BLPOP", b"k2", b"0"), "B"), (0, (b"RPUSH", b"k1", b"x", b"y")), ("read", 1),
        ("read", 2), (0, (b"LRANGE", b"k1", b"0", b"-1")), (0, (b"EXISTS", b"k2")),
    ],
    "blmove-to-a-destination-of-another-type": [
        (0, (b"SET", b"dst", b"v")), (1, (b"BRPOPLPUSH", b"src", b"dst", b"0"), "B"),
        (0, (b"RPUSH", b"src", b"a", b"b")), ("read", 1), (0, (b"LRANGE", b"src", b"0", b"-1")),
        (0, (b"SET", b"src", b"now a string")), (0, (b"BLMOVE", b"src", b"x", b"LEFT", b"LEFT",
                                                     b"0")),
    ],
    "blmpop-count-and-wrongtype": [
        (0, (b"SET", b"str", b"v")), (0, (b"BLPOP", b"str", b"0")),
        (0, (b"BLMPOP", b"0", b"2", b"nope", b"str", b"LEFT")),
        (1, (b"BLMPOP", b"0", b"2", b"m1", b"m2", b"RIGHT", b"COUNT", b"2"), "B"),
        (0, (b"RPUSH", b"m2", b"a", b"b", b"c")), ("read", 1),
        (0, (b"BLPOP", b"m2", b"x")), (0, (b"BLPOP", b"m2", b"-1")),
        (0, (b"BLMPOP", b"0", b"0", b"m2", b"LEFT")),
    ],
    "timeouts": [
        (1, (b"BLPOP", b"t", b"0.05"), "B"), ("read", 1),
        (2, (b"BLMOVE", b"t", b"u", b"RIGHT", b"LEFT", b"0.05"), "B"), ("read", 2),
        (3, (b"BLMPOP", b"0.05", b"1", b"t", b"LEFT"), "B"), ("read", 3),
    ],
    "client-unblock": [
        (1, (b"CLIENT", b"ID")), (1, (b"BLPOP", b"u", b"0"), "B"),
        (0, (b"CLIENT", b"UNBLOCK", b"<1>", b"TIMEOUT")), ("read", 1),
        (1, (b"BLPOP", b"u", b"0"), "B"), (0, (b"CLIENT", b"UNBLOCK", b"<1>", b"ERROR")),
        ("read", 1), (0, (b"CLIENT", b"UNBLOCK", b"<1>")),
        (0, (b"CLIENT", b"UNBLOCK", b"<1>", b"NOPE")), (0, (b"CLIENT", b"UNBLOCK", b"x")),
    ],
}


def play(address, protocol: int, steps: list) -> list[bytes]:
    clients = [RawConnection(address, protocol) for _ in range(4)]
    seen: list[bytes] = []
    ids: dict[int, bytes] = {}
    try:
        clients[0].call(b"FLUSHALL")
        for step in steps:
            if step[0] == "read":
                seen.append(clients[step[1]].read())
                continue
            who, command = step[0], tuple(ids.get(1, a) if a == b"<1>" else a
                                          for a in step[1])
            if len(step) > 2:  # it blocks: sent, and counted by the server before going on
                before = blocked_clients(address)
                clients[who].send(*command)
                wait_for(lambda: blocked_clients(address) > before, 10, f"{command} to block")
                continue
            reply = clients[who].call(*command)
            if command == (b"CLIENT", b"ID"):
                ids[who] = reply[1:-2]
                continue
            seen.append(reply)
    finally:
        for client in clients:
            client.close()
    return seen


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_blocking_scenarios_byte_for_byte(pair, protocol, scenario):
    kvd, reference = pair
    steps = SCENARIOS[scenario]
    assert play(kvd.socket, protocol, steps) == play(("127.0.0.1", reference.port), protocol,
                                                     steps)


def test_a_blocked_client_shows_and_holds_its_pipelined_requests(kvd):
    waiter, other = RawConnection(kvd.socket, 2), kvd.client(protocol=2)
    waiter.sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n"
                        b"*2\r\n$4\r\nLLEN\r\n$1\r\nq\r\n*1\r\n$4\r\nPING\r\n")
    wait_for(lambda: other.info("clients")["blocked_clients"] == 1, 10, "BLPOP to block")
    [listed] = [c for c in other.client_list() if c["cmd"] == "blpop"]
    assert listed["flags"] == "b"
    other.rpush("q", "job", "next")
    assert waiter.read() == b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n"
    assert waiter.read() == b":1\r\n"  # LLEN ran after the pop, not while it waited
    assert waiter.read() == b"+PONG\r\n"
    assert other.info("clients")["blocked_clients"] == 0


def test_a_client_that_disconnects_while_blocked_takes_nothing(kvd):
    gone, stays = RawConnection(kvd.socket, 2), RawConnection(kvd.socket, 2)
    other = kvd.client(protocol=2)
    gone.send(b"BLPOP", b"q", b"0")
    wait_for(lambda: other.info("clients")["blocked_clients"] == 1, 10, "first to block")
    stays.send(b"BLPOP", b"q", b"0")
    wait_for(lambda: other.info("clients")["blocked_clients"] == 2, 10, "second to block")
    gone.close()
    wait_for(lambda: other.info("clients")["blocked_clients"] == 1, 10, "the close to count")
    other.rpush("q", "job")
    assert stays.read() == b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n"
    gone_again = RawConnection(kvd.socket, 2)
    gone_again.send(b"BLPOP", b"q", b"0")
    wait_for(lambda: other.info("clients")["blocked_clients"] == 1, 10, "third to block")
    gone_again.close()
    wait_for(lambda: other.info("clients")["blocked_clients"] == 0, 10, "the close to count")
    other.rpush("q", "kept")
    assert other.lrange("q", 0, -1) == [b"kept"]  # no one took it


def test_the_drain_answers_blocked_clients_and_goes_on(make_daemon):
    server = make_daemon()
    waiter, other = RawConnection(server.socket, 2), server.client(protocol=2)
    waiter.send(b"BLPOP", b"q", b"0")
    moving = RawConnection(server.socket, 3)
    moving.send(b"BLMOVE", b"q", b"r", b"LEFT", b"LEFT", b"0")
    wait_for(lambda: other.info("clients")["blocked_clients"] == 2, 10, "both to block")
    other.close()
    server.signal(signal.SIGTERM)
    assert waiter.read() == b"*-1\r\n" and moving.read() == b"_\r\n"
    server.wait_exit(30)


def test_the_idle_timeout_spares_a_blocked_client(make_daemon):
    server = make_daemon("--client-timeout", "1")
    waiter, other = RawConnection(server.socket, 2), server.client(protocol=2)
    waiter.send(b"BLPOP", b"q", b"1.6")
    assert waiter.read() == b"*-1\r\n"  # its own timeout, not the idle one (1 s)
    assert other.ping()
