"""The data directory knows its segments: a segment that goes missing, or one that is not
its own, stops the open with the file named -- keys never vanish or come back silently
-- and `kvd check --repair` is the way to accept the loss."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from storage import IntegrityError, open_store
from storage.layout import SEGMENTS, hint_name, segment_ids, segment_name
from storage.repair import ListRepair, repair
from tests.kvd_process import run_kvd

SEGMENT_SIZE = 4096


def fill(data_dir: str, count: int = 1000) -> dict[bytes, bytes]:
    expected = {}
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        for i in range(count):
            expected[b"key-%04d" % i] = b"value-%d" % i
            db.put(b"key-%04d" % i, b"value-%d" % i)
    return expected


def test_a_new_directory_lists_each_segment_as_it_is_started(tmp_path):
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    listed = json.loads(Path(os.path.join(data_dir, SEGMENTS)).read_text())["segments"]
    assert listed == segment_ids(data_dir) and len(listed) > 10


def test_a_deleted_segment_stops_the_open_naming_it(tmp_path):
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    gone = segment_ids(data_dir)[3]
    os.unlink(os.path.join(data_dir, segment_name(gone)))
    os.unlink(os.path.join(data_dir, hint_name(gone)))
    with pytest.raises(IntegrityError, match=segment_name(gone) + ".*lost"):
        open_store(data_dir, segment_size=SEGMENT_SIZE)


def test_a_segment_from_elsewhere_stops_the_open_naming_it(tmp_path):
    data_dir, other = str(tmp_path / "data"), str(tmp_path / "other")
    fill(data_dir)
    fill(other, 50)
    stray = segment_ids(data_dir)[-1] + 5
    shutil.copy(os.path.join(other, segment_name(1)), os.path.join(data_dir, segment_name(stray)))
    with pytest.raises(IntegrityError, match="not this directory's: " + segment_name(stray)):
        open_store(data_dir, segment_size=SEGMENT_SIZE)


def test_a_new_segment_a_crash_left_unlisted_is_taken_in(tmp_path):
    """The window between creating the next segment and listing it: it is empty."""
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    newest = segment_ids(data_dir)[-1]
    open(os.path.join(data_dir, segment_name(newest + 1)), "wb").close()
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in expected} == expected
    assert newest + 1 in json.loads(Path(os.path.join(data_dir, SEGMENTS)).read_text())["segments"]


def test_a_directory_from_before_the_list_opens_and_gets_one(tmp_path):
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    os.unlink(os.path.join(data_dir, SEGMENTS))
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in expected} == expected
    assert os.path.exists(os.path.join(data_dir, SEGMENTS))


def test_compaction_keeps_the_list_in_step(tmp_path):
    data_dir = str(tmp_path / "data")
    expected = fill(data_dir)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        for i in range(0, 1000, 2):
            db.put(b"key-%04d" % i, b"new")
            expected[b"key-%04d" % i] = b"new"
        db.compact()
    listed = json.loads(Path(os.path.join(data_dir, SEGMENTS)).read_text())["segments"]
    assert listed == segment_ids(data_dir)
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert {k: db.get(k) for k in expected} == expected


def test_repair_accepts_the_loss_and_moves_strays_aside(tmp_path):
    data_dir = str(tmp_path / "data")
    fill(data_dir)
    ids = segment_ids(data_dir)
    os.unlink(os.path.join(data_dir, segment_name(ids[2])))
    stray = ids[-1] + 7
    shutil.copy(os.path.join(data_dir, segment_name(ids[0])),
                os.path.join(data_dir, segment_name(stray)))
    report = [r for r in repair(data_dir) if isinstance(r, ListRepair)]
    assert report[0].missing == [segment_name(ids[2])]
    assert [name for name, _ in report[0].moved_aside] == [segment_name(stray)]
    assert os.path.exists(os.path.join(data_dir, "corrupt", segment_name(stray)))
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        assert 800 < len(db) < 1000  # the keys of the lost segment are gone, no others


def test_kvd_start_and_check_fail_naming_a_missing_segment(tmp_path):
    data_dir = str(tmp_path / "kvd-data")
    fill(data_dir)
    gone = segment_ids(data_dir)[1]
    os.unlink(os.path.join(data_dir, segment_name(gone)))
    checked = run_kvd(["check", "--data-dir", data_dir], cwd=tmp_path)
    assert checked.returncode == 1 and segment_name(gone) in checked.stderr
    started = run_kvd(["start", "--data-dir", data_dir, "--port", "0", "--socket",
                       str(tmp_path / "kvd.sock")], cwd=tmp_path)
    assert started.returncode == 1 and segment_name(gone) in started.stderr
    repaired = run_kvd(["check", "--data-dir", data_dir, "--repair"], cwd=tmp_path)
    assert repaired.returncode == 0 and f"unlisted {segment_name(gone)}" in repaired.stderr
