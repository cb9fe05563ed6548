"""The log engine's compaction: its three steps, writes made meanwhile, space on disk."""

from __future__ import annotations

import os

import pytest

from storage import CompactionError, compaction, open_store
from storage.layout import COMPACTION_DIR

from .conftest import disk_usage

SEGMENT_SIZE = 16 << 10


@pytest.fixture
def log_store(data_dir):
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    yield db
    db.close()


def fill(db, count: int, size: int = 200, tag: bytes = b"v") -> None:
    for i in range(count):
        db.put(b"k%05d" % i, tag * size)
    db.flush()


def test_writes_and_deletes_made_during_a_compaction_win(log_store, data_dir):
    fill(log_store, 500)
    for i in range(0, 500, 3):
        log_store.delete(b"k%05d" % i)
    plan = log_store.begin_compaction()
    # between begin and finish: overwrite, delete, recreate, add new keys
    log_store.put(b"k00001", b"new during compaction")
    log_store.delete(b"k00002")
    log_store.put(b"k00003", b"recreated after delete")  # deleted before begin
    log_store.put(b"fresh", b"new key")
    compaction.run(plan)
    log_store.put(b"k00004", b"written after run, before finish")
    log_store.delete(b"k00005")
    log_store.finish_compaction(plan)

    def check(db):
        assert db.get(b"k00001") == b"new during compaction"
        assert db.get(b"k00002") is None
        assert db.get(b"k00003") == b"recreated after delete"
        assert db.get(b"fresh") == b"new key"
        assert db.get(b"k00004") == b"written after run, before finish"
        assert db.get(b"k00005") is None
        assert db.get(b"k00006") is None  # deleted before begin
        assert db.get(b"k00007") == b"v" * 200
        assert len(db) == 500 - 167 + 1 + 1 - 2

    check(log_store)
    log_store.close()
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        check(db)


def test_run_in_a_forked_child_while_the_owner_keeps_writing(log_store, data_dir):
    fill(log_store, 400)
    for i in range(300):
        log_store.delete(b"k%05d" % i)
    plan = log_store.begin_compaction()
    pid = os.fork()
    if pid == 0:  # the child sees the key directory as it was at fork time
        try:
            compaction.run(plan)
            os._exit(0)
        except BaseException:
            os._exit(1)
    for i in range(300, 350):  # meanwhile the owner overwrites some live keys
        log_store.put(b"k%05d" % i, b"parent")
    log_store.flush()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result = log_store.finish_compaction(plan)
    assert result.keys == 100
    for i in range(300, 400):
        assert log_store.get(b"k%05d" % i) == (b"parent" if i < 350 else b"v" * 200)
    assert len(log_store) == 100


def test_put_merge_delete_merge_reopen_resurrects_nothing(data_dir):
    """rosedb #258, and variations: tombstones must outlive every older copy."""
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        fill(db, 200)
        db.compact()
        for i in range(0, 200, 2):
            db.delete(b"k%05d" % i)
        db.flush()
        db.compact()
        db.put(b"k00001", b"again")
        db.delete(b"k00003")
        db.compact()
        db.compact()  # a compaction with nothing to do
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert all(db.get(b"k%05d" % i) is None for i in range(0, 200, 2))
        assert db.get(b"k00001") == b"again"
        assert db.get(b"k00003") is None
        assert len(db) == 99


def test_compaction_reclaims_space_on_disk(log_store, data_dir):
    fill(log_store, 2000, size=500)
    for round_ in range(3):  # overwrite everything, then delete 90%
        fill(log_store, 2000, size=500, tag=b"%d" % round_)
    for i in range(1800):
        log_store.delete(b"k%05d" % i)
    log_store.flush()
    before = disk_usage(data_dir)
    live = log_store.stats().live_bytes
    assert before > 20 * live
    result = log_store.compact()
    after = disk_usage(data_dir)
    assert after < 1.5 * live + (64 << 10), f"{after} bytes on disk for {live} live"
    assert result.reclaimed > 0.9 * before - (64 << 10)
    assert log_store.stats().dead_bytes == 0
    assert all(log_store.get(b"k%05d" % i) == b"2" * 500 for i in range(1800, 2000))


def test_abort_discards_the_output_and_keeps_the_data(log_store, data_dir):
    fill(log_store, 300)
    plan = log_store.begin_compaction()
    compaction.run(plan)
    log_store.abort_compaction(plan)
    assert not os.path.exists(os.path.join(data_dir, COMPACTION_DIR))
    assert len(log_store) == 300
    assert log_store.stats().compactions == 0
    log_store.compact()  # a later compaction is free to start
    assert log_store.stats().compactions == 1


def test_one_compaction_at_a_time(log_store):
    fill(log_store, 10)
    plan = log_store.begin_compaction()
    with pytest.raises(CompactionError, match="already in progress"):
        log_store.begin_compaction()
    with pytest.raises(CompactionError, match="did not complete"):
        log_store.finish_compaction(plan)  # run() never happened
    log_store.abort_compaction(plan)
    with pytest.raises(CompactionError):
        log_store.finish_compaction(plan)  # no longer the current plan


