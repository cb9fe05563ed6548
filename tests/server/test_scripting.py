"""Lua scripting against a real daemon through redis-py's defaults: its Lock, scripts in
transactions, the cache, and a runaway script (-BUSY, SCRIPT KILL, SHUTDOWN NOSAVE,
SIGTERM / kvd stop). Replies and error texts are checked against redis-server by
tests/torture/test_differential.py."""

from __future__ import annotations

import signal
import threading

import pytest
import redis

from tests.kvd_process import run_kvd, wait_for

LOOP = "while true do end"
WRITE_THEN_LOOP = "redis.call('set', KEYS[1], 'half'); while true do end"


@pytest.mark.parametrize("engine", ["log", "sqlite"])
def test_redis_py_lock_acquire_extend_reacquire_release(make_daemon, engine):
    kvd = make_daemon("--engine", engine)
    r = kvd.client()  # redis-py's defaults: RESP3, EVALSHA first, EVAL on NOSCRIPT
    lock = r.lock("resource", timeout=5)
    assert lock.acquire(blocking=False)
    assert r.pttl("resource") > 4000
    assert lock.extend(10)  # a Lua script: adds to the remaining time
    assert 14000 < r.pttl("resource") <= 15000
    assert lock.reacquire()  # resets the timeout to 5 s
    assert 4000 < r.pttl("resource") <= 5000
    assert lock.owned()
    lock.release()  # a Lua script: deletes only if the token is ours
    assert r.exists("resource") == 0
    stale = r.lock("resource", timeout=5)
    stale.local.token = b"a token that is gone"
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        stale.release()  # the script found no such token: it deleted nothing
    stale.local.token = b"a token that is gone"
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        stale.extend(5)
    with r.lock("no-timeout"):  # without a timeout: no TTL
        assert r.ttl("no-timeout") == -1
    assert r.exists("no-timeout") == 0


def test_two_clients_contend_for_a_lock(kvd):
    first, second = kvd.client(), kvd.client()
    held = first.lock("job", timeout=0.5)
    assert held.acquire(blocking=False)
    waiting = second.lock("job", timeout=5, blocking_timeout=0.1)
    assert not waiting.acquire()  # still held
    intruder = second.lock("job", timeout=5)
    intruder.local.token = b"not the owner's token"
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        intruder.release()  # nothing deleted
    assert first.exists("job") == 1
    eventually = second.lock("job", timeout=5, blocking_timeout=5)
    assert eventually.acquire()  # the first holder's TTL ran out
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        held.release()
    eventually.release()


def test_a_lock_survives_a_restart_until_released(make_daemon):
    kvd = make_daemon()
    r = kvd.client()
    lock = r.lock("durable", timeout=60)
    assert lock.acquire(blocking=False)
    kvd.stop()
    kvd.start()
    r = kvd.client()
    assert r.get("durable") == lock.local.token  # acknowledged: on disk
    lock.redis = r
    lock.release()
    assert r.exists("durable") == 0


def test_scripts_work_with_both_protocols_and_in_transactions(kvd):
    for protocol in (2, 3):
        r = kvd.client(protocol=protocol)
        incr = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert incr(keys=[f"n{protocol}"], args=[5]) == 5
        pipe = r.pipeline()  # MULTI ... EVALSHA ... EXEC
        incr(keys=[f"n{protocol}"], args=[1], client=pipe)
        pipe.get(f"n{protocol}")
        assert pipe.execute() == [6, b"6"]
    r = kvd.client()
    assert r.eval("return {1, 'two', {ok='fine'}, false}", 0) == [1, b"two", b"fine", None]
    r.set("text", "not a number")
    with pytest.raises(redis.ResponseError, match="not an integer.*on @user_script:1"):
        r.eval("return redis.call('incr', KEYS[1])", 1, "text")


def test_the_cache_is_memory_only(make_daemon):
    kvd = make_daemon()
    r = kvd.client()
    sha = r.script_load("return 'cached'")
    assert r.evalsha(sha, 0) == b"cached"
    assert r.script_exists(sha, "0" * 40) == [True, False]
    kvd.stop()
    kvd.start()
    r = kvd.client()
    assert r.script_exists(sha) == [False]  # as in Redis: empty after a restart
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(sha, 0)
    r.script_load("return 1")
    assert r.script_flush() is True
    assert r.script_exists(sha) == [False]


