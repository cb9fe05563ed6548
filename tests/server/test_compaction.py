"""Compaction while serving: SIGUSR1 -> forked child (log engine) or slices (sqlite), reaped
through the signal pipe; with real daemons, real signals and SIGKILLs."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from server.compactor import AutoPolicy
from storage import StoreStats
from tests.kvd_process import wait_for, wait_gone
from tests.storage.conftest import disk_usage

SEGMENT = "--segment-size=1000000"


def fill_with_garbage(client: redis.Redis, keys: int = 4000, rounds: int = 8) -> dict:
    """Overwrite `keys` keys `rounds` times, delete a third; return what must be there."""
    expected: dict[bytes, bytes | None] = {}
    for r in range(rounds):
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            key = b"key:%d" % i
            value = b"%d:%d:" % (r, i) + b"x" * 200
            pipe.set(key, value)
            expected[key] = value
        pipe.execute()
    doomed = [b"key:%d" % i for i in range(0, keys, 3)]
    client.delete(*doomed)
    for key in doomed:
        expected[key] = None
    return expected


def check(client: redis.Redis, expected: dict) -> None:
    keys = list(expected)
    assert client.mget(keys) == [expected[k] for k in keys]


def persistence(server) -> dict:
    return server.info("persistence")


def process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


def caught_signals(pid: int) -> int:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines)
    return int(status["SigCgt"], 16) & sum(1 << (s - 1) for s in HANDLED)


def settle(pid: int) -> bool:
    """Let a child stopped within microseconds of its fork run until it has set itself up
    (it resets its signal dispositions last), and stop it again; False if it ended."""
    for _ in range(200):
        if process_state(pid) != "T":
            return False
        if not caught_signals(pid):
            return True
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.001)
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: process_state(pid) in ("T", "Z", "gone"), what="the child to stop")
    return False


def stopped_child(server) -> int:
    """Request a compaction and freeze its child with SIGSTOP; return the child's PID.

    If the child finished before the SIGSTOP landed (a fast machine, a small
    data set), the next compaction is requested and frozen instead.
    """
    for _ in range(5):
        completed = persistence(server)["compactions_completed"]
        server.signal(signal.SIGUSR1)
        pid = wait_for(lambda: persistence(server)["compaction_child_pid"]
                       or persistence(server)["compactions_completed"] > completed,
                       what="the child")
        if pid is True:
            continue
        os.kill(pid, signal.SIGSTOP)
        state = wait_for(lambda: process_state(pid) in ("T", "Z", "gone") and process_state(pid),
                         what="the child to stop")
        if state == "T" and settle(pid):
            return pid
        wait_for(lambda: not persistence(server)["compaction_in_progress"], what="the compaction")
    raise AssertionError("could not catch a compaction child in the act")


@pytest.mark.slow
def test_sigusr1_compacts_in_a_child_while_clients_keep_getting_answers(make_daemon):
    kvd = make_daemon(SEGMENT)
    client = kvd.client()
    expected = fill_with_garbage(client)
    before = disk_usage(kvd.data_dir)
    child = stopped_child(kvd)
    assert child != kvd.pid
    # The child is frozen mid-compaction; the server keeps serving reads and writes.
    assert persistence(kvd)["compaction_in_progress"] == 1
    for i in range(200):
        client.set(b"during:%d" % i, b"v%d" % i)
        expected[b"during:%d" % i] = b"v%d" % i
    client.delete(b"key:1")
    expected[b"key:1"] = None
    check(client, expected)
    os.kill(child, signal.SIGCONT)
    wait_for(lambda: persistence(kvd)["compactions_completed"] == 1, what="the compaction")
    info = persistence(kvd)
    assert info["last_compaction_status"] == "ok"
    assert info["compaction_bytes_done"] == info["compaction_bytes_total"] > 0
    assert info["last_compaction_reclaimed_bytes"] > 0
    assert disk_usage(kvd.data_dir) < before / 3
    check(client, expected)  # writes and deletes made during the compaction won
    assert wait_gone(child, 5)
    kvd.stop()
    kvd.start()
    check(kvd.client(), expected)


def test_a_burst_of_sigusr1_during_a_compaction_causes_exactly_one_more(make_daemon):
    kvd = make_daemon(SEGMENT)
    fill_with_garbage(kvd.client(), keys=1000, rounds=4)
    child = stopped_child(kvd)
    for _ in range(200):
        kvd.signal(signal.SIGUSR1)
    wait_for(lambda: persistence(kvd)["compaction_pending"] == 1, what="the follow-up request")
    for _ in range(3):  # every signal sent above has been read from the pipe after these
        kvd.client().ping()
    os.kill(child, signal.SIGCONT)
    wait_for(lambda: persistence(kvd)["compactions_completed"] == 2, what="two compactions")
    info = persistence(kvd)
    assert info["compactions_started"] == 2
    assert info["compaction_pending"] == 0 and info["compaction_in_progress"] == 0
    assert info["compactions_failed"] == 0


def test_sigkill_of_the_child_is_a_failed_compaction_not_a_server_failure(make_daemon):
    kvd = make_daemon(SEGMENT)
    client = kvd.client()
    expected = fill_with_garbage(client, keys=1000, rounds=4)
    child = stopped_child(kvd)
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: persistence(kvd)["compactions_failed"] == 1, what="the failure")
    info = persistence(kvd)
    assert info["last_compaction_status"] == "failed" and info["compaction_in_progress"] == 0
    assert "killed by signal SIGKILL" in kvd.log()
    assert not os.path.exists(os.path.join(kvd.data_dir, "compaction"))
    check(client, expected)
    kvd.signal(signal.SIGUSR1)  # the next request retries
    wait_for(lambda: persistence(kvd)["compactions_completed"] == 1, what="the retry")
    check(client, expected)


def test_a_signal_sent_to_the_child_never_reaches_the_server(make_daemon):
    kvd = make_daemon(SEGMENT)
    fill_with_garbage(kvd.client(), keys=1000, rounds=4)
    child = stopped_child(kvd)
    requested = persistence(kvd)["compactions_requested"]
    os.kill(child, signal.SIGUSR1)  # default disposition: it ends the child, nothing else
    os.kill(child, signal.SIGCONT)
    wait_for(lambda: persistence(kvd)["compactions_failed"] == 1, what="the child to end")
    info = persistence(kvd)
    assert info["compactions_requested"] == requested  # the loop never saw that SIGUSR1
    assert info["compaction_pending"] == 0
    assert "killed by signal SIGUSR1" in kvd.log()
    assert kvd.client().ping() is True


def test_the_child_starts_from_a_clean_state(make_daemon):
    kvd = make_daemon(SEGMENT, tcp=True)
    fill_with_garbage(kvd.client(), keys=1000, rounds=4)
    child = stopped_child(kvd)  # stopped once it has set itself up
    try:
        for signum in HANDLED:
            assert not caught_signals(child) & (1 << (signum - 1)), f"child catches {signum.name}"
        targets = [os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")]
        # no listener, no client
        assert not [t for t in targets if t.startswith("socket:")], targets
        assert not [t for t in targets if t.endswith(("kvd.pid", "LOCK", "kvd.log"))], targets
        parent_targets = [os.readlink(f"/proc/{kvd.pid}/fd/{fd}")
                          for fd in os.listdir(f"/proc/{kvd.pid}/fd")]
        assert sum(t.startswith("socket:") for t in parent_targets) >= 3
    finally:
        os.kill(child, signal.SIGCONT)
    wait_for(lambda: persistence(kvd)["compactions_completed"] == 1, what="the compaction")


def test_sigterm_during_a_compaction_stops_it_and_exits_cleanly(make_foreground, make_daemon):
    server = make_foreground(SEGMENT)
    expected = fill_with_garbage(server.client(), keys=1000, rounds=4)
    child = stopped_child(server)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert wait_gone(child, 5)
    assert "partial output was removed" in server.log()
    assert not os.path.exists(os.path.join(server.data_dir, "compaction"))
    again = make_daemon(subdir="fg")
    check(again.client(), expected)


def test_the_child_dies_with_a_sigkilled_server(make_daemon):
    # A child outliving its server would keep writing into the data directory
    # that the next server recovers and compacts.
    kvd = make_daemon(SEGMENT)
    expected = fill_with_garbage(kvd.client(), keys=1000, rounds=4)
    child = stopped_child(kvd)
    kvd.kill()
    assert wait_gone(child, 10), "the compaction child outlived the server"
    kvd.close_clients()
    kvd.start()
    check(kvd.client(), expected)
    assert not os.path.exists(os.path.join(kvd.data_dir, "compaction"))


@pytest.mark.slow
def test_sigkill_of_the_server_during_compactions_loses_nothing(make_daemon):
    """Kill the server (never the child by hand) at random moments around compactions."""
    kvd = make_daemon(SEGMENT, start=False)
    rng = random.Random(7)
    expected: dict[bytes, bytes | None] = {}
    for attempt in range(12):
        kvd.start()
        client = kvd.client()
        check(client, expected)  # nothing acknowledged lost, nothing deleted back
        leftovers = [n for n in os.listdir(kvd.data_dir) if n.endswith(".tmp") or n == "compaction"]
        assert not leftovers, leftovers
        stop = threading.Event()
        in_flight: list = []

        def write() -> None:
            writer = kvd.client()
            n = 0
            while not stop.is_set():
                key = b"k%d" % rng.randrange(300)
                value = None if n % 5 == 4 else b"%d:%d:" % (attempt, n) + b"y" * rng.randrange(400)
                in_flight[:] = [(key, value)]
                try:
                    writer.delete(key) if value is None else writer.set(key, value)
                except redis.ConnectionError:
                    return  # killed: this write may or may not have been applied
                expected[key] = value  # acknowledged
                in_flight.clear()
                n += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_for(lambda: len(expected) > 50 * (attempt + 1) ** 0.5, what="writes")
        kvd.signal(signal.SIGUSR1)
        time.sleep(rng.uniform(0, 0.08))  # a random moment to kill at, not a synchronisation
        child = persistence(kvd)["compaction_child_pid"] if rng.random() < 0.5 else 0
        kvd.kill()
        stop.set()
        writer.join(10)
        if child:
            assert wait_gone(child, 5), "the compaction child outlived the server"
        kvd.close_clients()
        if in_flight:  # unacknowledged: either outcome is correct; learn which one it was
            key, value = in_flight[0]
            kvd.start()
            actual = kvd.client().get(key)
            assert actual in (expected.get(key), value)
            expected[key] = actual
            kvd.stop()
    kvd.start()
    check(kvd.client(), expected)


@pytest.mark.slow
def test_automatic_compaction_when_garbage_passes_both_thresholds(make_daemon):
    kvd = make_daemon(SEGMENT, "--auto-compact-ratio", "1", "--auto-compact-min-size", "500000")
    fill_with_garbage(kvd.client(), keys=1000, rounds=6)
    wait_for(lambda: persistence(kvd)["compactions_completed"] >= 1, what="automatic compaction")
    assert "automatic compaction" in kvd.log()


def test_no_automatic_compaction_when_disabled(make_daemon):
    kvd = make_daemon(SEGMENT, "--no-auto-compact", "--auto-compact-min-size", "1")
    fill_with_garbage(kvd.client(), keys=1000, rounds=6)
    for _ in range(3):  # more than one policy check interval of loop passes
        kvd.client().ping()
    assert persistence(kvd)["compactions_started"] == 0
    assert persistence(kvd)["auto_compaction"] == 0


@pytest.mark.slow
def test_sqlite_engine_compacts_in_slices_while_serving(make_daemon):
    kvd = make_daemon("--engine", "sqlite", "--no-auto-compact")
    client = kvd.client()
    expected = fill_with_garbage(client, keys=3000, rounds=2)
    for i in range(0, 3000, 2):
        client.delete(b"key:%d" % i)
        expected[b"key:%d" % i] = None
    before = persistence(kvd)
    assert before["dead_bytes"] > 0
    kvd.signal(signal.SIGUSR1)
    answers = 0
    while persistence(kvd)["compactions_completed"] == 0:
        assert client.ping() is True
        answers += 1
        assert answers < 100_000
    after = persistence(kvd)
    assert after["last_compaction_status"] == "ok"
    assert after["total_bytes"] < before["total_bytes"]
    assert after["dead_bytes"] == 0
    check(client, expected)


def figures(dead: int, live: int) -> StoreStats:
    return StoreStats(engine="log", fsync="no", keys=1, expiring_keys=0, live_bytes=live,
                      dead_bytes=dead, total_bytes=live + dead, segments=1, descriptors=8,
                      compactions=0, corrupt_records=0, compaction_in_progress=False,
                      last_compaction=None)


def test_the_auto_policy_backs_off_after_failures():
    policy = AutoPolicy(True, ratio=1.0, min_bytes=100)

    def garbage():
        return figures(dead=1000, live=10)

    assert policy.due(garbage, now=0.0)
    assert not policy.due(garbage, now=0.5)  # checked at most once a second
    assert not policy.due(lambda: figures(dead=50, live=10), now=2.0)  # under min size
    assert not policy.due(lambda: figures(dead=1000, live=2000), now=4.0)  # under ratio
    assert policy.failed(1, now=10.0) == 10.0
    assert not policy.due(garbage, now=15.0)
    assert policy.due(garbage, now=21.0)
    assert policy.failed(3, now=30.0) == 40.0
    assert policy.failed(20, now=30.0) == 3600.0
    policy.succeeded()
    assert policy.due(garbage, now=40.0)


@pytest.mark.slow
def test_flushdb_and_swapdb_while_a_child_compacts_hold_after_restart(make_daemon):
    """The child copies the databases as they were at the fork; FLUSHDB and SWAPDB made
    meanwhile (map records after its output) must still hold when it is applied, and
    after a restart that replays its output and then them."""
    kvd = make_daemon(SEGMENT)
    clients = [redis.from_url(f"unix://{kvd.socket}?db={db}", socket_timeout=20)
               for db in range(3)]
    expected = [fill_with_garbage(clients[0], keys=1500, rounds=4)]
    for db in (1, 2):
        clients[db].mset({b"in-%d:%d" % (db, i): b"%d" % i for i in range(500)})
    child = stopped_child(kvd)
    clients[1].flushdb()
    clients[0].swapdb(0, 2)  # database 0's keys are now in 2, database 2's in 0
    clients[1].set(b"after-flush", b"1")
    os.kill(child, signal.SIGCONT)
    wait_for(lambda: not persistence(kvd)["compaction_in_progress"], what="the compaction")
    assert persistence(kvd)["last_compaction_status"] == "ok"

    def as_expected() -> None:
        assert clients[1].keys() == [b"after-flush"]
        assert clients[0].dbsize() == 500 and clients[0].get(b"in-2:7") == b"7"
        check(clients[2], expected[0])

    as_expected()
    kvd.stop()
    kvd.start()
    clients = [redis.from_url(f"unix://{kvd.socket}?db={db}", socket_timeout=20)
               for db in range(3)]
    as_expected()
    for client in clients:
        client.close()