def test_close_during_a_compaction_discards_it(data_dir):
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    fill(db, 300)
    plan = db.begin_compaction()
    compaction.run(plan)
    db.close()
    assert not os.path.exists(os.path.join(data_dir, COMPACTION_DIR))
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert len(db) == 300


def test_progress_is_reported_up_to_the_total(log_store):
    fill(log_store, 3000, size=1000)
    seen = []
    plan = log_store.begin_compaction()
    compaction.run(plan, progress=lambda done, total: seen.append((done, total)))
    log_store.finish_compaction(plan)
    assert len(seen) >= 2
    assert seen[-1] == (plan.bytes_total, plan.bytes_total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_completed_compaction_is_rolled_forward_at_open(data_dir):
    """A crash after the MANIFEST is written: the next open finishes the job."""
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    fill(db, 500)
    for i in range(400):
        db.delete(b"k%05d" % i)
    db.flush()
    plan = db.begin_compaction()
    compaction.run(plan)
    # simulate the crash: drop the process's hold without finish or abort
    db._close_fds()
    db._lock.release()
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as reopened:
        assert len(reopened) == 100
        assert reopened.get(b"k00450") == b"v" * 200
        assert reopened.stats().dead_bytes < 100 * 300
    assert not os.path.exists(os.path.join(data_dir, COMPACTION_DIR))


def test_sqlite_compaction_in_slices_with_writes_between_them(data_dir):
    with open_store(data_dir, engine="sqlite", fsync="no") as db:
        for i in range(3000):
            db.put(b"k%d" % i, b"x" * 1000)
        for i in range(0, 3000, 3):
            db.put(b"k%d" % i, b"y" * 10)  # overwritten: shrinks the rows
        for i in range(1, 3000, 3):
            db.delete(b"k%d" % i)
        db.flush()
        before = db.stats()
        plan = db.begin_compaction()
        with pytest.raises(CompactionError):
            db.begin_compaction()
        assert db.stats().compaction_in_progress
        steps = 0
        while not db.compaction_step(plan, pages=16):
            db.put(b"during%d" % steps, b"z" * 100)  # the server keeps writing between slices
            db.delete(b"k%d" % (3 * steps + 2))
            steps += 1
        assert steps > 3
        assert plan.bytes_done == plan.bytes_total > 0
        result = db.finish_compaction(plan)
        assert result.reclaimed > 0 and result.bytes_after < before.total_bytes
        assert db.stats().dead_bytes == 0 and not db.stats().compaction_in_progress
    with open_store(data_dir, engine="sqlite") as db:
        for i in range(3000):
            want = None if i % 3 == 1 or (i % 3 == 2 and i < 3 * steps + 2) else (
                b"y" * 10 if i % 3 == 0 else b"x" * 1000)
            assert db.get(b"k%d" % i) == want, i
        assert db.get(b"during0") == b"z" * 100


def test_sqlite_compaction_abort_keeps_the_data(data_dir):
    with open_store(data_dir, engine="sqlite") as db:
        for i in range(500):
            db.put(b"k%d" % i, b"x" * 1000)
        for i in range(400):
            db.delete(b"k%d" % i)
        plan = db.begin_compaction()
        db.compaction_step(plan, pages=4)
        db.abort_compaction(plan)
        assert not db.stats().compaction_in_progress
        assert len(db) == 100 and db.get(b"k499") == b"x" * 1000
        db.compact()  # a new compaction can start after the abort
        assert db.stats().dead_bytes == 0


def test_finish_in_steps_with_reads_writes_and_deletes_between_them(data_dir):
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    expected = {}
    for r in range(3):
        for i in range(3000):
            db.put(b"k%d" % i, b"%d-%d" % (r, i))
            expected[b"k%d" % i] = b"%d-%d" % (r, i)
    plan = db.begin_compaction()
    compaction.run(plan)
    steps = db.finish_steps(plan, batch=100)
    n = 0
    for _ in steps:
        probe = b"k%d" % (n * 7 % 3000)
        assert db.get(probe) == expected.get(probe)
        if n < 1000:
            db.put(b"k%d" % n, b"new%d" % n)
            expected[b"k%d" % n] = b"new%d" % n
            db.delete(b"k%d" % (2999 - n))
            expected.pop(b"k%d" % (2999 - n), None)
        n += 1
    assert n > 20  # it really came back between batches
    assert db.stats().compactions == 1 and not db.stats().compaction_in_progress
    assert {k: db.get(k) for k in expected} == expected
    assert len(db) == len(expected)
    db.close()
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in expected} == expected
        assert len(db) == len(expected)


def test_close_half_way_through_finishing_completes_it(data_dir):
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    for r in range(3):
        for i in range(2000):
            db.put(b"k%d" % i, b"%d" % r)
    plan = db.begin_compaction()
    compaction.run(plan)
    steps = db.finish_steps(plan, batch=100)
    next(steps)
    next(steps)
    db.close()  # cannot abort any more: it finishes instead
    assert not os.path.exists(os.path.join(data_dir, COMPACTION_DIR))
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert len(db) == 2000 and db.get(b"k1999") == b"2"
        assert db.stats().dead_bytes < db.stats().live_bytes
