"""Pub/sub against real daemons: a subscriber and a publisher, byte for byte against
redis-server in both protocols (confirmations, messages, pattern and shard messages,
RESP2's subscribed mode, PUBSUB's introspection, CLIENT LIST), redis-py's PubSub loop,
and what happens to a subscriber that disconnects or stops reading."""

from __future__ import annotations

import socket
import threading
import time

import hiredis
import pytest
import redis

from tests.kvd_process import RawConnection, wait_for

STEPS = [  # (who, command, replies expected: the subscriber's confirmations are several)
    ("sub", (b"SUBSCRIBE", b"a", b"b"), 2), ("sub", (b"PSUBSCRIBE", b"n*"), 1),
    ("sub", (b"SSUBSCRIBE", b"s1"), 1), ("sub", (b"PING",), 1), ("sub", (b"PING", b"x"), 1),
    ("sub", (b"GET", b"k"), 1), ("pub", (b"PUBLISH", b"a", b"hi"), 1), ("read", 1),
    ("pub", (b"PUBLISH", b"news", b"x"), 1), ("read", 1),
    ("pub", (b"SPUBLISH", b"s1", b"y"), 1), ("read", 1), ("pub", (b"PUBLISH", b"zz", b"no"), 1),
    ("pub", (b"PUBSUB", b"CHANNELS"), 1), ("pub", (b"PUBSUB", b"NUMSUB", b"a", b"zz"), 1),
    ("pub", (b"PUBSUB", b"NUMPAT"), 1), ("pub", (b"PUBSUB", b"SHARDNUMSUB", b"s1"), 1),
    ("sub", (b"UNSUBSCRIBE", b"a"), 1), ("sub", (b"PUNSUBSCRIBE",), 1),
    ("sub", (b"SUNSUBSCRIBE",), 1), ("sub", (b"UNSUBSCRIBE",), 1), ("sub", (b"UNSUBSCRIBE",), 1),
    ("sub", (b"PING",), 1), ("sub", (b"GET", b"k"), 1),
]


def play(address, protocol: int) -> list[bytes]:
    peers = {"sub": RawConnection(address, protocol), "pub": RawConnection(address, protocol)}
    seen = []
    try:
        peers["pub"].call(b"FLUSHALL")
        for who, *rest in STEPS:
            if who == "read":
                seen.append(peers["sub"].read(rest[0]))
            elif rest[0][:2] == (b"PUBSUB", b"CHANNELS"):  # (in a hashtable's order)
                reader = hiredis.Reader()
                reader.feed(peers[who].call(*rest[0]))
                seen.append(repr(sorted(reader.gets())).encode())
            else:
                seen.append(peers[who].call(*rest[0], expect=rest[1]))
        listing = peers["pub"].call(b"CLIENT", b"LIST")
        seen.append(b" ".join(sorted(word for word in listing.split()
                                     if word.startswith((b"flags=", b"sub=", b"psub=", b"ssub=")))))
    finally:
        for peer in peers.values():
            peer.sock.close()
    return seen


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_pubsub_byte_for_byte(pair, protocol):
    kvd, reference = pair
    assert play(kvd.socket, protocol) == play(("127.0.0.1", reference.port), protocol)


def test_redis_py_pubsub_loop(kvd):
    client = kvd.client(decode_responses=True)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("jobs")
    listener.psubscribe("events:*")
    wait_for(lambda: client.pubsub_numsub("jobs") == [("jobs", 1)], 10, "the subscription")
    assert client.publish("jobs", "one") == 1 and client.publish("events:x", "two") == 1
    got = []
    while len(got) < 2:
        message = listener.get_message(timeout=5)
        if message:
            got.append((message["channel"], message["data"]))
    assert got == [("jobs", "one"), ("events:x", "two")]
    assert client.info("stats")["pubsub_channels"] == 1
    listener.close()
    wait_for(lambda: client.pubsub_channels() == [], 10, "the closed subscriber to go")
    assert client.publish("jobs", "nobody") == 0


def flood(publisher, channel: str, megabytes: int) -> None:
    payload = b"x" * 65536
    for _ in range(megabytes * 16):
        if publisher.publish(channel, payload) == 0:
            break


def lazy_subscriber(server, channel: bytes) -> RawConnection:
    lazy = RawConnection(server.socket, 2)
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.call(b"SUBSCRIBE", channel)
    return lazy


