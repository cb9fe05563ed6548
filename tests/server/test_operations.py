"""The operator's commands never hang, never lie and never leave a mess: kvd check on a
wrong path, kvd status/stop and kvctl against a stopped (SIGSTOP) daemon, kvd stop
after a daemon that died during its shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from storage import open_store
from tests.kvd_process import KVD, run_kvctl, run_kvd, wait_for


def test_check_creates_nothing_on_a_mistyped_path(tmp_path):
    missing = run_kvd(["check", "--data-dir", "kvd-dta"], cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (1, "kvd: check: no data directory at kvd-dta\n")
    assert not (tmp_path / "kvd-dta").exists()
    (tmp_path / "empty").mkdir()
    empty = run_kvd(["check", "--data-dir", "empty"], cwd=tmp_path)
    assert empty.returncode == 1 and "is not a kvd data directory" in empty.stderr
    assert os.listdir(tmp_path / "empty") == []


@pytest.fixture
def read_only_copy(tmp_path):
    """A data directory with a key, seen through a read-only bind mount."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (root ignores permission bits)")
    data = tmp_path / "data"
    with open_store(str(data)) as store:
        store.put(b"k", b"v")
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(data), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_check_on_a_read_only_directory_says_why_without_a_traceback(tmp_path, read_only_copy):
    result = run_kvd(["check", "--data-dir", str(read_only_copy)], cwd=tmp_path)
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"kvd: check: cannot use {read_only_copy}")


def test_a_stopped_daemon_is_named_stopped_by_status_and_kvctl_within_their_timeout(kvd):
    kvd.client().set("k", "v")
    kvd.signal(signal.SIGSTOP)
    status = run_kvd(["status", "--timeout", "1"], cwd=kvd.dir, timeout=30)
    assert status.returncode == 4
    assert f"did not answer within 1 s: PID {kvd.pid} is stopped" in status.stderr
    assert f"kill -CONT {kvd.pid} resumes it" in status.stderr
    got = run_kvctl(["--timeout", "1", "get", "k"], cwd=kvd.dir, timeout=30)
    assert got.returncode == 3
    assert f"did not answer within 1 s: PID {kvd.pid} is stopped".encode() in got.stderr
    kvd.signal(signal.SIGCONT)
    assert run_kvctl(["get", "k"], cwd=kvd.dir).stdout == b"v"
    assert run_kvd(["status"], cwd=kvd.dir).returncode == 0


def test_stop_resumes_a_stopped_daemon_which_then_shuts_down_cleanly(kvd):
    kvd.client().set("k", "v")
    kvd.signal(signal.SIGSTOP)
    stop = run_kvd(["stop", "--timeout", "20"], cwd=kvd.dir, timeout=40)
    assert (stop.returncode, stop.stdout) == (0, "kvd stopped\n"), stop.stderr
    assert "shutdown complete (exit 0)" in kvd.log()


def test_stop_reports_a_shutdown_that_failed_and_the_next_start_says_why(make_daemon):
    kvd = make_daemon()
    kvd.client().set("k", "v")
    shutil.rmtree(kvd.data_dir)  # the store cannot be closed: its hint has nowhere to go
    stop = run_kvd(["stop"], cwd=kvd.dir)
    assert stop.returncode == 1
    assert f"PID {kvd.pid} exited, but its shutdown failed: closing the store failed" \
        in stop.stderr
    status = run_kvd(["status"], cwd=kvd.dir)
    assert status.returncode == 1 and "its shutdown failed: closing the store" in status.stdout
    again = make_daemon()
    assert again.dir == kvd.dir
    assert "that daemon's shutdown failed: closing the store failed" in again.log()


def test_stop_reports_a_daemon_killed_before_its_shutdown_finished(make_daemon):
    kvd = make_daemon("--drain-timeout", "60")
    owed = kvd.client()
    owed.execute_command("MULTI")  # owed its EXEC: the drain waits for it
    stop = subprocess.Popen([KVD, "stop", "--timeout", "50"], cwd=kvd.dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "shutting down" in kvd.log(), what="the drain to begin")
    kvd.signal(signal.SIGKILL)
    out, err = stop.communicate(timeout=40)
    assert stop.returncode == 1, (out, err)
    assert f"PID {kvd.pid} exited without finishing its shutdown" in err


def test_kvd_check_reports_the_format_and_the_keys_of_each_database(tmp_path):
    fixture = os.path.join(os.path.dirname(__file__), "..", "storage", "fixtures",
                           "format3-log")
    data_dir = tmp_path / "data"
    shutil.copytree(fixture, data_dir)
    os.chmod(data_dir, 0o700)
    result = run_kvd(["check", "--data-dir", "data"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["format"] == 4 and figures["keys_by_database"] == {"0": 91}
    assert "format 3 upgraded to 4 in place" in result.stderr
    with open_store(str(data_dir)) as store:
        store.put(b"k", b"v", db=5)
    again = run_kvd(["check", "--data-dir", "data"], cwd=tmp_path)
    assert json.loads(again.stdout)["keys_by_database"] == {"0": 91, "5": 1}
    assert "upgraded" not in again.stderr
