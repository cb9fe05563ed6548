"""Keyspace notifications against real daemons: every command family's events, in order,
byte for byte against redis-server (the `__keyspace@` and `__keyevent@` messages a
pattern subscriber receives), "new" and "keymiss", "expired" from lazy and active
expiry, the setting's text, and that nothing is published while it is off."""

from __future__ import annotations

import time

import pytest
import redis

from tests.kvd_process import RawConnection

# Each family's commands; the "del" of a key left empty, the "expire" of SET EX and the
# store commands that delete their destination are part of what is compared.
SCRIPT = [
    # strings
    "SET a 1", "SET a 2 EX 100", "SETNX b 1", "SETNX b 2", "GETSET b 2", "GETDEL b",
    "GETDEL b", "MSET c 1 d 2", "MSETNX e 1 c 2", "MSETNX e 1", "APPEND a x", "INCR n",
    "DECRBY n 5", "INCRBYFLOAT f 1.5", "SETRANGE a 0 zz", "SETEX ex 100 v", "PSETEX px 1000 v",
    "SETBIT bits 3 1", "SETBIT bits 3 1", "BITFIELD bf SET u8 0 5", "BITOP OR dest a c",
    "BITOP AND dest nokey", "GETEX a PERSIST", "GETEX c EX 100", "GETEX c PXAT 1",
    # generic
    "EXPIRE d 100", "EXPIRE d 100 NX", "PERSIST d", "PERSIST d", "EXPIRE d 0", "SET d 1",
    "PEXPIREAT d 1", "RENAME a a2", "RENAMENX a2 n", "COPY a2 a3", "COPY a2 a3 REPLACE",
    "MOVE a3 1", "DEL a2 nokey e", "UNLINK n f",
    # hashes
    "HSET h f 1 g 2", "HSET h f 1", "HSETNX h f 3", "HSETNX h z 3", "HINCRBY h f 2",
    "HINCRBYFLOAT h g 0.5", "HDEL h nofield", "HDEL h f g", "HDEL h z", "HMSET h2 a 1",
    # lists
    "LPUSH l a b c", "RPUSH l d", "LPUSHX nol x", "RPUSHX l e", "LSET l 0 q",
    "LINSERT l BEFORE q p", "LINSERT l BEFORE nothere p", "LREM l 1 p", "LTRIM l 0 2",
    "LPOP l", "RPOP l 5", "RPUSH l2 x y", "LMOVE l2 l3 LEFT RIGHT", "RPOPLPUSH l2 l3",
    "LMOVE l3 l3 LEFT RIGHT", "LMPOP 1 l3 LEFT COUNT 5", "RPUSH l4 a b", "BLPOP l4 0",
    "BRPOP l4 0", "RPUSH l5 a", "LTRIM l5 5 10", "RPUSH l6 a b", "BLMOVE l6 l7 LEFT LEFT 0",
    "LREM l6 0 b",
    # sets
    "SADD s a b c", "SADD s a", "SREM s a", "SMOVE s s2 b", "SMOVE s s2 c", "SPOP s",
    "SADD s3 1 2", "SPOP s3 1", "SPOP s3 5", "SADD x1 a b", "SADD x2 b c",
    "SINTERSTORE si x1 x2", "SUNIONSTORE su x1 x2", "SDIFFSTORE sd x1 x1",
    "SDIFFSTORE su x1 x1", "SINTERSTORE si x1 nokey",
    # sorted sets
    "ZADD z 1 a 2 b", "ZADD z 1 a", "ZINCRBY z 1 a", "ZADD z INCR 1 b", "ZREM z a",
    "ZADD z 3 c 4 d 5 e", "ZREMRANGEBYSCORE z 3 3", "ZREMRANGEBYRANK z 0 0",
    "ZREMRANGEBYLEX z - +", "ZADD z2 1 a 2 b 3 c", "ZPOPMIN z2", "ZPOPMAX z2 5",
    "ZADD z3 1 a", "ZADD z4 2 b", "ZUNIONSTORE zu 2 z3 z4", "ZINTERSTORE zi 2 z3 z4",
    "ZDIFFSTORE zu 1 nokey", "ZRANGESTORE zr z3 0 -1", "ZRANGESTORE zr nokey 0 -1",
    "ZMPOP 1 z3 MIN", "BZPOPMIN z4 0", "ZADD z5 1 a 2 b", "BZMPOP 0 1 z5 MAX COUNT 1",
    # streams, SORT, RESTORE
    "XADD st 1-1 f v", "XADD st MAXLEN 1 2-1 f v", "XDEL st 9-9", "XDEL st 2-1",
    "XADD st 3-1 f v", "XTRIM st MAXLEN 0", "RPUSH sl 3 1 2", "SORT sl STORE slo",
    "SORT nokey STORE slo", "SET r 1", "RESTORE r2 0 {dump r}", "RESTORE r2 0 {dump r} REPLACE",
    # none: reads, FLUSHDB
    "GET c", "HGETALL h2", "LRANGE l 0 -1", "FLUSHDB",
]
# "new" and "keymiss" (classes outside A), over commands that add keys and miss them
NEW_AND_MISSES = [
    "SET a 1", "SET a 2", "GET nokey", "MGET a nokey2", "HSET h f v", "HGET nokey f",
    "RPUSH l x", "LRANGE nol 0 -1", "EXISTS nokey", "TYPE nokey", "RENAME a b", "COPY b c",
    "SET d 1", "COPY b d REPLACE", "SADD s a", "SINTERSTORE s2 s", "SINTERSTORE s2 s",
    "ZUNIONSTORE z 1 nokey", "LMOVE l l2 LEFT LEFT", "FLUSHDB",
]
DONE = "__done__"


