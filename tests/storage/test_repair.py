"""Salvaging a damaged data directory: intact records kept, damage reported, originals kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage import CorruptionError, open_store
from storage.repair import intact_records, repair
from tests.kvd_process import run_kvd

SEGMENT_SIZE = 8 << 10


def build(data_dir: str) -> dict[bytes, bytes]:
    expected = {}
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        for i in range(400):
            key, value = b"k%03d" % i, b"v%d" % i * 5
            db.put(key, value)
            expected[key] = value
    return expected


def damage(data_dir: str, segment_index: int, offset: int, length: int = 1) -> str:
    names = sorted(n for n in os.listdir(data_dir) if n.endswith(".seg"))
    path = os.path.join(data_dir, names[segment_index])
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(length)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))
    hint = path[:-4] + ".hint"
    if os.path.exists(hint):
        os.unlink(hint)  # make the open read the damaged data
    return names[segment_index]


def test_repair_keeps_every_intact_record_and_the_original(tmp_path):
    data_dir = str(tmp_path / "data")
    expected = build(data_dir)
    name = damage(data_dir, 1, 100, length=30)
    damaged_bytes = Path(os.path.join(data_dir, name)).read_bytes()
    with pytest.raises(CorruptionError):
        open_store(data_dir, segment_size=SEGMENT_SIZE)
    repairs = repair(data_dir)
    assert [r.segment for r in repairs] == [name]
    (report,) = repairs
    assert len(report.damaged) == 1 and report.damaged[0][0] <= 100 < report.damaged[0][1]
    assert 0 < report.bytes_dropped < 200
    assert Path(report.original).read_bytes() == damaged_bytes  # kept as it was
    with open_store(data_dir, segment_size=SEGMENT_SIZE) as db:
        lost = [k for k, v in expected.items() if db.get(k) != v]
        assert 1 <= len(lost) <= 3  # only the records the damage touched
        assert len(db) == len(expected) - len(lost)
    assert repair(data_dir) == []  # clean now


def test_intact_records_resynchronise_after_garbage(tmp_path):
    data_dir = str(tmp_path / "data")
    build(data_dir)
    seg = sorted(n for n in os.listdir(data_dir) if n.endswith(".seg"))[0]
    data = Path(os.path.join(data_dir, seg)).read_bytes()
    good, damaged = intact_records(data)
    assert damaged == [] and sum(size for _, size in good) == len(data)
    mangled = data[:50] + os.urandom(500) + data[50:]
    records, damaged = intact_records(mangled)
    assert len(damaged) >= 1
    assert len(records) >= len(good) - 2


def test_kvd_check_repair_then_the_server_starts(tmp_path):
    data_dir = str(tmp_path / "data")
    expected = build(data_dir)
    damage(data_dir, 2, 40)
    check = run_kvd(["check", "--data-dir", data_dir], cwd=tmp_path)
    assert check.returncode == 1 and "offset" in check.stderr
    repaired = run_kvd(["check", "--data-dir", data_dir, "--repair"], cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "repaired " in repaired.stderr and "original kept as" in repaired.stderr
    assert '"keys":' in repaired.stdout
    start = run_kvd(["start", "--data-dir", data_dir, "--port", "0"], cwd=tmp_path)
    try:
        assert start.returncode == 0, start.stderr
    finally:
        run_kvd(["stop"], cwd=tmp_path)
    with open_store(data_dir) as db:
        assert sum(db.get(k) == v for k, v in expected.items()) >= len(expected) - 3
