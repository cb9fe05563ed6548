"""The log engine reads sealed segments through memory maps: no system call per GET, and
every record still CRC-checked."""

from __future__ import annotations

import os

import pytest

from storage import CorruptionError, open_store
from storage.layout import segment_ids, segment_name


@pytest.fixture
def sealed(tmp_path):
    store = open_store(str(tmp_path), fsync="no", segment_size=64 * 1024)
    for i in range(3000):
        store.put(b"key:%05d" % i, b"%05d" % i * 20)
    store.flush()
    store._cache_limit = 0  # every GET reads its record
    yield store
    store.close()


def test_gets_of_sealed_segments_make_no_system_call(sealed, monkeypatch):
    assert len(segment_ids(sealed.directory)) > 3
    sealed_keys = [b"key:%05d" % i for i in range(1000)]  # the oldest: in sealed segments

    def no_pread(*args):
        raise AssertionError("pread for a sealed segment")

    monkeypatch.setattr(os, "pread", no_pread)
    for i, key in enumerate(sealed_keys):
        assert sealed.get(key) == b"%05d" % i * 20


def test_a_damaged_record_in_a_mapped_segment_is_reported(sealed):
    first = segment_ids(sealed.directory)[0]
    path = os.path.join(sealed.directory, segment_name(first))
    with open(path, "r+b") as f:  # one bit flipped under the map (shared with the file)
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x10]))
    damaged = 0
    for i in range(300):
        try:
            sealed.get(b"key:%05d" % i)
        except CorruptionError as exc:
            damaged += 1
            assert segment_name(first) in str(exc)
    assert damaged == 1