def events_of(client: redis.Redis, classes: str, script: list[str]) -> list[tuple]:
    """Run `script` with notify-keyspace-events `classes`; every notification message a
    pattern subscriber received, in order."""
    client.flushall()
    client.config_set("notify-keyspace-events", classes)
    listener = client.pubsub()
    listener.psubscribe("__key*__:*")
    listener.subscribe(DONE)
    try:
        for _ in range(2):  # the two confirmations
            assert listener.get_message(timeout=10) is not None
        for line in script:
            args: list = line.split()
            if args[-1] == "{dump" or "{dump" in args:
                at = args.index("{dump")
                args[at:at + 2] = [client.dump(args[at + 1].rstrip("}"))]
            try:
                client.execute_command(*args)
            except redis.ResponseError as exc:
                pytest.fail(f"{line}: {exc}")
        client.publish(DONE, "x")
        seen = []
        while True:
            message = listener.get_message(timeout=10)
            assert message is not None, "the subscriber's messages stopped before the end"
            if message["channel"] == DONE.encode():
                return seen
            seen.append((message["channel"], message["data"]))
    finally:
        client.config_set("notify-keyspace-events", "")
        listener.close()


@pytest.mark.parametrize("classes,script", [("KEA", SCRIPT), ("KEnm", NEW_AND_MISSES),
                                            ("Elshz", SCRIPT[38:])],
                         ids=["every-family", "new-and-keymiss", "some-classes"])
def test_events_as_redis_sends_them(pair, classes, script):
    kvd, reference = pair
    expected = events_of(reference.client(), classes, script)
    assert expected, "the reference sent nothing: the script tests nothing"
    assert events_of(kvd.client(protocol=2), classes, script) == expected


def test_setting_text_and_refusals(pair):
    kvd, reference = pair
    shown = {}
    for name, client in (("kvd", kvd.client(protocol=2)), ("redis", reference.client())):
        shown[name] = []
        for classes in ("gKE", "$lshzxeKE", "KA", "EA", "AKEnm", "Ex$", "Kn", ""):
            client.config_set("notify-keyspace-events", classes)
            shown[name].append(
                client.config_get("notify-keyspace-events")["notify-keyspace-events"])
        with pytest.raises(redis.ResponseError) as refused:
            client.config_set("notify-keyspace-events", "KEQ")
        shown[name].append(str(refused.value))
    assert shown["kvd"] == shown["redis"]
    assert shown["kvd"][:5] == ["gKE", "$lshzxeKE", "AK", "AE", "AKEm"]  # (Redis's text)


def test_off_by_default_sends_nothing(kvd):
    client = kvd.client(protocol=2)
    listener = client.pubsub()
    listener.psubscribe("*")
    assert listener.get_message(timeout=10)["type"] == "psubscribe"
    client.set("a", "1")
    client.hset("h", "f", "v")
    client.delete("a", "h")
    client.publish("marker", "x")
    message = listener.get_message(timeout=10)
    assert (message["channel"], message["data"]) == (b"marker", b"x")
    listener.close()


def test_expired_from_lazy_and_active_expiry(make_daemon):
    kvd = make_daemon("--notify-keyspace-events", "Ex")
    client = kvd.client(protocol=2)
    listener = client.pubsub()
    listener.subscribe("__keyevent@0__:expired")
    assert listener.get_message(timeout=10)["type"] == "subscribe"
    client.set("lazy", "1", px=1)
    client.hset("active", "f", "v")
    client.pexpire("active", 50)
    time.sleep(0.01)  # (past the first deadline: the GET below finds it expired)
    assert client.get("lazy") is None
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        message = listener.get_message(timeout=1)
        if message is not None:
            got.append(message["data"])
    assert got == [b"lazy", b"active"]  # the second found by the active cycle
    assert client.info("stats")["expired_keys"] == 2
    listener.close()


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_a_subscriber_sees_its_own_commands_events(pair, protocol):
    """In RESP3 one connection subscribes and writes: the push of a command's event comes
    before the command's reply, as Redis sends it; in RESP2 the write is refused."""
    kvd, reference = pair
    seen = []
    for address in (kvd.socket, ("127.0.0.1", reference.port)):
        connection = RawConnection(address, protocol)
        try:
            connection.call(b"CONFIG", b"SET", b"notify-keyspace-events", b"KA")
            connection.call(b"SUBSCRIBE", b"__keyspace@0__:k")
            expect = 2 if protocol == 3 else 1
            seen.append([connection.call(b"SET", b"k", b"v", expect=expect),
                         connection.call(b"RPUSH", b"k", b"x", expect=1),
                         connection.call(b"DEL", b"k", expect=expect)])
        finally:
            connection.close()
    kvd.client(protocol=2).config_set("notify-keyspace-events", "")
    reference.client().config_set("notify-keyspace-events", "")
    assert seen[0] == seen[1]
