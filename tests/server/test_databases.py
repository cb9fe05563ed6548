"""Sixteen databases, as Redis: SELECT and redis://host/N URLs, MOVE, SWAPDB, FLUSHDB,
FLUSHALL, DBSIZE and INFO keyspace per database -- against real daemons, across
restarts, SIGKILL and compaction."""

from __future__ import annotations

import signal

import pytest
import redis

from server.protocol import encode_request
from tests.kvd_process import read_until, run_kvctl, wait_for


def in_db(server, db: int) -> redis.Redis:
    """A redis-py client from a redis:// URL naming the database, as Celery and RQ use."""
    return redis.from_url(f"unix://{server.socket}?db={db}", socket_timeout=20, protocol=2)


@pytest.mark.slow
def test_each_database_has_its_own_keys_and_they_survive_a_sigkill(make_daemon):
    server = make_daemon()
    zero, one, three = in_db(server, 0), in_db(server, 1), in_db(server, 3)
    zero.set("shared-name", "in 0")
    one.set("shared-name", "in 1")
    one.set("session", "s", ex=3600)
    three.mset({f"job:{i}": i for i in range(100)})
    assert zero.get("shared-name") == b"in 0" and one.get("shared-name") == b"in 1"
    assert (zero.dbsize(), one.dbsize(), three.dbsize()) == (1, 2, 100)
    keyspace = zero.info("keyspace")
    assert keyspace["db1"] == {"keys": 2, "expires": 1, "avg_ttl": keyspace["db1"]["avg_ttl"]}
    assert keyspace["db3"]["keys"] == 100 and "db2" not in keyspace
    assert one.client_info()["db"] == 1
    server.signal(signal.SIGKILL)  # every reply above was acknowledged: all of it is on disk
    server.wait_exit()
    server.start()
    zero, one, three = in_db(server, 0), in_db(server, 1), in_db(server, 3)
    assert zero.get("shared-name") == b"in 0" and one.get("shared-name") == b"in 1"
    assert 0 < one.ttl("session") <= 3600 and three.get("job:42") == b"42"
    assert (zero.dbsize(), one.dbsize(), three.dbsize()) == (1, 2, 100)
    for client in (zero, one, three):
        client.close()


@pytest.mark.slow
def test_flushdb_swapdb_flushall_and_move_last_across_a_restart(make_daemon):
    server = make_daemon()
    zero, one, two = in_db(server, 0), in_db(server, 1), in_db(server, 2)
    zero.mset({"a": "0a", "b": "0b"})
    one.mset({"a": "1a", "c": "1c"})
    two.set("t", "moved", ex=1000)
    assert two.move("t", 0) and zero.ttl("t") > 900 and not two.exists("t")
    with pytest.raises(redis.ResponseError, match="source and destination objects are the same"):
        zero.move("t", 0)
    assert zero.move("a", 1) is False  # already there: nothing moves
    assert zero.swapdb(0, 1)
    assert zero.get("a") == b"1a" and one.get("t") == b"moved"
    assert one.flushdb()
    assert one.dbsize() == 0 and zero.dbsize() == 2
    server.stop()
    server.start()
    zero, one = in_db(server, 0), in_db(server, 1)
    assert sorted(zero.keys()) == [b"a", b"c"] and one.dbsize() == 0
    assert zero.flushall() and zero.dbsize() == 0
    server.signal(signal.SIGKILL)
    server.wait_exit()
    server.start()
    assert in_db(server, 0).dbsize() == 0 and in_db(server, 1).dbsize() == 0


def test_select_inside_multi_and_inside_a_script(make_daemon):
    server = make_daemon()
    client = server.client(protocol=2)
    with client.pipeline(transaction=True) as pipe:
        pipe.set("k", "in 0").execute_command("SELECT", 5).set("k", "in 5")
        assert pipe.execute() == [True, True, True]
    raw = server.raw()
    raw.sendall(b"".join(encode_request(*request) for request in (
        [b"SET", b"x", b"1"], [b"EVAL", b"redis.call('SELECT', 2) return 'done'", b"0"],
        [b"DBSIZE"])))
    received = b""
    while received.count(b"\r\n") < 4:
        chunk = raw.recv(100)
        assert chunk, f"closed after {received!r}"
        received += chunk
    assert received == b"+OK\r\n$4\r\ndone\r\n:2\r\n"  # still database 0: k and x
    raw.close()
    assert in_db(server, 5).get("k") == b"in 5" and in_db(server, 0).get("k") == b"in 0"
    client.eval("redis.call('SELECT', 2) redis.call('SET', KEYS[1], 'by a script')", 1, "s")
    assert in_db(server, 2).get("s") == b"by a script" and in_db(server, 0).get("s") is None


def test_watch_sees_a_swap_and_a_flush_of_its_database(make_daemon):
    server = make_daemon()
    one = in_db(server, 1)
    one.set("w", "1")
    for change in (lambda c: c.swapdb(1, 4), lambda c: c.flushdb()):
        with one.pipeline(transaction=True) as pipe:
            pipe.watch("w")
            change(in_db(server, 1))
            pipe.multi()
            pipe.get("w")
            with pytest.raises(redis.WatchError):
                pipe.execute()
        one.set("w", "1")


def test_active_expiry_reaches_every_database(make_daemon):
    server = make_daemon()
    three = in_db(server, 3)
    three.set("short", "v", px=100)
    three.set("kept", "v")
    wait_for(lambda: three.dbsize() == 1, 10, "the key in database 3 to expire unread")
    assert three.info("stats")["expired_keys"] == 1


def test_monitor_and_client_list_show_the_database(make_daemon):
    server = make_daemon()
    watcher = server.raw()
    watcher.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
    assert watcher.recv(5) == b"+OK\r\n"
    client = in_db(server, 7)
    client.ping()
    seen = read_until(watcher, b'"PING"')
    assert b' [7 unix:' in seen.split(b'"PING"')[0].rsplit(b"\r\n", 1)[-1]
    assert any(entry["db"] == "7" for entry in client.client_list())
    watcher.close()


def test_the_number_of_databases_is_an_option(make_daemon):
    server = make_daemon("--databases", "4")
    client = server.client(protocol=2)
    assert client.config_get("databases") == {"databases": "4"}
    client.execute_command("SELECT", 3)
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        client.execute_command("SELECT", 4)
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        client.swapdb(0, 4)


def test_kvctl_works_in_the_database_it_is_given(make_daemon):
    server = make_daemon()
    assert run_kvctl(["--db", "2", "put", "greeting", "hello"], server.dir).returncode == 0
    got = run_kvctl(["-n", "2", "get", "greeting"], server.dir)
    assert got.returncode == 0 and got.stdout == b"hello"
    assert run_kvctl(["get", "greeting"], server.dir).returncode == 1  # not in database 0
    listed = run_kvctl(["keys"], server.dir, env={"KVD_DB": "2"})
    assert listed.stdout == b"greeting\n"


@pytest.mark.slow
def test_compaction_keeps_every_databases_keys(make_daemon):
    server = make_daemon()
    for db in range(3):
        client = in_db(server, db)
        for round_ in range(3):
            client.mset({f"k{i}": f"{db}:{round_}:{i}" for i in range(300)})
    in_db(server, 1).flushdb()
    done = run_kvctl(["compact", "--wait"], server.dir)
    assert done.returncode == 0, done.stderr
    server.stop()
    server.start()
    assert in_db(server, 0).get("k7") == b"0:2:7" and in_db(server, 2).get("k7") == b"2:2:7"
    assert in_db(server, 1).dbsize() == 0
