"""A damaged record met while serving is told, not only to the client that read it: logged
once with its file and offset, counted; and a compaction keeps it aside and goes on
rather than failing every time it runs."""

from __future__ import annotations

import logging
import os

import pytest

from storage import CorruptionError, open_store
from storage.layout import CORRUPT_DIR, segment_ids, segment_name

SEGMENT_SIZE = 4096


def damage_value(data_dir: str, value: bytes) -> str:
    """Flip a byte in the middle of `value` where a sealed segment holds it; its file."""
    for segment_id in segment_ids(data_dir)[:-1]:
        path = os.path.join(data_dir, segment_name(segment_id))
        with open(path, "r+b") as f:
            data = f.read()
            at = data.find(value)
            if at >= 0:
                f.seek(at + len(value) // 2)
                f.write(bytes([data[at + len(value) // 2] ^ 0xFF]))
                return path
    raise AssertionError("value not found in a sealed segment")


@pytest.fixture
def damaged(tmp_path):
    data_dir = str(tmp_path / "data")
    db = open_store(data_dir, segment_size=SEGMENT_SIZE)
    for i in range(400):
        db.put(b"key-%03d" % i, b"value-%03d-" % i * 4)
    db.flush()
    path = damage_value(data_dir, b"value-123-" * 4)
    yield db, data_dir, path
    db.close()


def test_a_damaged_record_read_twice_is_logged_once_and_counted(damaged, caplog):
    db, _, path = damaged
    with caplog.at_level(logging.ERROR, logger="kvd.storage"):
        for _ in range(2):
            with pytest.raises(CorruptionError):
                db.get(b"key-123")
    lines = [r.getMessage() for r in caplog.records if "corrupt record" in r.getMessage()]
    assert len(lines) == 1 and path in lines[0] and "offset" in lines[0]
    assert db.stats().corrupt_records == 1
    assert db.get(b"key-124") == b"value-124-" * 4


def test_compaction_keeps_a_damaged_record_aside_and_finishes(damaged, caplog):
    db, data_dir, _ = damaged
    with caplog.at_level(logging.ERROR, logger="kvd.storage"):
        db.compact()  # would raise on the damaged record, every time, before
    assert "key-123" in caplog.text and "is damaged; the key is dropped" in caplog.text
    kept = os.listdir(os.path.join(data_dir, CORRUPT_DIR))
    assert len(kept) == 1 and kept[0].endswith(".record")
    assert db.get(b"key-123") is None and db.stats().corrupt_records == 1
    assert db.get(b"key-122") == b"value-122-" * 4
    db.compact()  # and the next one has nothing to complain about
    db.close()
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as again:
        assert again.get(b"key-123") is None and len(again) == 399


def test_a_key_compaction_drops_is_not_served_from_the_value_cache(tmp_path):
    """Read (and cached) while intact, damaged on disk later: once compaction drops the
    key, a GET answers nothing rather than the value it remembered."""
    data_dir = str(tmp_path / "data")
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        for i in range(400):
            db.put(b"key-%03d" % i, b"value-%03d-" % i * 4)
        db.flush()
        assert db.get(b"key-123") == b"value-123-" * 4
        damage_value(data_dir, b"value-123-" * 4)
        db.compact()
        assert db.get(b"key-123") is None
        assert db.get(b"key-122") == b"value-122-" * 4
