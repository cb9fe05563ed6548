"""A full disk under a running daemon: clear errors, nothing acknowledged lost, recovery
once space is freed. The data directory lives on a small tmpfs the test mounts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests.kvd_process import Daemon, Foreground, require_tool


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
                   check=True)
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_disk_refuses_writes_clearly_and_recovers_when_space_is_freed(tmp_path, small_fs):
    data_dir = small_fs / "data"
    kvd = Daemon(tmp_path / "srv", ["--data-dir", str(data_dir), "--no-auto-compact"], tcp=False)
    kvd.start()
    try:
        client = kvd.client()
        filler = small_fs / "filler"
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        filler.write_bytes(b"\0" * (free - 200_000))
        acknowledged: dict[bytes, bytes] = {}
        errors: list[str] = []
        for i in range(100):
            key, value = b"k%d" % i, bytes([i]) * 10_000
            try:
                assert client.set(key, value) is True
                acknowledged[key] = value
            except redis.ResponseError as exc:
                errors.append(str(exc))
                if len(errors) >= 3:
                    break
        assert acknowledged, "the disk filled before anything was written"
        assert errors[0].startswith("write not acknowledged:") and "No space left" in errors[0]
        assert all(e.startswith("MISCONF writes are refused") for e in errors[1:]), errors
        keys = list(acknowledged)
        assert client.mget(keys) == [acknowledged[k] for k in keys]  # reads keep working
        assert "No space left" in kvd.info("persistence")["write_error"]
        assert client.ping() is True

        filler.unlink()  # space is back: the next write goes through
        assert client.set(b"after", b"the disk was freed") is True
        assert kvd.info("persistence")["write_error"] == ""
        acknowledged[b"after"] = b"the disk was freed"
        kvd.stop()
        kvd.start()
        client = kvd.client()
        keys = list(acknowledged)
        assert client.mget(keys) == [acknowledged[k] for k in keys]
        assert "cannot open" not in kvd.log()
    finally:
        kvd.cleanup()


def test_a_failed_fsync_is_an_error_reply_not_a_crash_and_writes_resume_after(tmp_path):
    """The disk reports EIO on one fsync (strace injects it into kvd's third fdatasync):
    that write is answered with an error, never acknowledged; the server keeps serving,
    and writes are accepted again once an fsync succeeds."""
    strace = require_tool("strace", "strace")
    kvd = Foreground(tmp_path, ["--no-auto-compact"], tcp=False)
    kvd.start(wrapper=[strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync",
                       "-e", "inject=fdatasync:error=EIO:when=3"])
    try:
        client = kvd.client()
        replies = []
        for i in range(6):
            try:
                replies.append(client.set(f"k{i}", f"v{i}"))
            except redis.ResponseError as exc:
                replies.append(str(exc))
        failed = [r for r in replies if r is not True]
        assert len(failed) == 1, replies
        assert failed[0].startswith("write not acknowledged: fsync of ") and \
            "Input/output error" in failed[0]
        assert replies[-1] is True  # accepted again after the next fsync succeeded
        assert client.ping() is True
        assert client.get("k5") == b"v5"
        assert "flush failed, writes refused until it succeeds" in kvd.log()
        os.kill(int(Path(kvd.pidfile).read_text()), signal.SIGTERM)
        assert kvd.wait() == 0  # (strace exits with kvd's status)
    finally:
        kvd.cleanup()
