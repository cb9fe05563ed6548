"""Databases in the store (format 4, docs/data-model.md), on both engines: each database's
keys apart; FLUSHDB, FLUSHALL and SWAPDB as one small write, whatever the databases
hold; all of it across reopening, compaction and batches; and a data directory of the
previous format opening with every key and TTL."""

from __future__ import annotations

import os
import shutil

import pytest

from storage import open_store
from storage.layout import META

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FAR = 4102444800000  # 2100-01-01, in ms


def fill(db, database: int, keys: int = 50, tag: bytes = b"") -> None:
    for i in range(keys):
        db.put(b"key:%d" % i, b"db%d:%d%s" % (database, i, tag), db=database)


def contents(db, database: int) -> dict:
    return {key: db.get(key, db=database) for key in db.keys(db=database)}


def test_each_database_keeps_its_own_keys(store):
    fill(store, 0)
    fill(store, 3, keys=20)
    store.put(b"only-in-5", b"x", FAR, db=5)
    assert store.get(b"key:1") == b"db0:1" and store.get(b"key:1", db=3) == b"db3:1"
    assert store.get(b"key:30", db=3) is None and store.get(b"only-in-5") is None
    assert store.count(0) == 50 and store.count(3) == 20 and store.count(5) == 1
    assert store.count(9) == 0 and store.get(b"key:1", db=9) is None
    assert len(store) == 71
    assert store.deadline(b"only-in-5", db=5) == FAR and store.deadline(b"only-in-5") == 0
    assert store.delete(b"key:1", db=3) and not store.delete(b"key:1", db=3)
    assert store.get(b"key:1") == b"db0:1"
    assert store.expire(b"key:2", FAR, db=3) and store.deadline(b"key:2", db=3) == FAR
    assert store.deadline(b"key:2") == 0
    assert store.contains(b"key:2", db=3) and not store.contains(b"key:2", db=4)


def test_flush_swap_and_flush_all_survive_reopen_and_compaction(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        fill(db, 0)
        fill(db, 1)
        fill(db, 2)
        db.put(b"expiring", b"v", FAR, db=2)
        db.flush_db(1)
        db.put(b"after-flush", b"new", db=1)
        db.swap_dbs(0, 2)
        expected = {d: contents(db, d) for d in range(3)}
        assert expected[1] == {b"after-flush": b"new"}
        assert expected[0][b"expiring"] == b"v" and len(expected[2]) == 50
    for _ in range(2):  # reopened, then compacted and reopened
        with open_store(data_dir, engine=engine) as db:
            assert {d: contents(db, d) for d in range(3)} == expected
            assert db.deadline(b"expiring", db=0) == FAR
            db.compact()
            assert {d: contents(db, d) for d in range(3)} == expected
    with open_store(data_dir, engine=engine) as db:
        db.flush_all()
        db.put(b"fresh", b"1", db=2)
        assert [db.count(d) for d in range(3)] == [0, 0, 1]
    with open_store(data_dir, engine=engine) as db:
        assert [db.count(d) for d in range(3)] == [0, 0, 1]
        db.compact()
    with open_store(data_dir, engine=engine) as db:
        assert [db.count(d) for d in range(3)] == [0, 0, 1] and db.get(b"fresh", db=2) == b"1"


def test_a_flush_costs_one_small_write_whatever_the_database_holds(tmp_path):
    """The log engine: FLUSHDB of 20,000 keys appends a few dozen bytes, no tombstones."""
    db = open_store(str(tmp_path), fsync="no")
    db.put_many([(b"key:%d" % i, b"v" * 10) for i in range(20_000)], db=1)
    db.flush()
    before = db.stats().total_bytes
    db.flush_db(1)
    db.flush()
    assert db.stats().total_bytes - before < 100
    assert db.count(1) == 0 and db.stats().live_bytes == 0
    db.close()


def test_a_batch_with_a_flush_in_it_is_whole_or_absent(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        fill(db, 4)
        db.flush()
        db.begin_batch()
        db.put(b"before", b"1", db=4)
        db.flush_db(4)
        db.put(b"after", b"2", db=4)
        db.end_batch()
        assert contents(db, 4) == {b"after": b"2"}
    with open_store(data_dir, engine=engine) as db:
        assert contents(db, 4) == {b"after": b"2"}


def test_writes_during_a_compactions_finish_land_in_the_right_database(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        for d in range(3):
            fill(db, d)
        db.flush()
        job = db.begin_compaction()
        if job.forks:
            job.run()
        else:
            while not job.step():
                pass
        finishing = db.finish_steps(job, batch=8)
        next(finishing, None)
        db.swap_dbs(1, 2)
        db.flush_db(0)
        db.put(b"late", b"x", db=1)
        for _ in finishing:
            pass
        assert db.count(0) == 0 and db.get(b"key:3", db=1) == b"db2:3"
        assert db.get(b"late", db=1) == b"x" and db.get(b"key:3", db=2) == b"db1:3"
    with open_store(data_dir, engine=engine) as db:
        assert db.count(0) == 0 and db.get(b"key:3", db=1) == b"db2:3"
        assert db.get(b"late", db=1) == b"x" and db.get(b"key:3", db=2) == b"db1:3"


@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_a_format_3_directory_opens_with_every_key_and_ttl(engine, tmp_path):
    """Written by the previous release's code (tests/storage/fixtures)."""
    data_dir = str(tmp_path / "data")
    shutil.copytree(os.path.join(FIXTURES, f"format3-{engine}"), data_dir)
    os.chmod(data_dir, 0o700)
    with open_store(data_dir) as db:
        assert db.engine == engine
        assert db.count(0) == 91  # 100 keys, 10 deleted, one far TTL, one expired
        assert db.get(b"key:010") is None and db.get(b"key:011") == b"value 11"
        assert db.get(b"ttl:far") == b"stays" and db.deadline(b"ttl:far") == FAR
        assert db.get(b"ttl:past") is None
        assert db.deadline(b"key:001") == FAR
        db.put(b"in-db-1", b"x", db=1)
    with open(os.path.join(data_dir, META)) as f:
        assert '"format": 4' in f.read()
    with open_store(data_dir) as db:
        assert db.count(0) == 91 and db.get(b"in-db-1", db=1) == b"x"
