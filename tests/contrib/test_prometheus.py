"""Prometheus: Debian's prometheus-redis-exporter pointed at kvd exports kvd's figures --
keys, memory, clients, commands, and compactions under Redis's AOF-rewrite names."""

from __future__ import annotations

import subprocess
import urllib.request

from tests.kvd_process import Daemon, free_port, require_tool, wait_for


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    metrics = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    return metrics


def answers(port: int) -> bool:
    try:
        return "redis_up" in scrape(port)
    except OSError:
        return False


def test_the_exporter_exports_kvds_figures(tmp_path):
    exporter = require_tool("prometheus-redis-exporter", "prometheus-redis-exporter")
    server = Daemon(tmp_path / "srv", ["--requirepass", "s3cret"], tcp=True)
    server.start()
    port = free_port()
    proc = subprocess.Popen(
        [exporter, "-redis.addr", f"redis://127.0.0.1:{server.port}", "-redis.password",
         "s3cret", "-web.listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = server.tcp_client(protocol=2, password="s3cret")
        client.mset({f"k{i}": "x" * 100 for i in range(500)})
        client.expire("k1", 1000)
        wait_for(lambda: answers(port), 30, "the exporter to serve /metrics")
        client.execute_command("COMPACT")
        wait_for(lambda: client.info("persistence")["compactions_completed"] == 1, 60,
                 "the compaction")
        metrics = scrape(port)
        assert metrics["redis_up"] == 1
        assert metrics['redis_db_keys{db="db0"}'] == 500
        assert metrics['redis_db_keys_expiring{db="db0"}'] == 1
        assert metrics["redis_connected_clients"] >= 1
        assert metrics["redis_commands_processed_total"] >= 3
        assert metrics["redis_memory_used_bytes"] > 0
        assert metrics["redis_config_maxclients"] == 10000
        # compactions, as Redis's AOF rewrites
        assert metrics["redis_aof_rewrite_in_progress"] == 0
        assert metrics["redis_aof_last_bgrewrite_status"] == 1
        assert metrics["redis_aof_last_rewrite_duration_sec"] >= 0
        assert metrics["redis_aof_current_size_bytes"] >= metrics["redis_aof_base_size_bytes"] > 0
        assert metrics["redis_rdb_last_save_timestamp_seconds"] > 0
        assert metrics['redis_exporter_last_scrape_error{err=""}'] == 0
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
        server.cleanup()
    # Nothing the exporter asked for was refused (it logs each such command once).
    assert "err:" not in output and "level=error" not in output, output
