"""Torn tails are truncated and logged; damage anywhere else is reported, never served."""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from storage import CorruptionError, hints, open_store, record
from storage.layout import FORMAT_VERSION, hint_name, segment_ids, segment_name

SEGMENT_SIZE = 4096


def fill(data_dir: str, count: int = 150) -> dict[bytes, bytes]:
    expected = {}
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        for i in range(count):
            key, value = b"key-%03d" % i, b"value-%d-" % i * (i % 7 + 1)
            db.put(key, value)
            expected[key] = value
        db.delete(b"key-000")
        del expected[b"key-000"]
        db.put(b"last", b"the final record")
        expected[b"last"] = b"the final record"
    return expected


def newest_segment(data_dir: str) -> str:
    return os.path.join(data_dir, segment_name(segment_ids(data_dir)[-1]))


def records_of(path: str) -> list[record.Entry]:
    return record.scan(path).entries


def copy_cut_at(original: str, data_dir: str, cut: int) -> str:
    """A copy of the data directory `original` whose newest segment ends at byte `cut`."""
    shutil.copytree(original, data_dir)
    with open(newest_segment(data_dir), "r+b") as f:
        f.truncate(cut)
    return data_dir


def drop_hints(data_dir: str) -> None:
    for segment_id in segment_ids(data_dir):
        path = os.path.join(data_dir, hint_name(segment_id))
        if os.path.exists(path):
            os.unlink(path)


