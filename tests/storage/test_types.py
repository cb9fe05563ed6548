"""Values of other types than string, packed whole (format 4: flags bits 4-7), on both
engines: the type of every key is known without a disk read, and survives reopening,
compaction (also with a deadline changed since the value was written), deletion and
being overwritten by a string."""

from __future__ import annotations

import os

from storage import open_store

HASH, LIST = 1, 2
FAR = 4102444800000


def test_a_typed_value_keeps_its_type_through_reopen_and_compaction(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"h", b"packed hash", 0, kind=HASH)
        db.put(b"l", b"packed list", FAR, db=2, kind=LIST)
        db.put(b"big", os.urandom(1 << 17), kind=HASH)  # written the large-value way
        db.put(b"s", b"a string")
        db.put(b"was-hash", b"x", kind=HASH)
        db.put(b"was-hash", b"now a string")
        db.put(b"gone", b"y", kind=HASH)
        assert db.delete(b"gone")
        db.put_many([(b"h2", b"1")])
        db.expire(b"h", FAR)  # the next compaction re-encodes it: its type must stay
        expected = {(0, b"h"): HASH, (2, b"l"): LIST, (0, b"big"): HASH, (0, b"s"): 0,
                    (0, b"was-hash"): 0, (0, b"gone"): 0, (0, b"h2"): 0}
        assert {k: db.type_of(k[1], db=k[0]) for k in expected} == expected
    steps = ("reopened", "compacted", "reopened after compaction", "reopened without hints")
    for step in steps:
        if step == "reopened without hints":  # what the records say, not the hint rows
            for name in os.listdir(data_dir):
                if name.endswith(".hint"):
                    os.unlink(os.path.join(data_dir, name))
        with open_store(data_dir, engine=engine) as db:
            if hasattr(db, "_cache_limit"):
                db._cache_limit = 0  # every read from its record
            assert {k: db.type_of(k[1], db=k[0]) for k in expected} == expected, step
            assert db.get(b"h") == b"packed hash" and db.deadline(b"h") == FAR
            assert db.get(b"l", db=2) == b"packed list"
            if step == "compacted":
                db.compact()
                assert {k: db.type_of(k[1], db=k[0]) for k in expected} == expected, step
                assert db.get(b"h") == b"packed hash" and db.get(b"l", db=2) == b"packed list"


def test_flushing_a_database_forgets_its_types(engine, data_dir):
    with open_store(data_dir, engine=engine) as db:
        db.put(b"h", b"v", kind=HASH, db=1)
        db.flush_db(1)
        assert db.type_of(b"h", db=1) == 0
        db.put(b"h", b"v", kind=LIST, db=3)
        db.swap_dbs(3, 4)
        assert db.type_of(b"h", db=4) == LIST and db.type_of(b"h", db=3) == 0
    with open_store(data_dir, engine=engine) as db:
        assert db.type_of(b"h", db=1) == 0 and db.type_of(b"h", db=4) == LIST
