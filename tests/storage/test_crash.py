"""Crash tests: a real child process writes and compacts; we SIGKILL it; reopen and check.

After each kill the store must hold, for every key, either its last
acknowledged value (or absence, after an acknowledged delete) or the result of
an operation issued after the last acknowledgement -- never an older value.
An older value is a lost write; an older value after a delete is a resurrection.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest

from storage import open_store
from storage.layout import COMPACTION_DIR

from .crash_child import BATCH_KEYS, KEYS, SEGMENT_SIZE, workload

ALL_KEYS = KEYS + BATCH_KEYS

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")
_MISSING = object()


def start_child(data_dir: str, engine: str, seed: int, ops: int, kill_at: int | None = None):
    args = [sys.executable, CHILD, data_dir, engine, str(seed), str(ops)]
    if kill_at is not None:
        args.append(str(kill_at))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def allowed_values(ops: list[tuple], acked: int, initial: dict) -> dict[bytes, set]:
    """Per key: the values (None = absent) a correct store may hold after a crash.

    `initial` is what the store held before the child started.
    """
    state: dict[bytes, bytes | None] = dict(initial)
    for op in ops[:acked]:
        for key, value in _writes(op):
            state[key] = value
    allowed = {key: {state.get(key)} for key in ALL_KEYS}
    for op in ops[acked:]:
        for key, value in _writes(op):
            allowed[key].add(value)
    return allowed


def _writes(op: tuple) -> list[tuple[bytes, bytes | None]]:
    """(key, value or None for a delete) of each write an operation makes."""
    if op[0] == "put":
        return [(op[1], op[2])]
    if op[0] == "delete":
        return [(op[1], None)]
    if op[0] == "batch":
        return op[1]
    return []


def check_store(
    data_dir: str, engine: str, ops: list[tuple], acked: int, initial: dict | None = None
) -> dict:
    """Reopen after a crash, check every key, and return what the store holds.

    Then write to the recovered store and reopen it once more: recovery must
    leave files that take new writes, not just files that read back once.
    """
    allowed = allowed_values(ops, acked, initial or {})
    with open_store(data_dir, engine=engine, segment_size=SEGMENT_SIZE) as db:
        held = {key: db.get(key) for key in ALL_KEYS}
        for key, value in held.items():
            assert value in allowed[key], (
                f"{key!r} holds {value!r:.40}, allowed {[v if v is None else v[:12] for v in allowed[key]]}"
            )
        first, last = (held[key] for key in BATCH_KEYS)
        assert first == last, f"a write batch was applied in part: {first!r} vs {last!r}"
        assert sorted(db.keys()) == sorted(k for k, v in held.items() if v is not None)
        db.put(b"after-crash", b"x" * 100)
        db.flush()
    with open_store(data_dir, engine=engine, segment_size=SEGMENT_SIZE) as db:
        assert db.get(b"after-crash") == b"x" * 100
        assert {key: db.get(key) for key in ALL_KEYS} == held
        db.delete(b"after-crash")
    names = os.listdir(data_dir)
    assert COMPACTION_DIR not in names, "half-done compaction output left behind"
    assert not [n for n in names if n.endswith(".tmp")], f"temp files left: {names}"
    return {k: v for k, v in held.items() if v is not None}


def read_acks(child) -> tuple[int, int | None]:
    """The last acknowledged op count, and the step total if the child finished."""
    acked, steps = 0, None
    for line in child.stdout:
        word, _, number = line.partition(" ")
        if word == "ack":
            acked = int(number)
        elif word == "steps":
            steps = int(number)
    return acked, steps


@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_sigkill_at_random_moments(tmp_path, engine):
    """Kill the writer at random points, many times, on one growing data directory."""
    data_dir = str(tmp_path / "data")
    rng = random.Random(20261123)
    kills = 40 if engine == "log" else 15
    held: dict = {}
    for _ in range(kills):
        seed = rng.randrange(1 << 30)
        ops = workload(seed, 400)
        child = start_child(data_dir, engine, seed, 400)
        target = rng.randrange(1, 60)
        acked = 0
        for line in child.stdout:  # wait until it is mid-workload, then kill it
            if line.startswith("ack"):
                acked = int(line.split()[1])
                if acked >= target:
                    break
        child.send_signal(signal.SIGKILL)
        rest, _ = read_acks(child)
        acked = max(acked, rest)
        child.wait(timeout=30)
        held = check_store(data_dir, engine, ops, acked, held)


def test_sigkill_at_every_file_system_step(tmp_path):
    """Kill before each state-changing file-system call of a workload with compactions.

    Every write, fsync, rename and unlink of puts, flushes, rotations, hint
    writes and each compaction step gets its own crash, on a fresh directory
    with data from an earlier, cleanly finished run underneath.
    """
    seed, count = 7, 160
    ops = workload(seed, count)
    assert sum(op[0] == "compact" for op in ops) >= 2
    base = str(tmp_path / "base")
    child = start_child(base, "log", seed + 1, 120)
    read_acks(child)
    assert child.wait(timeout=60) == 0
    base_held = check_store(base, "log", workload(seed + 1, 120), 121)

    probe = start_child(str(tmp_path / "probe"), "log", seed, count, kill_at=10**9)
    _, total = read_acks(probe)
    probe.wait(timeout=60)
    assert total and total > 50, f"expected many file-system steps, counted {total}"

    for kill_at in range(1, total + 1):
        data_dir = str(tmp_path / f"kill-{kill_at}")
        subprocess.run(["cp", "-a", base, data_dir], check=True)
        child = start_child(data_dir, "log", seed, count, kill_at=kill_at)
        acked, finished = read_acks(child)
        assert child.wait(timeout=60) == -signal.SIGKILL, f"step {kill_at}: {child.stderr.read()}"
        assert finished is None
        check_store(data_dir, "log", ops, acked, base_held)
        subprocess.run(["rm", "-rf", data_dir], check=True)
