"""SCAN's snapshots are bounded: many open scans cannot make the server hold unbounded copies
of the keyspace; the least recently used are forgotten, and their cursors say so."""

from __future__ import annotations

from server.keyspace import ScanCursors


def test_open_scans_hold_at_most_a_multiple_of_the_keyspace():
    store = {b"k%d" % i: 1 for i in range(1000)}
    cursors = ScanCursors()
    cursors.HELD_FLOOR = 0
    opened = [cursors.step(store.keys, store.__contains__, 0, 10, None)[0] for _ in range(20)]
    live = [c for c in opened
            if cursors.step(store.keys, store.__contains__, c, 10, None) is not None]
    assert live == opened[-ScanCursors.HELD_PER_KEY:]  # the most recent ones
    assert cursors._held == ScanCursors.HELD_PER_KEY * len(store)


def test_a_scan_run_to_the_end_returns_every_key_once_and_releases_its_snapshot():
    store = {b"k%d" % i: 1 for i in range(1000)}
    cursors = ScanCursors()
    cursor, seen = 0, []
    while True:
        cursor, keys = cursors.step(store.keys, store.__contains__, cursor, 7, None)
        seen += keys
        if cursor == 0:
            break
    assert sorted(seen) == sorted(store)
    assert cursors._held == 0
