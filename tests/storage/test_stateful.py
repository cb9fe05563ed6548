"""A Hypothesis state machine: the store against a dict, through reopen and compaction."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage import open_store

pytestmark = pytest.mark.slow

KEYS = st.one_of(
    st.sampled_from([b"", b"a", b"b", b"\x00", b"\xff\xfe", b"key with spaces", b"a" * 300]),
    st.binary(max_size=20),
)
VALUES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\x00" * 10, b"\r\n"]),
    # occasionally a large value, so records span segments and outgrow buffers
    st.integers(min_value=0, max_value=255).map(lambda b: bytes([b]) * ((1 << 20) + 17)),
)


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
        self.model: dict[bytes, bytes] = {}

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(key=KEYS, value=VALUES)
    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)
        self.model[key] = value

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_existing(self, data) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.db.delete(key) is True
        del self.model[key]

    @rule(key=KEYS)
    def delete_any(self, key: bytes) -> None:
        assert self.db.delete(key) is (key in self.model)
        self.model.pop(key, None)

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

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.db.get(key) == self.model.get(key)

    @invariant()
    def same_keys(self) -> None:
        if hasattr(self, "db"):
            assert len(self.db) == len(self.model)
            assert sorted(self.db.keys()) == sorted(self.model)
            for key, value in self.model.items():
                assert self.db.get(key) == value


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
