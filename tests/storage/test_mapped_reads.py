"""The log engine reads its segments through memory maps: no system call per GET, and every
record still CRC-checked. The active segment, which grows, is mapped again when a read
goes past its map; what is not written yet is read from the buffer."""

from __future__ import annotations

import os

import pytest

from storage import CorruptionError, LogStore, StorageError, logstore, open_store
from storage.layout import segment_ids, segment_name
from storage.logstore import PREADS_BEFORE_REMAP


@pytest.fixture
def sealed(tmp_path):
    store = open_store(str(tmp_path), fsync="no", segment_size=64 * 1024)
    for i in range(3000):
        store.put(b"key:%05d" % i, b"%05d" % i * 20)
    store.flush()
    store._cache_limit = 0  # every GET reads its record
    yield store
    store.close()


def test_gets_make_no_system_call_once_mapped(sealed, monkeypatch):
    assert len(segment_ids(sealed.directory)) > 3
    keys = [b"key:%05d" % i for i in range(3000)]  # sealed segments, then the active one
    preads = 0
    real_pread = os.pread

    def counted(*args):
        nonlocal preads
        preads += 1
        return real_pread(*args)

    def no_read(*args):
        raise AssertionError("a system call to read a record")

    monkeypatch.setattr(os, "pread", counted)
    monkeypatch.setattr(os, "read", no_read)
    for i, key in enumerate(keys):
        assert sealed.get(key) == b"%05d" % i * 20
    # Only the active segment's first few reads pread; then it is mapped too.
    assert preads == PREADS_BEFORE_REMAP


def counting_maps(store: LogStore) -> list[int]:
    """Count the store's mappings of its active segment (the list's one item)."""
    maps = [0]
    real_map = store._map_active

    def counted():
        maps[0] += 1
        real_map()

    store._map_active = counted  # type: ignore[method-assign]
    return maps


def test_the_active_segment_is_read_as_it_grows(sealed):
    active = segment_ids(sealed.directory)[-1]
    maps = counting_maps(sealed)
    for round_ in range(3):
        sealed.put_many([(b"new:%d:%d" % (round_, i), b"v%d" % i * 10) for i in range(20)])
        assert sealed.get(b"new:%d:19" % round_) == b"v19" * 10  # from the buffer
        sealed.flush()
        for i in range(20):  # written now: a few reads pread, then it is mapped further
            assert sealed.get(b"new:%d:%d" % (round_, i)) == b"v%d" % i * 10
        assert sealed.get(b"key:02999") == b"02999" * 20
    assert segment_ids(sealed.directory)[-1] == active and maps == [3]  # once per flush


def test_a_read_after_each_flush_preads_instead_of_mapping_again(sealed):
    """INCR's pattern, one read-modify-write per pass: the record written by the last
    flush is read with one pread, never by mapping the growing segment again."""
    maps = counting_maps(sealed)
    for i in range(20):
        current = sealed.get(b"counter") or b"0"
        assert current == b"%d" % i
        sealed.put(b"counter", b"%d" % (int(current) + 1))
        sealed.flush()
    assert sealed.get(b"counter") == b"20" and maps == [0]


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


def test_a_damaged_record_in_the_active_segment_is_reported(sealed):
    active = segment_ids(sealed.directory)[-1]
    path = os.path.join(sealed.directory, segment_name(active))
    with open(path, "r+b") as f:
        f.seek(-20, os.SEEK_END)  # inside the newest record's value
        byte = f.read(1)
        f.seek(-20, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CorruptionError, match=segment_name(active)):
        sealed.get(b"key:02999")
    assert sealed.get(b"key:02998") == b"02998" * 20


def test_the_value_cache_stays_within_its_bound_and_serves_the_newest(tmp_path):
    store = LogStore(str(tmp_path / "cache"), fsync="no", cache_size=64 * 1024)
    try:
        values = {b"k%04d" % i: os.urandom(1000) for i in range(2000)}
        store.put_many(list(values.items()))
        store.flush()
        for _ in range(2):
            for key, value in values.items():
                assert store.get(key) == value
                assert store._cache_bytes <= 64 * 1024
        assert len(store._cache) == 64 * 1024 // 1064  # the newest reads, oldest out first
        assert list(store._cache.values())[-1] == values[b"k1999"]
    finally:
        store.close()


def test_descriptors_stay_bounded_however_many_segments(tmp_path, monkeypatch):
    """One descriptor per segment ran out at the descriptor limit (EMFILE on writes,
    accepts paused): sealed segments are mapped when read, at most a fixed number."""
    monkeypatch.setattr(logstore, "MAX_MAPPED_SEGMENTS", 16)
    store = open_store(str(tmp_path), fsync="no", segment_size=4096)
    for i in range(1000):
        store.put(b"key:%04d" % i, b"%04d" % i * 1000)
    store.flush()
    store.close()
    before = len(os.listdir("/proc/self/fd"))
    store = open_store(str(tmp_path), fsync="no")
    store._cache_limit = 0
    assert store.stats().segments > 900
    for _ in range(2):
        for i in range(1000):
            assert store.get(b"key:%04d" % i) == b"%04d" % i * 1000
    assert store.stats().mapped_segments == 16
    assert len(os.listdir("/proc/self/fd")) - before <= 16 + 8
    store.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_segment_removed_behind_the_stores_back_fails_its_reads_by_name(tmp_path):
    store = open_store(str(tmp_path), fsync="no", segment_size=4096)
    for i in range(100):
        store.put(b"key:%03d" % i, b"x" * 200)
    store.flush()
    store.close()
    store = open_store(str(tmp_path), fsync="no")
    first = segment_ids(str(tmp_path))[0]
    os.unlink(os.path.join(str(tmp_path), segment_name(first)))
    with pytest.raises(StorageError, match=segment_name(first)):
        store.get(b"key:000")
    assert store.get(b"key:099") == b"x" * 200  # the others still read
    store.close()