def test_torn_tail_is_truncated_at_every_byte_offset(tmp_path, caplog):
    original = str(tmp_path / "original")
    expected = fill(original)
    segment = newest_segment(original)
    last = records_of(segment)[-1]
    assert last.key == b"last"
    without_last = {k: v for k, v in expected.items() if k != b"last"}
    for cut in range(last.offset, last.offset + last.size):
        data_dir = copy_cut_at(original, str(tmp_path / f"cut-{cut}"), cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kvd.storage"):
            with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
                assert {k: db.get(k) for k in db.keys()} == without_last
                db.put(b"after", b"repair")  # the file takes appends again
        if cut > last.offset:
            assert f"truncating torn tail of {newest_segment(data_dir)} at offset {last.offset}" \
                in caplog.text
            assert f"{cut - last.offset} bytes dropped" in caplog.text
        with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
            assert db.get(b"after") == b"repair"
            assert len(db) == len(without_last) + 1
        shutil.rmtree(data_dir)


def test_zero_filled_tail_is_truncated(tmp_path, caplog):
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    with open(newest_segment(data_dir), "ab") as f:
        f.write(b"\0" * 5000)
    with caplog.at_level(logging.WARNING, logger="kvd.storage"):
        with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
            assert {k: db.get(k) for k in db.keys()} == expected
    assert "zero-filled tail" in caplog.text


def flip_bit(path: str, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


@pytest.mark.parametrize("where", ["newest", "older"])
def test_bit_flip_in_any_byte_of_a_middle_record_stops_open(tmp_path, where):
    """Without hints, open scans every record: each flipped bit is reported by file and offset."""
    original = str(tmp_path / "original")
    fill(original)
    ids = segment_ids(original)
    assert len(ids) >= 3
    segment_id = ids[-1] if where == "newest" else ids[len(ids) // 2]
    entries = records_of(os.path.join(original, segment_name(segment_id)))
    assert len(entries) >= 3
    victim = entries[len(entries) // 2]
    for i in range(victim.size):
        data_dir = str(tmp_path / f"flip-{i}")
        shutil.copytree(original, data_dir)
        drop_hints(data_dir)
        path = os.path.join(data_dir, segment_name(segment_id))
        flip_bit(path, victim.offset + i, i % 8)
        with pytest.raises(CorruptionError) as info:
            open_store(data_dir, segment_size=SEGMENT_SIZE)
        assert info.value.path == path
        assert info.value.offset == victim.offset
        assert f"{path} at offset {victim.offset}" in str(info.value)
        shutil.rmtree(data_dir)


def test_bit_flip_in_the_last_complete_record_is_not_taken_for_a_torn_tail(tmp_path):
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    drop_hints(data_dir)
    last = records_of(newest_segment(data_dir))[-1]
    flip_bit(newest_segment(data_dir), last.offset + last.size - 1, 3)
    with pytest.raises(CorruptionError):
        open_store(data_dir, segment_size=SEGMENT_SIZE)


def test_corrupt_record_behind_a_hint_is_refused_on_read_and_kept_aside_by_compaction(tmp_path):
    """With hints, open reads no data; the damage is then caught when the record is read,
    and a compaction keeps the damaged record in corrupt/ instead of failing (the key,
    unreadable since the damage, is dropped; see test_damaged_records.py)."""
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    older = segment_ids(data_dir)[1]
    path = os.path.join(data_dir, segment_name(older))
    victim = records_of(path)[0]
    flip_bit(path, victim.offset + victim.size - 2, 0)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        with pytest.raises(CorruptionError, match="checksum mismatch"):
            db.get(victim.key)
        db.compact()
        # every other key still reads back
        for key, value in expected.items():
            if key != victim.key:
                assert db.get(key) == value
        assert db.get(victim.key) is None
        assert len(os.listdir(os.path.join(data_dir, "corrupt"))) == 1
        assert not os.path.exists(os.path.join(data_dir, "compaction"))


def test_damaged_hint_is_ignored_and_the_segment_scanned(tmp_path, caplog):
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    hint = os.path.join(data_dir, hint_name(segment_ids(data_dir)[0]))
    flip_bit(hint, os.path.getsize(hint) // 2, 5)
    with caplog.at_level(logging.WARNING, logger="kvd.storage"):
        with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
            assert {k: db.get(k) for k in db.keys()} == expected
    assert f"ignoring unusable hint file {hint}" in caplog.text


def test_hint_covering_more_than_its_segment_is_ignored(tmp_path):
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    segment = newest_segment(data_dir)
    last = records_of(segment)[-1]
    with open(segment, "r+b") as f:  # the hint (written at close) now claims bytes that are gone
        f.truncate(last.offset)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert db.get(b"last") is None
        assert db.get(b"key-001") is not None


def test_start_up_reads_hints_not_data(tmp_path, monkeypatch):
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    scanned = []
    real_scan = record.scan

    def counting_scan(path, start=0):
        result = real_scan(path, start)
        scanned.append(result.valid_end - start)
        return result

    monkeypatch.setattr(record, "scan", counting_scan)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in db.keys()} == expected
    assert scanned and sum(scanned) == 0, "every segment, the active one too, had a hint"


def test_hint_rows_are_replayed_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    """A segment's hint rows are unpacked and replayed a chunk at a time (start-up holds
    one chunk, not a million rows); chunks as small as 3 rows give the same store."""
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        db.create_collection(b"hash", 1)
        for i in range(20):
            db.put_element(b"hash", b"f%d" % i, b"v%d" % i)
        db.delete_element(b"hash", b"f3")
    monkeypatch.setattr(hints, "CHUNK_ROWS", 3)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in db.keys() if k != b"hash"} == expected
        assert sorted(db.element_names(b"hash")) == sorted(b"f%d" % i for i in range(20)
                                                           if i != 3)


def test_hint_rows_of_the_wrong_shape_after_the_first_chunk_stop_the_start(tmp_path,
                                                                          monkeypatch):
    """Rows under a valid CRC that are not rows (a bug, not damage) past the first chunk,
    when earlier ones were applied already: the start stops, naming the hint file."""
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    hint = os.path.join(data_dir, hint_name(segment_ids(data_dir)[0]))
    covered, rows = hints.read(hint)
    packed = b"".join(record.pack(tuple(row)) for row in rows[:5])
    hints.write(hint, covered, packed + record.pack((b"odd", 1)), fsync=False)
    monkeypatch.setattr(hints, "CHUNK_ROWS", 2)
    with pytest.raises(CorruptionError, match="hint rows of an unexpected shape"):
        open_store(data_dir, segment_size=SEGMENT_SIZE)


def test_the_active_segments_hint_stays_on_disk_and_is_joined_at_close(tmp_path, monkeypatch):
    """At open, the rows the newest segment's hint file holds are replayed and left in the
    file, not kept in memory; at close (or rotation) the hint is rewritten whole."""
    data_dir = str(tmp_path / "data")
    with open_store(data_dir) as db:  # one segment, the active one
        db.put_many([(b"old-%d" % i, b"v%d" % i) for i in range(500)])
    with open_store(data_dir) as db:
        assert len(db._active_hints) == 0  # 500 rows in the file, none in memory
        db.put_many([(b"new-%d" % i, b"w%d" % i) for i in range(200)])
        db.delete(b"old-3")
    hint = os.path.join(data_dir, hint_name(segment_ids(data_dir)[-1]))
    covered, rows = hints.read(hint)
    assert covered == os.path.getsize(newest_segment(data_dir)) and len(rows) == 701
    scanned = []
    real_scan = record.scan
    monkeypatch.setattr(record, "scan", lambda path, start=0: scanned.append(start) or
                        real_scan(path, start))
    with open_store(data_dir) as db:
        assert len(db) == 699 and db.get(b"old-3") is None and db.get(b"new-199") == b"w199"
    assert scanned == [covered]  # nothing left to scan


def test_a_hint_changed_while_open_is_not_rewritten_and_the_segment_scanned(tmp_path, caplog):
    data_dir = str(tmp_path / "data")
    with open_store(data_dir) as db:
        db.put_many([(b"old-%d" % i, b"v%d" % i) for i in range(500)])
    hint = os.path.join(data_dir, hint_name(segment_ids(data_dir)[-1]))
    with caplog.at_level(logging.WARNING, logger="kvd.storage"):
        with open_store(data_dir) as db:
            db.put(b"new", b"w")
            flip_bit(hint, os.path.getsize(hint) // 2, 3)
        assert f"hint file {hint} changed while the store was open" in caplog.text
        with open_store(data_dir) as db:
            assert len(db) == 501 and db.get(b"new") == b"w" and db.get(b"old-7") == b"v7"
        assert f"ignoring unusable hint file {hint}" in caplog.text


def test_full_disk_fails_the_flush_cleanly_and_a_retry_succeeds(tmp_path, monkeypatch):
    """ENOSPC half-way through a write: the partial bytes are cut off, nothing is lost."""
    import errno

    from storage import StorageError

    data_dir = str(tmp_path / "data")
    db = open_store(data_dir, segment_size=1 << 20)
    db.put(b"before", b"durable")
    db.flush()
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a short write...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    for i in range(20):
        db.put(b"pending-%d" % i, b"x" * 100)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageError, match="No space left on device"):
        db.flush()
    monkeypatch.setattr(os, "write", real_write)
    tail = records_of(newest_segment(data_dir))[-1]
    assert tail.key == b"before"
    assert os.path.getsize(newest_segment(data_dir)) == tail.offset + tail.size, \
        "the partial write was cut off"
    db.flush()  # space is back: the same writes go through
    db.close()
    with open_store(data_dir, segment_size=1 << 20) as db:
        assert db.get(b"before") == b"durable"
        assert all(db.get(b"pending-%d" % i) == b"x" * 100 for i in range(20))


@pytest.mark.slow
def test_everysec_fsyncs_in_the_background(tmp_path, monkeypatch):
    import threading

    data_dir = str(tmp_path / "data")
    synced = threading.Event()
    real_fdatasync = os.fdatasync

    def watching_fdatasync(fd):
        real_fdatasync(fd)
        if threading.current_thread().name == "kvd-fsync":
            synced.set()

    monkeypatch.setattr(os, "fdatasync", watching_fdatasync)
    with open_store(data_dir, fsync="everysec") as db:
        db.put(b"k", b"v")
        db.flush()
        assert synced.wait(timeout=10), "no background fsync after a flush"


def test_a_batch_cut_at_any_byte_is_dropped_whole(tmp_path, caplog):
    """A write batch torn anywhere -- in its marker, between its records, inside one --
    is replayed not at all; cut at its end, it is replayed whole."""
    original = str(tmp_path / "original")
    expected = fill(original)
    batch = {b"key-%03d" % i: b"batch-%d" % i for i in range(1, 6)}
    batch[b"new"] = b"batch-new"
    with open_store(original, segment_size=SEGMENT_SIZE) as db:
        db.write_batch(list(batch.items()) + [(b"last", None)])
    after = {**expected, **batch}
    del after[b"last"]
    segment = newest_segment(original)
    entries = records_of(segment)
    marker = next(e for e in entries if e.flags & record.BATCH)
    end = marker.offset + marker.size + marker.expires_at_ms
    assert end == entries[-1].offset + entries[-1].size == os.path.getsize(segment)
    for cut in range(marker.offset, end + 1):
        data_dir = copy_cut_at(original, str(tmp_path / f"cut-{cut}"), cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kvd.storage"):
            with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
                assert {k: db.get(k) for k in db.keys()} == (after if cut == end else expected)
                db.put(b"after", b"repair")
        if marker.offset < cut < end:
            assert (f"truncating torn tail of {newest_segment(data_dir)} at offset "
                    f"{marker.offset}: {cut - marker.offset} bytes dropped") in caplog.text
            if cut >= marker.offset + marker.size:  # (a cut marker is a torn record itself)
                assert "(an unfinished write batch" in caplog.text
        with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
            assert db.get(b"after") == b"repair"
        shutil.rmtree(data_dir)


def test_a_version_1_directory_is_upgraded_and_then_refused_by_version_1(tmp_path):
    import json

    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    meta = os.path.join(data_dir, "META")
    with open(meta, "w") as f:
        json.dump({"engine": "log", "format": 1}, f)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in db.keys()} == expected
    with open(meta) as f:
        assert json.load(f) == {"engine": "log", "format": FORMAT_VERSION}


def test_a_transaction_batch_cut_at_any_byte_is_dropped_whole(tmp_path):
    """The marker of a batch whose size was known only at its end (begin/end_batch)."""
    original = str(tmp_path / "original")
    expected = fill(original)
    with open_store(original, segment_size=SEGMENT_SIZE) as db:
        db.begin_batch()
        db.put(b"key-001", b"in the transaction")
        db.expire(b"key-002", 4_000_000_000_000)
        db.delete(b"key-003")
        db.end_batch()
    entries = records_of(newest_segment(original))
    marker = next(e for e in entries if e.flags & record.BATCH)
    assert marker.size == record.BATCH_MARKER_SIZE
    end = marker.offset + marker.size + marker.expires_at_ms
    assert end == os.path.getsize(newest_segment(original))
    after = {**expected, b"key-001": b"in the transaction"}
    del after[b"key-003"]
    for cut in range(marker.offset, end + 1):
        data_dir = copy_cut_at(original, str(tmp_path / f"cut-{cut}"), cut)
        with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
            assert {k: db.get(k) for k in db.keys()} == (after if cut == end else expected)
            assert db.deadline(b"key-002") == (4_000_000_000_000 if cut == end else 0)
        shutil.rmtree(data_dir)
