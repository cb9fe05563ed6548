"""Collections kept as element records (format 4; docs/data-model.md), on both engines:
a metadata record per key, one record per element, tied together by the key's version.
Deleting, expiring, flushing or overwriting a collection is one small write however
many elements it has, and its old elements never come back -- across reopening (with
and without hint files), compaction, and compaction racing new writes."""

from __future__ import annotations

import os
import time

import pytest

from storage import compaction, open_store

HASH = 1
FAR = 4102444800000


def fill(db, key: bytes, count: int, tag: bytes = b"v", db_index: int = 0) -> dict:
    db.create_collection(key, HASH, db=db_index)
    db.begin_batch()
    for i in range(count):
        db.put_element(key, b"f%d" % i, tag + b"%d" % i, db=db_index)
    db.end_batch()
    return {b"f%d" % i: tag + b"%d" % i for i in range(count)}


def contents(db, key: bytes, db_index: int = 0) -> dict:
    if not db.collection_version(key, db_index):
        return {}
    return {f: db.get_element(key, f, db_index) for f in db.element_names(key, db_index)}


def reopen_each_way(engine: str, data_dir: str):
    """Open the store as it is, compacted, and without hint files (what the records
    themselves say); yield each."""
    for step in ("reopened", "compacted", "without hints"):
        if step == "without hints":
            for name in os.listdir(data_dir):
                if name.endswith(".hint"):
                    os.unlink(os.path.join(data_dir, name))
        with open_store(data_dir, engine=engine) as db:
            if hasattr(db, "_cache_limit"):
                db._cache_limit = 0  # every read from its record
            if step == "compacted":
                db.compact()
            yield step, db


