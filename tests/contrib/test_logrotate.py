"""logrotate with contrib/kvd.logrotate, run by the real binary: kvd goes on writing to the
new log file, and the rotated one holds what came before."""

from __future__ import annotations

import getpass
import grp
import os
import subprocess
from pathlib import Path

from tests.kvd_process import KVD, Daemon, require_tool, run_kvd, wait_for

RULE = Path(__file__).resolve().parents[2] / "contrib" / "kvd.logrotate"


def test_rotation_by_logrotate_leaves_kvd_writing_to_the_new_log(tmp_path):
    logrotate = require_tool("logrotate", "logrotate")
    server = Daemon(tmp_path / "srv", ["--log-level", "debug"], tcp=False)
    server.start()
    try:
        log = Path(server.log_file)
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
        rule = (RULE.read_text()
                .replace("/var/log/kvd/kvd.log", str(log))
                .replace("/run/kvd/kvd.pid", server.pidfile)
                .replace("/usr/local/bin/kvd", KVD)
                .replace("create 0640 kvd kvd", f"create 0640 {user} {group}"))
        config = tmp_path / "kvd.logrotate"
        config.write_text(rule)
        os.chmod(config, 0o644)
        client = server.client(protocol=2)
        client.set("before", "rotation")
        before = log.read_text()
        result = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"),
                                 str(config)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        rotated = Path(str(log) + ".1")  # delaycompress: the newest stays uncompressed
        assert rotated.read_text().startswith(before)
        wait_for(lambda: "SIGHUP: log file reopened" in log.read_text(), 10,
                 "kvd to reopen its log")
        client.execute_command("CONFIG", "SET", "slowlog-max-len", "64")  # logged at INFO
        wait_for(lambda: "CONFIG SET slowlog_max_len = 64" in log.read_text(), 10,
                 "the new line in the new log")
        assert "CONFIG SET slowlog_max_len" not in rotated.read_text()
        assert oct(log.stat().st_mode & 0o777) == "0o640"  # created by logrotate
    finally:
        server.cleanup()


def test_reload_refuses_a_stale_pid_file(tmp_path):
    pidfile = tmp_path / "kvd.pid"
    pidfile.write_text("999999\n")
    result = run_kvd(["reload", "--pidfile", str(pidfile)], cwd=tmp_path)
    assert result.returncode == 1 and "not running" in result.stderr
