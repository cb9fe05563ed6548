"""Compatibility gate: real clients, unchanged, against kvd (redis-cli --pipe and --scan at
100k keys; redis-py pipelines and scan_iter)."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.slow

KEYS = 100_000


def test_redis_cli_pipe_loads_100k_keys_and_scan_lists_them(make_daemon, redis_cli):
    server = make_daemon(tcp=True)
    # --pipe takes the raw protocol, as its documentation recommends generating it.
    payload = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                       % (len(k), k, len(v), v)
                       for k, v in ((b"bulk:%d" % i, b"value:%d" % i) for i in range(KEYS)))
    loaded = subprocess.run([redis_cli, "-p", str(server.port), "--pipe"], input=payload,
                            capture_output=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert b"errors: 0, replies: %d" % KEYS in loaded.stdout
    scanned = subprocess.run([redis_cli, "-s", server.socket, "--scan"],
                             capture_output=True, timeout=300).stdout.split()
    assert len(scanned) == len(set(scanned)) == KEYS
    client = server.client()
    assert client.dbsize() == KEYS
    assert client.get(b"bulk:99999") == b"value:99999"
    assert sum(1 for _ in client.scan_iter(match="bulk:1*", count=5000)) == 11_111
    pipe = client.pipeline(transaction=False)
    for i in range(0, KEYS, 2):
        pipe.delete(b"bulk:%d" % i)
    assert sum(pipe.execute()) == KEYS // 2
    assert client.dbsize() == KEYS // 2
