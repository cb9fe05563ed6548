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
import time

import pytest

from storage import open_store
from storage.layout import COMPACTION_DIR

from .crash_child import BATCH_KEYS, DATABASES, KEYS, SEGMENT_SIZE, workload

pytestmark = pytest.mark.slow

# The batch keys are written in database 0 only, but SWAPDB takes them anywhere.
ALL_KEYS = KEYS + [(db, key) for db in range(DATABASES) for _, key in BATCH_KEYS]

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")
_MISSING = object()


NOW_MS = time.time_ns() // 1_000_000  # what the workloads' deadlines are relative to


def start_child(data_dir: str, engine: str, seed: int, ops: int, kill_at: int | None = None):
    args = [sys.executable, CHILD, data_dir, engine, str(seed), str(ops)]
    if kill_at is not None:
        args.append(str(kill_at))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KVD_CRASH_NOW_MS": str(NOW_MS)})


# ((value, type), deadline in Unix ms or 0), or None for an absent key
State = tuple


def allowed_states(ops: list[tuple], acked: int, initial: dict) -> dict[bytes, set]:
    """Per key: the states a correct store may hold after a crash.

    `initial` is what the store held before the child started. A key whose deadline
    had passed when the child opened the store was dropped then, which the model cannot
    time exactly: a deadline change of such a key may have found it or not.
    """
    possible: dict[tuple, set] = {key: {initial.get(key)} for key in ALL_KEYS}
    for n, op in enumerate(ops):
        if op[0] in ("flushdb", "swapdb"):
            _whole_database(op, possible, acked=n < acked)
            continue
        for key in {key for key, _ in _writes(op, None)}:
            after = {state for before in possible[key] for state in _after(op, key, before)}
            possible[key] = after if n < acked else possible[key] | after
    return possible


def _whole_database(op: tuple, possible: dict[tuple, set], acked: bool) -> None:
    """FLUSHDB or SWAPDB, on the per-key model: every key of the database(s) at once
    (every database has the same key names, so a key's namesake is always there)."""
    if op[0] == "flushdb":
        after = {key: {None} for key in ALL_KEYS if key[0] == op[1]}
    else:
        a, b = op[1], op[2]
        after = {key: set(possible[(b if key[0] == a else a, key[1])])
                 for key in ALL_KEYS if key[0] in (a, b)}
    for key, states in after.items():
        possible[key] = states if acked else possible[key] | states


def _writes(op: tuple, before: State) -> list[tuple[tuple, State]]:
    """(key, state after) of each write an operation makes. A hash of element records
    is the value ("elements", its sorted (field, value) pairs), of type 1."""
    if op[0] == "put":
        return [(op[1], ((op[2], op[4]), op[3]))]
    if op[0] == "hash":
        return [(op[1], ((("elements", tuple(sorted(op[2].items()))), 1), op[3]))]
    if op[0] in ("hset", "hdel"):
        if before is None or not isinstance(before[0][0], tuple):
            return [(op[1], before)]  # not such a hash: the child does nothing
        elements = dict(before[0][0][1])
        if op[0] == "hset":
            elements[op[2]] = op[3]
        else:
            for field in op[2]:
                elements.pop(field, None)
        if not elements:
            return [(op[1], None)]
        return [(op[1], ((("elements", tuple(sorted(elements.items()))), 1), before[1]))]
    if op[0] == "delete":
        return [(op[1], None)]
    if op[0] == "expire":
        return [(op[1], None if before is None else (before[0], op[2]))]
    if op[0] == "batch":
        return [(key, None if value is None else ((value, 0), 0)) for key, value in op[1]]
    return []


def _after(op: tuple, key: bytes, before: State) -> set:
    """The states `key` may be in after `op`, from `before`."""
    writes = [state for k, state in _writes(op, before) if k == key]
    states = {writes[-1]}  # a batch may write a key twice: the last one stands
    if op[0] == "expire" and before is not None and 0 < before[1] <= time.time() * 1000:
        states.add(None)  # expired before the child opened the store: it was gone
    return states


def visible(state: State, opened_ms: int, read_ms: int) -> set:
    """What a get() may return for `state`: a deadline that passed before the store was
    opened has deleted the key; one that passed while it was read may have."""
    if state is None:
        return {None}
    value, deadline = state
    if deadline and deadline <= opened_ms:
        return {None}
    if deadline and deadline <= read_ms:
        return {value, None}
    return {value}


def read(db, key: tuple) -> tuple | None:
    """(value, type) of (database, key), or None; a hash of element records as the model
    has it (_writes)."""
    if db.collection_version(key[1], db=key[0]):
        elements = {field: db.get_element(key[1], field, db=key[0])
                    for field in db.element_names(key[1], db=key[0])}
        return ("elements", tuple(sorted(elements.items()))), db.type_of(key[1], db=key[0])
    value = db.get(key[1], db=key[0])
    return None if value is None else (value, db.type_of(key[1], db=key[0]))


def check_store(
    data_dir: str, engine: str, ops: list[tuple], acked: int, initial: dict | None = None
) -> dict:
    """Reopen after a crash, check every key, and return what the store holds.

    Then write to the recovered store and reopen it once more: recovery must
    leave files that take new writes, not just files that read back once.
    """
    allowed = allowed_states(ops, acked, initial or {})
    opened_ms = time.time_ns() // 1_000_000
    with open_store(data_dir, engine=engine, segment_size=SEGMENT_SIZE) as db:
        held = {key: read(db, key) for key in ALL_KEYS}
        read_ms = time.time_ns() // 1_000_000
        for key, value in held.items():
            may = set().union(*(visible(s, opened_ms, read_ms) for s in allowed[key]))
            assert value in may, (
                f"{key!r} holds {str(value):.40}, allowed {[str(v)[:20] for v in may]}"
            )
        for number in range(DATABASES):
            first, last = (held[(number, key)] for _, key in BATCH_KEYS)
            assert first == last, f"a write batch was applied in part: {first!r} vs {last!r}"
        assert sorted((d, k) for d in range(DATABASES) for k in db.keys(db=d)) \
            == sorted(k for k, v in held.items() if v is not None)
        states = {k: (v, db.deadline(k[1], db=k[0])) for k, v in held.items() if v is not None}
        db.put(b"after-crash", b"x" * 100)
        db.flush()
    with open_store(data_dir, engine=engine, segment_size=SEGMENT_SIZE) as db:
        assert db.get(b"after-crash") == b"x" * 100
        now = time.time_ns() // 1_000_000
        assert {k: read(db, k)
                for k in ALL_KEYS if k in states and not 0 < states[k][1] <= now} \
            == {k: v for k, (v, d) in states.items() if not 0 < d <= now}
        db.delete(b"after-crash")
    names = os.listdir(data_dir)
    assert COMPACTION_DIR not in names, "half-done compaction output left behind"
    assert not [n for n in names if n.endswith(".tmp")], f"temp files left: {names}"
    return states


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
        ops = workload(seed, 400, NOW_MS)
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
    ops = workload(seed, count, NOW_MS)
    assert sum(op[0] == "compact" for op in ops) >= 2
    base = str(tmp_path / "base")
    base_seed = 10  # (one whose workload leaves a hash of element records: asserted below)
    child = start_child(base, "log", base_seed, 120)
    read_acks(child)
    assert child.wait(timeout=60) == 0
    base_held = check_store(base, "log", workload(base_seed, 120, NOW_MS), 121)
    assert [key for key, ((value, _), _) in base_held.items() if isinstance(value, tuple)], \
        "the workload should leave hashes of element records underneath"

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
