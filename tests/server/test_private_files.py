"""The data directory, its files and the log are private whatever the umask, and no
symlink inside the data directory is followed: any local user could otherwise read
every value, bypassing requirepass and the 0600 socket, or make kvd overwrite a file."""

from __future__ import annotations

import os
import stat

import pytest

from storage import StorageError, open_store
from tests.kvd_process import run_kvd


def _modes(directory: str) -> dict[str, int]:
    found = {".": stat.S_IMODE(os.stat(directory).st_mode)}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


@pytest.mark.slow
def test_everything_the_daemon_writes_is_private_under_a_lax_umask(make_daemon):
    old = os.umask(0o002)  # the daemon keeps the caller's umask: the laxest usual one
    try:
        kvd = make_daemon("--segment-size", "65536")
    finally:
        os.umask(old)
    client = kvd.client()
    for i in range(2000):
        client.set(b"key-%d" % i, b"x" * 100)
    client.execute_command("COMPACT")
    kvd.stop()
    modes = _modes(kvd.data_dir)
    assert modes.pop(".") == 0o700
    assert modes and all(mode == 0o600 for name, mode in modes.items()
                         if not os.path.isdir(os.path.join(kvd.data_dir, name))), modes
    assert stat.S_IMODE(os.stat(kvd.log_file).st_mode) == 0o600


def test_the_sqlite_engines_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        with open_store(str(tmp_path / "data"), engine="sqlite") as db:
            db.put(b"k", b"v")
            db.flush()
            modes = _modes(str(tmp_path / "data"))
    finally:
        os.umask(old)
    assert modes.pop(".") == 0o700
    assert set(modes.values()) == {0o600}, modes


def test_a_lock_symlink_is_not_followed(tmp_path):
    data_dir = tmp_path / "kvd-data"
    data_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (data_dir / "LOCK").symlink_to(victim)
    started = run_kvd(["start", "--data-dir", str(data_dir), "--port", "0", "--socket",
                       str(tmp_path / "kvd.sock")], cwd=tmp_path)
    assert started.returncode == 1 and "symbolic link" in started.stderr
    assert victim.read_text() == "precious"


def test_a_segment_symlink_is_not_followed(tmp_path):
    data_dir = str(tmp_path / "data")
    with open_store(data_dir) as db:
        db.put(b"k", b"v")
    elsewhere = tmp_path / "elsewhere.seg"
    segment = os.path.join(data_dir, "0000000000000001.seg")
    os.replace(segment, elsewhere)
    os.symlink(elsewhere, segment)
    try:
        open_store(data_dir)
    except StorageError as exc:
        assert "symbolic link" in str(exc)
    else:
        raise AssertionError("a segment that is a symlink was opened")


def test_a_data_directory_anyone_can_write_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o777)
    try:
        open_store(str(data_dir))
    except StorageError as exc:
        assert "writable by every user" in str(exc)
    else:
        raise AssertionError("a world-writable data directory was opened")


def test_a_readable_directory_from_an_older_kvd_is_warned_about(tmp_path, caplog):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    with caplog.at_level("WARNING", logger="kvd.storage"), open_store(str(data_dir)):
        pass
    assert "can be read by other users (mode 0755)" in caplog.text
