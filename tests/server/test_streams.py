"""Streams (the part job queues use) against real daemons: replies byte for byte against
redis-server in both protocols, and that a stream survives SIGKILL, restart and
compaction on both engines."""

from __future__ import annotations

import pytest
import redis

from tests.kvd_process import (
    RawConnection,
    check_through_kill_compaction_and_restart,
    kvd_beside_redis,
)

COMMANDS = [line.split() for line in """
xadd s 1-1 a 1
xadd s 1-1 a 1
xadd s 0-0 a 1
xadd s 1-* b 2
xadd s 2 c 3
xadd s 3-0 d
xadd s bad a 1
xadd s maxlen 2 4-0 e 5
xlen s
xrange s - +
xrange s - + count 1
xrevrange s + - count 1
xrange s (3-0 +
xrange s - (3-0
xdel s 3-0 99-0
xtrim s maxlen 0
exists s
xadd s 5-0 f 6
xadd s nomkstream 6-0 x y
xadd nope nomkstream * x y
xtrim s minid 6-0
xtrim s
xtrim s maxlen 1 limit 10
xadd s maxlen ~ 0 limit 5 7-0 a b
type s
object encoding s
set str v
xadd str * a b
xrange s x +
xadd t maxlen -1 * a b
xadd t maxlen 1 minid 1 * a b
""".strip().splitlines()] + [
    ["xadd", "big", "maxlen", "~", "10", f"{i}-0", "f", "v"] for i in range(1, 151)] + [
    ["xlen", "big"], ["xtrim", "big", "minid", "~", "140"], ["xrange", "big", "-", "+",
                                                             "count", "2"]]


def replies(address, protocol: int) -> list[bytes]:
    peer = RawConnection(address, protocol)
    try:
        peer.call(b"FLUSHALL")
        return [peer.call(*[word.encode() for word in command]) for command in COMMANDS]
    finally:
        peer.sock.close()


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_streams_byte_for_byte(tmp_path, protocol):
    with kvd_beside_redis(tmp_path, tcp=True) as (kvd, reference):
        assert replies(kvd.socket, protocol) == replies(("127.0.0.1", reference.port),
                                                        protocol)


def test_auto_ids_grow_after_deletes(kvd):
    client = kvd.client(protocol=2)
    first = client.xadd("s", {"a": "1"})
    client.xdel("s", first)
    second = client.xadd("s", {"a": "2"})
    assert second > first and client.xlen("s") == 1


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_streams_survive_sigkill_restart_and_compaction(make_daemon, engine):
    server = make_daemon("--engine", engine)
    client = server.client(protocol=2)
    for i in range(1, 301):  # past 128 entries: one record per entry
        client.xadd("events", {"n": str(i)}, id=f"{i}-0")
    client.xdel("events", "5-0")
    client.xtrim("events", minid="10-0", approximate=False)
    client.xadd("small", {"a": "1"}, id="7-7")
    expected = client.xrange("events")

    def check(client: redis.Redis) -> None:
        assert client.xrange("events") == expected and len(expected) == 291
        assert client.xrange("small") == [(b"7-7", {b"a": b"1"})]
        with pytest.raises(redis.ResponseError, match="equal or smaller"):
            client.xadd("events", {"n": "old"}, id="300-0")

    check_through_kill_compaction_and_restart(server, check)
