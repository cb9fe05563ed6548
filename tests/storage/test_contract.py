"""The storage contract, run against both engines."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from storage import ClosedError, FormatError, LockedError, open_store


def test_put_get_delete_round_trip(store):
    assert store.get(b"k") is None
    store.put(b"k", b"v")
    assert store.get(b"k") == b"v"
    store.put(b"k", b"w")
    assert store.get(b"k") == b"w"
    assert store.delete(b"k") is True
    assert store.get(b"k") is None
    assert store.delete(b"k") is False


@pytest.mark.parametrize(
    "key,value",
    [(b"", b""), (b"\x00\xff\r\n", b"\x00" * 7), (b"k" * 1000, bytes(range(256)) * 8),
     (b"big", os.urandom(3 << 20))],
    ids=["empty", "binary", "long-key", "3MiB-value"],
)
def test_binary_safe_keys_and_values_survive_reopen(engine, data_dir, key, value):
    with open_store(data_dir, engine=engine) as db:
        db.put(key, value)
        assert db.get(key) == value
    with open_store(data_dir, engine=engine) as db:
        assert db.get(key) == value
        assert list(db.keys()) == [key]


def test_reads_see_unflushed_writes(store):
    store.put(b"a", b"1")
    assert store.get(b"a") == b"1"
    assert b"a" in store
    store.delete(b"a")
    assert store.get(b"a") is None


def test_len_and_keys_with_prefix(store):
    for i in range(50):
        store.put(b"user:%d" % i, b"x")
    for i in range(20):
        store.put(b"item:%d" % i, b"y")
    store.delete(b"user:0")
    assert len(store) == 69
    assert sorted(store.keys(prefix=b"item:")) == sorted(b"item:%d" % i for i in range(20))
    assert len(list(store.keys())) == 69
    assert list(store.keys(prefix=b"nothing")) == []


def test_keys_may_be_iterated_while_writing(store):
    for i in range(2500):
        store.put(b"%05d" % i, b"v")
    for seen, key in enumerate(store.keys(), 1):
        store.put(key + b"-copy", b"v")
        if seen == 2500:
            break
    assert len(store) == 5000


def test_flushed_writes_survive_reopen(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"a", b"1")
        db.put(b"b", b"2")
        db.delete(b"a")
        db.flush()
    with open_store(data_dir, engine=engine) as db:
        assert db.get(b"a") is None
        assert db.get(b"b") == b"2"
        assert len(db) == 1


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_every_fsync_policy_persists_on_close(engine, data_dir, fsync):
    with open_store(data_dir, engine=engine, fsync=fsync) as db:
        db.put(b"k", b"v")
        assert db.stats().fsync == fsync
    with open_store(data_dir, engine=engine, fsync=fsync) as db:
        assert db.get(b"k") == b"v"


def test_stats_report_keys_and_garbage(store):
    for i in range(100):
        store.put(b"k%d" % i, b"v" * 100)
    store.flush()
    before = store.stats()
    assert before.keys == 100
    for i in range(100):
        store.put(b"k%d" % i, b"w" * 100)
    store.flush()
    after = store.stats()
    assert after.keys == 100
    assert after.live_bytes > 0
    assert after.segments >= 1 and after.compactions == 0 and after.last_compaction is None
    assert (after.engine, after.fsync) == (store.engine, store.fsync)
    if store.engine == "log":
        assert after.dead_bytes >= before.dead_bytes + 100 * 100


def test_live_and_dead_add_up_to_the_total_and_compaction_reclaims_the_dead(store):
    """What `kvctl stats` shows must add up: live + dead = total, and a compaction gives
    back (about) the dead bytes -- for sqlite too, whose write-ahead log counts as dead."""
    for i in range(2000):
        store.put(b"k%d" % i, b"x" * 400)
    store.flush()
    for i in range(1950):
        store.delete(b"k%d" % i)
    store.flush()
    stats = store.stats()
    assert stats.live_bytes + stats.dead_bytes == stats.total_bytes
    assert stats.dead_bytes > stats.live_bytes
    result = store.compact()
    assert abs(result.reclaimed - stats.dead_bytes) <= stats.total_bytes // 10
    after = store.stats()
    assert after.live_bytes + after.dead_bytes == after.total_bytes
    assert after.dead_bytes <= after.total_bytes // 10


def test_compact_keeps_every_live_key_and_reports_sizes(store):
    for i in range(300):
        store.put(b"k%d" % i, b"v" * 200)
    for i in range(200):
        store.delete(b"k%d" % i)
    store.put(b"k250", b"changed")
    result = store.compact()
    assert result.bytes_before > result.bytes_after
    assert result.reclaimed == result.bytes_before - result.bytes_after
    assert result.duration_s >= 0
    assert len(store) == 100
    assert store.get(b"k0") is None
    assert store.get(b"k250") == b"changed"
    assert store.get(b"k299") == b"v" * 200
    stats = store.stats()
    assert stats.compactions == 1
    assert stats.last_compaction["reclaimed"] == result.reclaimed


def test_a_compaction_job_is_driven_the_same_way_on_both_engines(store):
    """As the server drives it (storage.interface.CompactionJob): run in a child if the
    job forks (here, in this process), else step; then finish in steps, writing between
    them."""
    for i in range(300):
        store.put(b"k%d" % i, b"v" * 200)
    for i in range(200):
        store.delete(b"k%d" % i)
    store.flush()
    job = store.begin_compaction()
    assert job.bytes_total > 0 and job.description
    if job.forks:
        job.run()
    else:
        steps = 0
        while not job.step():
            steps += 1
            assert steps < 10_000
    finishing = store.finish_steps(job, batch=16)
    store.put(b"k299", b"written while finishing")
    while True:
        try:
            next(finishing)
        except StopIteration as done:
            result = done.value
            break
    assert result.bytes_before >= result.bytes_after
    assert len(store) == 100
    assert store.get(b"k299") == b"written while finishing"
    assert store.get(b"k250") == b"v" * 200 and store.get(b"k0") is None


def test_rejects_non_bytes_and_oversized(store):
    with pytest.raises(TypeError):
        store.put("text", b"v")
    with pytest.raises(TypeError):
        store.put(b"k", 12)
    big = memoryview(bytearray(1)).cast("B")
    store.put(b"mv", big)  # memoryview and bytearray are accepted as bytes
    assert store.get(b"mv") == b"\x00"


def test_use_after_close_is_an_error(engine, data_dir):
    db = open_store(data_dir, engine=engine)
    db.close()
    db.close()  # idempotent
    with pytest.raises(ClosedError):
        db.get(b"k")
    with pytest.raises(ClosedError):
        db.put(b"k", b"v")


def test_second_open_in_same_process_is_refused(engine, data_dir):
    with open_store(data_dir, engine=engine):
        with pytest.raises(LockedError) as info:
            open_store(data_dir, engine=engine)
        assert str(os.getpid()) in str(info.value)
    with open_store(data_dir, engine=engine) as db:  # released on close
        assert len(db) == 0


def _try_open(data_dir: str, engine: str, queue) -> None:
    try:
        open_store(data_dir, engine=engine).close()
        queue.put("opened")
    except LockedError as exc:
        queue.put(("locked", exc.holder_pid, str(exc)))


def test_second_process_is_refused_with_holders_pid(engine, data_dir):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with open_store(data_dir, engine=engine):
        child = ctx.Process(target=_try_open, args=(data_dir, engine, queue))
        child.start()
        outcome = queue.get(timeout=60)
        child.join(timeout=60)
    assert outcome[0] == "locked"
    assert outcome[1] == os.getpid()
    assert f"in use by PID {os.getpid()}" in outcome[2]


def test_other_engines_directory_is_refused(data_dir):
    with open_store(data_dir, engine="log") as db:
        db.put(b"k", b"v")
    with pytest.raises(FormatError, match="'log' store"):
        open_store(data_dir, engine="sqlite")


def test_bad_arguments_are_refused(data_dir):
    with pytest.raises(ValueError):
        open_store(data_dir, engine="btree")
    with pytest.raises(ValueError):
        open_store(data_dir, fsync="sometimes")


def test_write_batch_applies_puts_and_deletes_in_order(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"gone", b"old")
        db.put(b"kept", b"old")
        db.write_batch([(b"a", b"1"), (b"gone", None), (b"a", b"2"), (b"b", b""),
                        (b"missing", None), (b"b", None), (b"b", b"3")])
        expected = {b"a": b"2", b"b": b"3", b"kept": b"old"}
        assert {k: db.get(k) for k in db.keys()} == expected
        db.write_batch([])  # nothing to do
        db.write_batch([(b"one", b"x")])  # a batch of one is a plain put
        expected[b"one"] = b"x"
    with open_store(data_dir, engine=engine) as db:
        assert {k: db.get(k) for k in db.keys()} == expected
        assert b"" not in db  # a batch leaves no key of its own behind


def test_write_batch_refuses_it_all_when_one_pair_is_invalid(store):
    store.put(b"k", b"before")
    with pytest.raises(TypeError):
        store.write_batch([(b"k", b"after"), (b"other", "not bytes")])
    assert store.get(b"k") == b"before"
    assert b"other" not in store


FAR = 4_000_000_000_000  # year 2096, in Unix ms
PAST = 1_000  # 1970


def test_deadlines_survive_reopen_and_a_passed_one_deletes(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"far", b"v", FAR)
        db.put(b"none", b"v")
        db.put(b"old", b"first")  # an older value of a key that then expires...
        db.flush()
        db.put(b"old", b"second", PAST)  # ...must not come back when it does
        db.put(b"cleared", b"v", FAR)
        db.put(b"cleared", b"w")  # a put without a deadline clears it
        assert db.expire(b"missing", FAR) is False
        assert (db.deadline(b"far"), db.deadline(b"none"), db.deadline(b"cleared")) == (FAR, 0, 0)
        assert db.deadlines.due(10_000, 10) == [b"old"]
    with open_store(data_dir, engine=engine) as db:
        assert sorted(db.keys()) == [b"cleared", b"far", b"none"]
        assert db.get(b"old") is None
        assert (db.deadline(b"far"), db.deadline(b"none"), db.deadline(b"cleared")) == (FAR, 0, 0)
        assert db.stats().expiring_keys == 1


def test_expire_changes_only_the_deadline(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"k", b"x" * 1000)
        assert db.expire(b"k", FAR) is True
        assert db.deadline(b"k") == FAR and db.get(b"k") == b"x" * 1000
        db.put(b"gone", b"v")
        db.expire(b"gone", PAST)
        db.put(b"kept", b"v", FAR)
        db.expire(b"kept", 0)  # PERSIST
    with open_store(data_dir, engine=engine) as db:
        assert db.deadline(b"k") == FAR and db.get(b"k") == b"x" * 1000
        assert b"gone" not in db
        assert db.deadline(b"kept") == 0 and db.get(b"kept") == b"v"
        db.delete(b"k")
        assert db.deadline(b"k") == 0


def test_a_batch_carries_deadlines(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.write_batch([(b"a", b"1", FAR), (b"b", b"2"), (b"c", b"3", PAST)])
    with open_store(data_dir, engine=engine) as db:
        assert (db.deadline(b"a"), db.get(b"b"), b"c" in db) == (FAR, b"2", False)


def test_compaction_keeps_current_deadlines_and_drops_no_live_key(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        for i in range(200):
            db.put(b"k%d" % i, b"v" * 100, FAR if i % 2 else 0)
        db.expire(b"k1", FAR + 1)  # changed after the value was written
        db.expire(b"k3", 0)
        db.expire(b"k4", FAR + 2)
        db.flush()
        db.compact()
        assert (db.deadline(b"k1"), db.deadline(b"k3"), db.deadline(b"k4")) == (FAR + 1, 0, FAR + 2)
    with open_store(data_dir, engine=engine) as db:
        assert len(db) == 200
        assert (db.deadline(b"k1"), db.deadline(b"k3"), db.deadline(b"k4")) == (FAR + 1, 0, FAR + 2)
        assert db.deadline(b"k5") == FAR and db.deadline(b"k6") == 0
        assert db.get(b"k1") == b"v" * 100


def test_expire_on_a_large_value_appends_a_few_bytes(data_dir):
    with open_store(data_dir, engine="log") as db:
        db.put(b"big", b"x" * (1 << 20))
        db.flush()
        before = db.stats().total_bytes
        db.expire(b"big", FAR)
        db.flush()
        assert db.stats().total_bytes - before < 64


def test_an_open_batch_is_read_as_it_is_written(engine, data_dir):
    """begin_batch/end_batch (a transaction's): reads inside see the batch's own writes."""
    with open_store(data_dir, engine=engine) as db:
        db.put(b"n", b"1")
        db.begin_batch()
        db.put(b"n", b"2")
        assert db.get(b"n") == b"2"
        db.delete(b"gone")
        db.expire(b"n", FAR)
        db.end_batch()
        db.begin_batch()
        db.end_batch()  # an empty batch leaves nothing behind
    with open_store(data_dir, engine=engine) as db:
        assert (db.get(b"n"), db.deadline(b"n")) == (b"2", FAR)


def test_put_many_writes_as_put_calls_do(engine, data_dir):
    with open_store(data_dir, engine=engine, segment_size=2048) as db:
        db.put(b"ttl", b"old", 4_000_000_000_000)
        pairs = [(b"k%d" % (i % 150), b"v%d" % i * 10) for i in range(300)]  # each key twice
        db.put_many(pairs + [(b"ttl", bytearray(b"new")), (b"mv", memoryview(b"m"))])
        assert db.get(b"k7") == b"v157" * 10 and db.get(b"ttl") == b"new"
        assert db.deadline(b"ttl") == 0  # as SET, a put clears the deadline
        db.flush()
        if engine == "log":
            assert db.stats().segments > 1  # the run crossed segment rotations
    with open_store(data_dir, engine=engine) as db:
        assert len(db) == 152
        assert {k: db.get(k) for k in db.keys()} == {
            **{b"k%d" % i: b"v%d" % (i + 150) * 10 for i in range(150)},
            b"ttl": b"new", b"mv": b"m"}
        assert db.deadline(b"ttl") == 0


def test_put_many_says_how_many_it_wrote_when_it_fails(engine, data_dir):
    db = open_store(data_dir, engine=engine)
    with pytest.raises(TypeError) as failure:
        db.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", 3), (b"d", b"4")])
    assert failure.value.items_written == 2
    assert (db.get(b"a"), db.get(b"b"), db.get(b"c"), db.get(b"d")) == (b"1", b"2", None, None)
    db.close()
    with pytest.raises(ClosedError) as failure:
        db.put_many([(b"e", b"5")])
    assert failure.value.items_written == 0
