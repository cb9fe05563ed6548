"""Large values are written from where they lie and read through the segment's map, so a
60 MB value costs one copy each way instead of three: the records are the same bytes, in
the same order, checked the same way."""

from __future__ import annotations

import errno
import os

import pytest

from storage import StorageError, open_store, record
from storage.layout import segment_ids, segment_name
from storage.logstore import BIG_RECORD

SIZES = [0, 1, 255, 256, 65_535, 65_536, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_a_record_in_pieces_is_the_record_whole(size):
    value = os.urandom(size)
    for key in (b"", b"k", b"k" * 300):
        for flags, deadline, slot in ((0, 0, 0), (record.EXPIRY, 2**40, 0), (0, 0, 7),
                                      (0, 5, 2**20)):
            head, middle, tail = record.encode_parts(key, value, flags, deadline,
                                                     1_700_000_000_000, slot)
            assert middle is value
            assert head + middle + tail == record.encode(key, value, flags, deadline,
                                                         1_700_000_000_000, slot)


def big(i: int) -> bytes:
    return bytes([i]) * (BIG_RECORD + i)


def test_large_values_keep_their_order_among_small_ones_across_rotation(tmp_path):
    store = open_store(str(tmp_path), fsync="no", segment_size=4 * BIG_RECORD)
    expected = {}
    for i in range(12):
        pairs = [(b"small:%d" % i, b"s%d" % i), (b"big:%d" % (i % 5), big(i)),
                 (b"small:%d" % i, b"t%d" % i)]
        store.put_many(pairs)
        store.put(b"put:%d" % (i % 3), big(i), 2**42)
        expected.update(pairs)
        expected[b"put:%d" % (i % 3)] = big(i)
        assert all(store.get(k) == v for k, v in expected.items())
    store.flush()
    store.close()
    store = open_store(str(tmp_path), fsync="no")
    assert {k: store.get(k) for k in expected} == expected
    assert len(segment_ids(str(tmp_path))) > 3  # the large values rotated segments
    store.close()


def test_a_large_value_in_a_write_batch_is_buffered_with_it(tmp_path):
    store = open_store(str(tmp_path), fsync="no")
    store.write_batch([(b"a", big(1)), (b"b", b"small")])
    store.begin_batch()
    store.put(b"c", big(2))
    store.end_batch()
    store.flush()
    store.close()
    store = open_store(str(tmp_path), fsync="no")
    assert [store.get(k) for k in (b"a", b"b", b"c")] == [big(1), b"small", big(2)]
    store.close()


def test_a_failed_large_write_leaves_the_segment_as_it_was(tmp_path, monkeypatch):
    store = open_store(str(tmp_path), fsync="no")
    store.put(b"before", b"kept")
    real_write = os.write

    def half_then_full(fd, data):
        if len(data) >= BIG_RECORD:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError, match="No space left"):
        store.put(b"big", big(3))
    monkeypatch.undo()
    assert store.get(b"big") is None and store.get(b"before") == b"kept"
    store.put(b"after", b"written")
    store.flush()
    store.close()
    store = open_store(str(tmp_path), fsync="no")
    assert [store.get(k) for k in (b"before", b"big", b"after")] == [b"kept", None, b"written"]
    store.close()


def test_a_damaged_large_record_is_reported_not_returned(tmp_path):
    store = open_store(str(tmp_path), fsync="no")
    store.put(b"big", big(2))
    store.flush()
    path = os.path.join(str(tmp_path), segment_name(segment_ids(str(tmp_path))[-1]))
    with open(path, "r+b") as segment:
        segment.seek(BIG_RECORD // 2)
        segment.write(b"\xff\x00\xff")
    store._cache_limit = 0
    with pytest.raises(Exception, match="checksum"):
        store.get(b"big")
    store.close()