def test_a_subscriber_that_stops_reading_is_dropped_at_the_hard_limit(make_daemon):
    server = make_daemon("--client-output-buffer-limit", "pubsub 1mb 0 0")
    lazy, publisher = lazy_subscriber(server, b"firehose"), server.client(protocol=2)
    flood(publisher, "firehose", 13)  # the lazy one never reads them
    wait_for(lambda: publisher.pubsub_numsub("firehose") == [(b"firehose", 0)], 10,
             "the lazy subscriber to be dropped")
    assert "pub/sub client dropped" in server.log() and publisher.ping()
    assert "client-output-buffer-limit pubsub hard limit 1048576" in server.log()
    lazy.close()


@pytest.mark.slow
def test_the_soft_limit_drops_a_subscriber_only_after_its_seconds(make_daemon):
    server = make_daemon("--client-output-buffer-limit", "pubsub 0 512kb 1")
    publisher = server.client(protocol=2)
    assert publisher.config_get("client-output-buffer-limit") == {
        "client-output-buffer-limit":
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 0 524288 1"}
    lazy = lazy_subscriber(server, b"slow")
    flood(publisher, "slow", 2)  # past the soft limit: not yet dropped
    assert publisher.pubsub_numsub("slow") == [(b"slow", 1)]
    began = time.monotonic()
    wait_for(lambda: publisher.publish("slow", "more") == 0, 10,
             "the subscriber to be dropped once past the soft limit for a second")
    assert time.monotonic() - began >= 0.5  # (it lasted, as the limit asks)
    assert "soft limit 524288 for 1 s" in server.log()
    lazy.close()


def test_client_output_buffer_limit_config_as_redis(pair):
    """CONFIG SET merges the classes named into those in force; Redis's errors."""
    kvd, reference = pair
    seen = {}
    for name, client in (("kvd", kvd.client(protocol=2)), ("redis", reference.client())):
        shown = []
        for value in ("pubsub 64mb 16mb 90", "replica 1gb 0 0 normal 1000 2k 5", "",
                      "pubsub 1 2", "bogus 1 2 3", "pubsub x 1 1", "pubsub 1 1 -1",
                      "master 1 1 1", "normal 0 0 0 slave 268435456 67108864 60 "
                      "pubsub 33554432 8388608 60"):
            try:
                client.config_set("client-output-buffer-limit", value)
                shown.append(client.config_get("client-output-buffer-limit"))
            except redis.ResponseError as refused:
                shown.append(str(refused))
        seen[name] = shown
    assert seen["kvd"] == seen["redis"]


def test_client_kill_type_pubsub_closes_subscribers_only(kvd):
    admin = kvd.client(protocol=2)
    subscriber = RawConnection(kvd.socket, 2)
    plain = RawConnection(kvd.socket, 2)
    try:
        subscriber.call(b"SUBSCRIBE", b"ch")
        plain.call(b"PING")
        assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
        assert subscriber.sock.recv(100) == b""  # closed
        assert plain.call(b"PING") == b"+PONG\r\n"
        assert admin.pubsub_numsub("ch") == [(b"ch", 0)]
    finally:
        subscriber.close()
        plain.close()


def test_redis_py_listen_and_run_in_thread(kvd):
    """redis-py's other two ways to consume, with their defaults: the `listen()`
    generator, and a handler per channel on a worker thread (`run_in_thread`)."""
    client = kvd.client(decode_responses=True)
    listener = client.pubsub()
    listener.subscribe("news")
    messages = listener.listen()
    assert next(messages)["type"] == "subscribe"
    client.publish("news", "first")
    assert next(messages)["data"] == "first"
    listener.close()

    received: list[str] = []
    done = threading.Event()

    def handle(message: dict) -> None:
        received.append(message["data"])
        if len(received) == 3:
            done.set()

    threaded = client.pubsub()
    threaded.psubscribe(**{"jobs.*": handle})
    worker = threaded.run_in_thread(sleep_time=0.01, daemon=True)
    try:
        wait_for(lambda: client.pubsub_numpat() == 1, 10, "the pattern subscription")
        for n in range(3):
            client.publish(f"jobs.{n}", f"job {n}")
        assert done.wait(10)
        assert received == ["job 0", "job 1", "job 2"]
    finally:
        worker.stop()
        worker.join(10)
        threaded.close()
