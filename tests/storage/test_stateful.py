"""A Hypothesis state machine: the store against a dict per database, through reopen,
compaction, FLUSHDB and SWAPDB; a key holds a string, or a collection of element records
(a dict in the model)."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage import open_store
from storage.logstore import CACHE_ENTRY_OVERHEAD

pytestmark = pytest.mark.slow

KEYS = st.one_of(
    st.sampled_from([b"", b"a", b"b", b"\x00", b"\xff\xfe", b"key with spaces", b"a" * 300]),
    st.binary(max_size=20),
)
DBS = st.integers(min_value=0, max_value=2)
VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\x00" * 10, b"\r\n"]),
    # occasionally a large value, so records span segments and outgrow buffers
    st.integers(min_value=0, max_value=255).map(lambda b: bytes([b]) * ((1 << 20) + 17)),
)


class Packed(bytes):
    """A value put as a collection packed whole (kind 2), in the model."""


def kind_of(value: bytes | dict) -> int:
    """The type the store must report for a model value."""
    return 1 if isinstance(value, dict) else 2 if isinstance(value, Packed) else 0


class StoreMachine(RuleBasedStateMachine):
    """After every step the store must read exactly what the dict model says.

    A small segment size makes puts rotate segments and compactions rewrite
    many of them.
    """

    engine = "log"

    @initialize()
    def open(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="kvd-stateful-")
        self.db = open_store(self.directory, engine=self.engine, segment_size=4096)
        # per database: key -> a string, or a dict (a collection's elements)
        self.models: list[dict[bytes, bytes | dict]] = [{}, {}, {}]
        self.written: set[bytes] = set()  # every key written, in any database

    def _model_write(self, db: int, key: bytes, value: bytes | dict) -> None:
        self.models[db][key] = value
        self.written.add(key)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(key=KEYS, value=VALUES, db=DBS)
    def put(self, key: bytes, value: bytes, db: int) -> None:
        self.db.put(key, value, db=db)
        self._model_write(db, key, value)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=5), db=DBS)
    def put_many(self, pairs: list[tuple[bytes, bytes]], db: int) -> None:
        self.db.put_many(pairs, db=db)
        for key, value in pairs:
            self._model_write(db, key, value)

    @rule(key=KEYS, value=VALUES, db=DBS)
    def put_packed(self, key: bytes, value: bytes, db: int) -> None:
        """A collection packed whole (its type given): read back as its value."""
        self.db.put(key, value, db=db, kind=2)
        self._model_write(db, key, Packed(value))

    @rule(ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), max_size=4), db=DBS)
    def write_batch(self, ops: list[tuple[bytes, bytes | None]], db: int) -> None:
        self.db.write_batch(ops, db=db)
        for key, value in ops:
            if value is None:
                self.models[db].pop(key, None)
            else:
                self._model_write(db, key, value)

    def _strings(self) -> list[tuple[int, bytes]]:
        return sorted((db, key) for db, model in enumerate(self.models)
                      for key, value in model.items() if not isinstance(value, dict))

    @precondition(lambda self: self._strings())
    @rule(data=st.data())
    def expire_now(self, data) -> None:
        """A key whose deadline passed, dropped as the server's expiry drops it."""
        db, key = data.draw(st.sampled_from(self._strings()))
        assert self.db.expire(key, 1, db=db) is True
        self.db.forget_expired(key, db=db)
        del self.models[db][key]
        assert self.db.get(key, db=db) is None

    @precondition(lambda self: self.models[0])
    @rule(data=st.data())
    def delete_existing(self, data) -> None:
        key = data.draw(st.sampled_from(sorted(self.models[0])))
        assert self.db.delete(key) is True
        del self.models[0][key]

    @rule(key=KEYS, db=DBS)
    def delete_any(self, key: bytes, db: int) -> None:
        assert self.db.delete(key, db=db) is (key in self.models[db])
        self.models[db].pop(key, None)

    @rule(db=DBS)
    def flush_db(self, db: int) -> None:
        self.db.flush_db(db)
        self.models[db] = {}

    @rule(a=DBS, b=DBS)
    def swap_dbs(self, a: int, b: int) -> None:
        self.db.swap_dbs(a, b)
        self.models[a], self.models[b] = self.models[b], self.models[a]

    @rule(key=KEYS, db=DBS)
    def create_collection(self, key: bytes, db: int) -> None:
        self.db.create_collection(key, 1, db=db)
        self._model_write(db, key, {})

    def _collections(self) -> list[tuple[int, bytes]]:
        return sorted((db, key) for db, model in enumerate(self.models)
                      for key, value in model.items() if isinstance(value, dict))

    @precondition(lambda self: self._collections())
    @rule(data=st.data(), field=KEYS, value=VALUES)
    def put_element(self, data, field: bytes, value: bytes) -> None:
        db, key = data.draw(st.sampled_from(self._collections()))
        self.db.put_element(key, field, value, db=db)
        self.models[db][key][field] = value

    @precondition(lambda self: self._collections())
    @rule(data=st.data(), field=KEYS)
    def delete_element(self, data, field: bytes) -> None:
        db, key = data.draw(st.sampled_from(self._collections()))
        elements = self.models[db][key]
        if elements and data.draw(st.booleans()):
            field = data.draw(st.sampled_from(sorted(elements)))
        assert self.db.delete_element(key, field, db=db) is (field in elements)
        elements.pop(field, None)

    @rule()
    def flush(self) -> None:
        self.db.flush()

    @rule()
    def compact(self) -> None:
        self.db.compact()

    @rule()
    def close_and_reopen(self) -> None:
        self.db.close()
        self.db = open_store(self.directory, engine=self.engine, segment_size=4096)

    @rule(key=KEYS, db=DBS)
    def get(self, key: bytes, db: int) -> None:
        expected = self.models[db].get(key)
        # (a collection's key reads as its metadata record's value: empty)
        assert self.db.get(key, db=db) == (b"" if isinstance(expected, dict) else expected)

    @invariant()
    def same_keys(self) -> None:
        if hasattr(self, "db"):
            assert len(self.db) == sum(map(len, self.models))
            for db, model in enumerate(self.models):
                assert self.db.count(db) == len(model)
                assert sorted(self.db.keys(db=db)) == sorted(model)
                for key, value in model.items():
                    if isinstance(value, dict):
                        assert self.db.collection_version(key, db=db)
                        assert self.db.get(key, db=db) == b""  # (its metadata record's)
                        assert sorted(self.db.element_names(key, db=db)) == sorted(value)
                        assert {f: self.db.get_element(key, f, db=db) for f in value} == value
                    else:
                        assert self.db.collection_version(key, db=db) == 0
                        assert self.db.get(key, db=db) == value
                for key in self.written - model.keys():  # gone: not even from a cache
                    assert self.db.get(key, db=db) is None
                # types: what the keyspace reads for WRONGTYPE (the log engine keeps them
                # as bits of the locations, with a count of the typed keys)
                assert {key: self.db.type_of(key, db=db) for key in self.written} == \
                    {key: kind_of(model[key]) if key in model else 0 for key in self.written}
                typed = {key for key, value in model.items() if kind_of(value)}
                assert len(self.db.types_of(db)) == len(typed)
                assert all(key in self.db.types_of(db) for key in typed)


    @invariant()
    def cache_counts_what_it_holds(self) -> None:
        cache = getattr(getattr(self, "db", None), "_cache", None)
        if cache is not None:  # (the log engine's)
            held = sum(map(len, cache.values()))
            assert self.db._cache_bytes == held + CACHE_ENTRY_OVERHEAD * len(cache)


class SqliteStoreMachine(StoreMachine):
    engine = "sqlite"


_settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLogStore = StoreMachine.TestCase
TestLogStore.settings = _settings
TestSqliteStore = SqliteStoreMachine.TestCase
TestSqliteStore.settings = _settings
