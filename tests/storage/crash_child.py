"""The process the crash tests kill: runs a deterministic workload on a store.

    python crash_child.py DATA_DIR ENGINE SEED OPS [KILL_AT]

with $KVD_CRASH_NOW_MS, the time the parent's deadlines are relative to.

After every `flush()` (and every `compact()`, which flushes) returns, it
prints `ack N` -- the first N operations are acknowledged. With KILL_AT, the
process SIGKILLs itself at its KILL_AT-th file-system call that changes
state (write, fsync, rename, unlink, truncate, mkdir, rmdir): just before
it, or for a write of more than one byte, after writing half of it (a torn
record). Counting through the whole workload puts a crash at every step
boundary of puts, flushes, rotations and compactions in turn.
It prints `steps N` and exits 0 if it runs out of work first.

The parent regenerates the same operations with `workload(seed, ops)`.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys

SEGMENT_SIZE = 2048
# Keys are (database, key): three databases, so that FLUSHDB and SWAPDB (map records)
# are killed at every step too.
DATABASES = 3
KEYS = [(db, b"key-%02d" % i) for db in range(DATABASES) for i in range(12)]
# The hashes of element records are made, changed and emptied on these keys (the other
# operations reach them too: a SET overwrites a hash, DEL deletes it).
HASH_KEYS = [(db, b"key-%02d" % i) for db in range(DATABASES) for i in range(2)]
# Written only by write batches, the first and the last record of each: a batch
# applied in part would leave them different.
BATCH_KEYS = [(0, b"batch-first"), (0, b"batch-last")]


def deadline(rng: random.Random, now_ms: int) -> int:
    """None mostly; else far ahead, long past, or a few seconds ahead (passing while
    the test runs, so that keys expire between a kill and the check)."""
    roll = rng.random()
    if roll < 0.6:
        return 0
    if roll < 0.7:
        return now_ms + 86_400_000
    if roll < 0.8:
        return 1_000
    return now_ms + rng.randrange(0, 4_000)


def workload(seed: int, count: int, now_ms: int) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    for i in range(count):
        roll = rng.random()
        key = rng.choice(KEYS)
        if roll < 0.5:
            value = b"%d:" % i + bytes([rng.randrange(256)]) * rng.randrange(0, 300)
            kind = 1 if rng.random() < 0.2 else 0  # a packed hash, say: its type must last
            ops.append(("put", key, value, deadline(rng, now_ms), kind))
        elif roll < 0.53:  # a hash of element records, made (or made again) in one batch
            elements = {b"f%d" % rng.randrange(40): b"%d" % i * rng.randrange(1, 20)
                        for _ in range(rng.randrange(1, 40))}
            ops.append(("hash", rng.choice(HASH_KEYS), elements, deadline(rng, now_ms)))
        elif roll < 0.57:  # HSET of one field (if the key is such a hash by then)
            ops.append(("hset", rng.choice(HASH_KEYS), b"f%d" % rng.randrange(40),
                        b"set %d" % i))
        elif roll < 0.59:  # HDEL of some fields; the hash goes with its last one
            ops.append(("hdel", rng.choice(HASH_KEYS), [b"f%d" % rng.randrange(40)
                                                        for _ in range(rng.randrange(1, 8))]))
        elif roll < 0.62:
            ops.append(("expire", key, deadline(rng, now_ms)))
        elif roll < 0.82:
            ops.append(("delete", key))
        elif roll < 0.835:
            ops.append(("flushdb", rng.randrange(DATABASES)))
        elif roll < 0.85:
            ops.append(("swapdb", *rng.sample(range(DATABASES), 2)))
        elif roll < 0.91:
            tag = b"batch %d" % i
            middle = [(rng.choice(KEYS), None if rng.random() < 0.3 else tag * rng.randrange(1, 40))
                      for _ in range(rng.randrange(0, 5))]
            ops.append(("batch", [(BATCH_KEYS[0], tag), *middle, (BATCH_KEYS[1], tag)]))
        elif roll < 0.97:
            ops.append(("flush",))
        else:
            ops.append(("compact",))
    ops.append(("flush",))
    return ops


class _Steps:
    """Counts state-changing file-system calls; SIGKILLs this process at one of them."""

    def __init__(self, kill_at: int | None) -> None:
        self.count = 0
        self.kill_at = kill_at

    def wrap(self, module, name: str) -> None:
        real = getattr(module, name)

        def counted(*args, **kwargs):
            self.count += 1
            if self.count == self.kill_at:
                if name == "write" and len(args[1]) > 1:
                    real(args[0], args[1][: len(args[1]) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(module, name, counted)


def main() -> None:
    data_dir, engine, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kill_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
    from storage import open_store

    db = open_store(data_dir, engine=engine, segment_size=SEGMENT_SIZE)
    steps = _Steps(kill_at)
    for name in ("write", "fsync", "fdatasync", "replace", "rename", "unlink", "ftruncate", "mkdir",
                 "rmdir"):
        steps.wrap(os, name)
    steps.wrap(shutil, "rmtree")
    now_ms = int(os.environ["KVD_CRASH_NOW_MS"])
    for n, op in enumerate(workload(seed, count, now_ms), start=1):
        if op[0] == "put":
            db.put(op[1][1], op[2], op[3], db=op[1][0], kind=op[4])
        elif op[0] == "hash":  # as kvd splits a hash: one batch
            (number, key), elements = op[1], op[2]
            db.begin_batch()
            db.create_collection(key, 1, op[3], db=number)
            for field, value in elements.items():
                db.put_element(key, field, value, db=number)
            db.end_batch()
        elif op[0] == "hset":
            if db.collection_version(op[1][1], db=op[1][0]):
                db.put_element(op[1][1], op[2], op[3], db=op[1][0])
        elif op[0] == "hdel":
            (number, key), fields = op[1], op[2]
            if db.collection_version(key, db=number):
                db.begin_batch()
                for field in fields:
                    db.delete_element(key, field, db=number)
                if not db.element_count(key, db=number):
                    db.delete(key, db=number)
                db.end_batch()
        elif op[0] == "expire":
            db.expire(op[1][1], op[2], db=op[1][0])
        elif op[0] == "delete":
            db.delete(op[1][1], db=op[1][0])
        elif op[0] == "flushdb":
            db.flush_db(op[1])
        elif op[0] == "swapdb":
            db.swap_dbs(op[1], op[2])
        elif op[0] == "batch":  # as EXEC writes: the batch's size known only at its end
            db.begin_batch()
            for (number, key), value in op[1]:
                db.delete(key, db=number) if value is None else db.put(key, value, db=number)
            db.end_batch()
        elif op[0] == "flush":
            db.flush()
            print(f"ack {n}", flush=True)
        else:
            db.compact()
            print(f"ack {n}", flush=True)
    print(f"steps {steps.count}", flush=True)
    os._exit(0)  # no close(): the next open must cope with what a crash leaves


if __name__ == "__main__":
    main()
