"""The watchdog against a real daemon: a pass that runs too long puts the loop's stack in the
log and is counted in INFO; DEBUG, which provokes it, is off unless enabled."""

from __future__ import annotations

import pytest
import redis

from server.commands.admin import DEBUG_NOT_ALLOWED


@pytest.mark.slow
def test_a_long_pass_logs_the_loop_stack(make_daemon):
    kvd = make_daemon("--enable-debug-command", "yes", "--watchdog-period", "0.2")
    client = kvd.client()
    for i in range(100):
        client.set(f"k{i}", "v")
    before = kvd.info("stats")
    assert before["kvd_watchdog_stack_dumps"] == 0  # ordinary passes are not reported
    assert before["kvd_slow_passes"] == 0
    assert "watchdog" not in kvd.log()

    assert client.execute_command("DEBUG", "SLEEP", "2") == b"OK"

    log = kvd.log()
    assert "watchdog: one pass of the loop has run for" in log
    assert ", in debug\n" in log and "time.sleep" in log  # the stack shows where it hangs
    after = kvd.info("stats")
    assert after["kvd_watchdog_stack_dumps"] == 1  # once per stuck pass, not once per check
    assert after["kvd_slow_passes"] == 1
    assert after["kvd_longest_pass_ms_last_minute"] >= 2000
    assert client.get("k1") == b"v"


def test_debug_is_refused_unless_enabled(kvd):
    with pytest.raises(redis.ResponseError) as refused:
        kvd.client().execute_command("DEBUG", "SLEEP", "0")
    assert str(refused.value) == DEBUG_NOT_ALLOWED[1:-2].decode().removeprefix("ERR ")
    assert "DEBUG command not allowed" in str(refused.value)


def test_local_allows_loopback_tcp(make_daemon):
    kvd = make_daemon("--enable-debug-command", "local", tcp=True)
    assert kvd.tcp_client().execute_command("DEBUG", "SLEEP", "0") == b"OK"
    assert kvd.client().execute_command("DEBUG", "SLEEP", "0") == b"OK"
