"""Key expiry against a real daemon: deadlines survive a restart and a compaction; a key
whose deadline passes while the server is down is gone when it comes back."""

from __future__ import annotations

import time

import pytest

from tests.kvd_process import wait_for


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_deadlines_survive_restart_and_compaction(make_daemon, engine):
    kvd = make_daemon("--no-auto-compact", "--engine", engine)
    r = kvd.client()
    r.set("long", "v", ex=1000)
    r.set("short", "v", px=300)
    r.set("plain", "v")
    r.set("changed", "v")
    r.expire("changed", 2000)  # a deadline change record, not a rewrite
    r.set("persisted", "v", ex=1000)
    r.persist("persisted")
    r.set("old", "first")
    r.set("old", "second", px=300)  # the older value must not come back when this expires
    deadlines = {k: r.pexpiretime(k) for k in ("long", "short", "changed")}
    kvd.stop()
    passed = deadlines["short"] / 1000
    wait_for(lambda: time.time() > passed + 0.05, 5, "the short deadline to pass while down")
    kvd.start()
    r = kvd.client()
    assert r.exists("short") == 0 and r.get("old") is None
    assert {k: r.pexpiretime(k) for k in ("long", "changed")} == {
        k: deadlines[k] for k in ("long", "changed")}
    assert r.ttl("plain") == -1 and r.ttl("persisted") == -1
    assert r.execute_command("COMPACT")
    wait_for(lambda: kvd.info("persistence")["compactions_completed"] == 1, 30, "compaction")
    kvd.stop()
    kvd.start()
    r = kvd.client()
    assert {k: r.pexpiretime(k) for k in ("long", "changed")} == {
        k: deadlines[k] for k in ("long", "changed")}
    assert sorted(r.keys("*")) == [b"changed", b"long", b"persisted", b"plain"]
    assert r.info("keyspace")["db0"]["expires"] == 2


def test_active_expiry_frees_keys_nobody_reads(make_daemon):
    kvd = make_daemon()
    r = kvd.client()
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"k{i}", "v", px=200)
    pipe.set("stays", "v")
    pipe.execute()
    wait_for(lambda: r.dbsize() == 1, 20, "active expiry to drop 20,000 keys")
    stats = r.info("stats")
    assert stats["expired_keys"] == 20_000
    assert r.info("keyspace")["db0"]["expires"] == 0