def test_elements_round_trip(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        expected = fill(db, b"h", 300)
        assert db.put_element(b"h", b"f1", b"changed") is None
        expected[b"f1"] = b"changed"
        assert db.delete_element(b"h", b"f2") and not db.delete_element(b"h", b"f2")
        del expected[b"f2"]
        db.put_element(b"h", b"", b"")  # an empty field name and value are elements too
        expected[b""] = b""
        assert contents(db, b"h") == expected
        assert db.element_count(b"h") == len(expected) and db.type_of(b"h") == HASH
        assert db.element_names(b"h")[:3] == [b"f0", b"f1", b"f3"]  # the order first set
        expected_db3 = fill(db, b"h", 5, b"other", db_index=3)  # the same name elsewhere
        db.expire(b"h", FAR)
    for step, db in reopen_each_way(engine, data_dir):
        assert contents(db, b"h") == expected, step
        assert contents(db, b"h", 3) == expected_db3, step
        assert db.deadline(b"h") == FAR and db.type_of(b"h") == HASH, step
        assert db.get_element(b"h", b"f2") is None and db.count() == 1, step


def test_a_deleted_collection_recreated_under_its_name_shows_no_old_element(
        engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        fill(db, b"h", 2000, b"old")
        db.flush()
        assert db.delete(b"h")
        assert db.collection_version(b"h") == 0 and db.type_of(b"h") == 0
        db.create_collection(b"h", HASH)
        db.put_element(b"h", b"f7", b"new")  # a field the old one had too
        fill(db, b"o1", 10)
        db.put(b"o1", b"a string now")  # overwritten by another type
        fill(db, b"o2", 10)
        db.create_collection(b"o2", HASH)  # overwritten by a new collection
        fill(db, b"gone", 10, db_index=1)
        db.flush_db(1)
        db.create_collection(b"gone", HASH, db=1)
    for step, db in reopen_each_way(engine, data_dir):
        assert contents(db, b"h") == {b"f7": b"new"}, step
        assert db.get(b"o1") == b"a string now" and db.collection_version(b"o1") == 0, step
        assert contents(db, b"o2") == {} and db.collection_version(b"o2"), step
        assert db.get_element(b"o2", b"f1") is None, step
        assert contents(db, b"gone", 1) == {} and db.collection_version(b"gone", 1), step


def test_versions_only_grow_across_reopening(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.create_collection(b"h", HASH)
        first = db.collection_version(b"h")
        db._version = first + 10**12  # as if the clock had run ahead and then back
        db.create_collection(b"h", HASH)
        ahead = db.collection_version(b"h")
    with open_store(data_dir, engine=engine) as db:
        db.create_collection(b"other", HASH)
        assert db.collection_version(b"other") > ahead > first


def test_an_expired_collection_goes_with_its_elements(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        fill(db, b"h", 50)
        soon = time.time_ns() // 1_000_000 + 200
        db.expire(b"h", soon)
    while time.time_ns() // 1_000_000 <= soon:
        time.sleep(0.05)
    with open_store(data_dir, engine=engine) as db:
        assert db.collection_version(b"h") == 0 and db.count() == 0
        db.create_collection(b"h", HASH)
        assert contents(db, b"h") == {}
    with open_store(data_dir, engine=engine) as db:
        assert contents(db, b"h") == {} and db.collection_version(b"h")


def test_element_calls_on_a_key_that_is_no_collection_are_refused(store):
    store.put(b"s", b"string")
    for call in (lambda: store.put_element(b"s", b"f", b"v"),
                 lambda: store.get_element(b"missing", b"f"),
                 lambda: store.delete_element(b"s", b"f"),
                 lambda: store.element_count(b"s")):
        with pytest.raises(ValueError):
            call()
    assert store.get(b"s") == b"string"


def test_changing_one_element_of_a_large_collection_appends_one_small_record(data_dir):
    """The log engine: HSET of one field in a large hash writes that field, and deleting
    the whole hash one record."""
    with open_store(data_dir, engine="log") as db:
        fill(db, b"h", 20_000)
        db.flush()
        before = db.stats().total_bytes
        db.put_element(b"h", b"f123", b"x")
        db.flush()
        assert db.stats().total_bytes - before < 60
        before = db.stats().total_bytes
        db.delete(b"h")
        db.flush()
        assert db.stats().total_bytes - before < 40
        assert db.stats().live_bytes == 0


def test_compaction_drops_the_elements_of_old_versions(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        fill(db, b"h", 5000, b"x" * 50)
        fill(db, b"keep", 10)
        db.delete(b"h")
        db.flush()
        before = db.stats().total_bytes
        db.compact()
        assert db.stats().total_bytes < before / 4
        assert contents(db, b"keep") == {b"f%d" % i: b"v%d" % i for i in range(10)}


def test_writes_during_a_compaction_win(data_dir):
    """The log engine compacts frozen segments while the owner keeps writing: elements
    set, removed, and whole collections replaced meanwhile must not be undone when the
    compaction's copies are pointed at."""
    with open_store(data_dir, engine="log", segment_size=4096) as db:
        fill(db, b"h", 400)
        fill(db, b"replaced", 100)
        fill(db, b"deleted", 100)
        plan = db.begin_compaction()
        compaction.run(plan)
        db.put_element(b"h", b"f1", b"during")
        db.delete_element(b"h", b"f2")
        db.create_collection(b"replaced", HASH)
        db.put_element(b"replaced", b"f1", b"new")
        db.delete(b"deleted")
        db.finish_compaction(plan)
        expected = {b"f%d" % i: b"v%d" % i for i in range(400) if i != 2}
        expected[b"f1"] = b"during"
        assert contents(db, b"h") == expected
        assert contents(db, b"replaced") == {b"f1": b"new"}
        assert db.collection_version(b"deleted") == 0
    for step, db in reopen_each_way("log", data_dir):
        assert contents(db, b"h") == expected, step
        assert contents(db, b"replaced") == {b"f1": b"new"}, step
        assert db.collection_version(b"deleted") == 0, step


def test_a_batch_of_element_writes_cut_short_is_dropped_whole(data_dir):
    with open_store(data_dir, engine="log") as db:
        fill(db, b"h", 10)
        db.flush()
        db.begin_batch()
        for i in range(10):
            db.put_element(b"h", b"f%d" % i, b"batch")
        db.end_batch()
        db.flush()
    segments = sorted(n for n in os.listdir(data_dir) if n.endswith(".seg"))
    newest = os.path.join(data_dir, segments[-1])
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) - 5)  # the batch's last record torn
    hint = newest[:-4] + ".hint"
    if os.path.exists(hint):
        os.unlink(hint)
    with open_store(data_dir, engine="log") as db:
        assert contents(db, b"h") == {b"f%d" % i: b"v%d" % i for i in range(10)}


def test_a_lists_positions_survive_reopening(engine, data_dir):
    """A list's elements are named by int positions without a gap: its ends are known
    again after reopening (with and without hints) and compaction."""
    LIST = 2
    with open_store(data_dir, engine=engine) as db:
        db.create_collection(b"l", LIST)
        for position in (0, 1, 2, -1, -2, 3):  # pushes at both ends
            db.put_element(b"l", position, b"v%d" % position)
        assert db.delete_element(b"l", -2) and db.delete_element(b"l", 3)  # pops
        assert db.element_range(b"l") == (-1, 3)
        db.put_element(b"l", 1, b"set")
    for step, db in reopen_each_way(engine, data_dir):
        assert db.element_range(b"l") == (-1, 3), step
        assert [db.get_element(b"l", p) for p in range(-1, 3)] == [
            b"v-1", b"v0", b"set", b"v2"], step