def _busy(kvd, script: str, *keys: str) -> tuple[threading.Thread, list]:
    """Start `script` on its own client; return once the server answers -BUSY."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(kvd.client(socket_timeout=60).eval(script, len(keys), *keys))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    probe = kvd.client(socket_timeout=10)

    def busy() -> bool:
        try:
            probe.ping()
        except redis.ResponseError as exc:  # redis-py keeps the BUSY code in the text
            return str(exc).startswith("BUSY Redis is busy running a script")
        return False

    wait_for(busy, 30, "the server to answer -BUSY")
    return thread, outcome


def test_a_runaway_script_gets_busy_and_is_killed(make_daemon):
    kvd = make_daemon("--busy-reply-threshold", "200")
    r = kvd.client(socket_timeout=10)
    r.set("before", "1")
    thread, outcome = _busy(kvd, LOOP)
    with kvd.raw() as sock:  # byte-exact: the refusal, and MULTI doomed by it
        sock.sendall(b"GET before\r\nMULTI\r\nGET before\r\nEXEC\r\n")
        replies = b""
        while replies.count(b"\r\n") < 4:
            replies += sock.recv(65536)
    busy = b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or " \
           b"SHUTDOWN NOSAVE.\r\n"
    assert replies == busy + b"+OK\r\n" + busy + (
        b"-EXECABORT Transaction discarded because of: BUSY Redis is busy running a script. "
        b"You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n")
    with pytest.raises(redis.ResponseError, match="busy running a script"):
        r.script_load("return 1")
    assert r.script_kill() is True
    thread.join(30)
    assert isinstance(outcome[0], redis.ResponseError)
    assert "Script killed by user with SCRIPT KILL" in str(outcome[0])
    assert r.get("before") == b"1"  # serving again
    with pytest.raises(redis.ResponseError, match="NOTBUSY"):
        r.script_kill()
    assert "slow script detected" in kvd.log()


def test_a_script_that_wrote_cannot_be_killed_and_shutdown_nosave_drops_it(make_daemon):
    kvd = make_daemon("--busy-reply-threshold", "200")
    r = kvd.client(socket_timeout=10)
    r.set("k", "before")
    thread, outcome = _busy(kvd, WRITE_THEN_LOOP, "k")
    with pytest.raises(redis.ResponseError, match="UNKILLABLE Sorry the script already"):
        r.execute_command("SCRIPT", "KILL")
    with pytest.raises(redis.ResponseError, match="busy running a script"):
        r.shutdown()  # without NOSAVE: refused, as Redis
    try:
        r.execute_command("SHUTDOWN", "NOSAVE")
    except redis.ConnectionError:
        pass
    kvd.wait_exit(30)
    thread.join(30)
    kvd.start()
    assert kvd.client().get("k") == b"before"  # the script never happened
    assert "its writes are dropped" in kvd.log()


@pytest.mark.slow
@pytest.mark.parametrize("wrote", [False, True], ids=["read-only", "written"])
def test_kvd_stop_ends_a_server_stuck_in_a_script(make_daemon, wrote):
    kvd = make_daemon("--busy-reply-threshold", "200")
    r = kvd.client(socket_timeout=10)
    r.set("k", "before")
    thread, outcome = _busy(kvd, WRITE_THEN_LOOP if wrote else LOOP, "k")
    result = run_kvd(["stop", "--timeout", "20"], kvd.dir)
    assert result.returncode == 0, result.stderr
    thread.join(30)
    assert outcome and isinstance(outcome[0], Exception)
    kvd.start()
    assert kvd.client().get("k") == b"before"


def test_sigterm_while_busy_stops_the_script_then_drains(make_daemon):
    kvd = make_daemon("--busy-reply-threshold", "200")
    thread, outcome = _busy(kvd, LOOP)
    kvd.signal(signal.SIGTERM)
    thread.join(30)
    assert "Script killed" in str(outcome[0])  # answered before the drain closed it
    kvd.wait_exit(30)
    assert "SIGTERM: stopping the script" in kvd.log()


def test_a_script_past_the_memory_limit_fails_alone(make_daemon):
    kvd = make_daemon("--script-memory", str(8 << 20))
    r = kvd.client()
    with pytest.raises(redis.ResponseError, match="not enough memory"):
        r.eval("local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end", 0)
    assert r.eval("return 'still fine'", 0) == b"still fine"


def test_script_writes_are_acknowledged_only_durable(make_daemon):
    kvd = make_daemon()
    r = kvd.client()
    assert r.eval("for i = 1, 50 do redis.call('set', 'k' .. i, i) end return 50", 0) == 50
    kvd.kill()  # SIGKILL right after the acknowledgement
    kvd.start()
    assert kvd.client().mget([f"k{i}" for i in range(1, 51)]) == [str(i).encode()
                                                                 for i in range(1, 51)]


def test_a_busy_threshold_of_zero_never_interrupts(make_daemon):
    kvd = make_daemon("--busy-reply-threshold", "0")
    r = kvd.client()
    assert r.eval("local n = 0 for i = 1, 3e7 do n = n + 1 end return n", 0) == 30000000
