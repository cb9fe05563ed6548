"""Resource faults: a low descriptor limit, and a thousand connections held at once."""

from __future__ import annotations

import re
import resource
import socket
import subprocess

import pytest

from tests.kvd_process import KVD


def test_a_low_descriptor_limit_refuses_extra_clients_cleanly(make_daemon):
    server = make_daemon(start=False)  # started below, under a low descriptor limit

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))

    result = subprocess.run([KVD, "start", "--port", "0"], cwd=server.dir, capture_output=True,
                            text=True, timeout=60, preexec_fn=low_limit)
    assert result.returncode == 0, result.stderr
    server.pid = int(re.search(r"PID (\d+)", result.stdout).group(1))
    assert "serving at most" in server.log()
    limit = server.info("clients")["maxclients"]
    assert 0 < limit < 160
    held = [server.raw() for _ in range(limit)]  # info() closed its own connection
    for sock in held[:5]:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    extra = [server.raw() for _ in range(20)]
    for sock in extra:
        assert sock.recv(100) == b"-ERR max number of clients reached\r\n"
        assert sock.recv(100) == b""
    for sock in held[-5:]:  # the ones already connected keep working
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
    for sock in held + extra:
        sock.close()
    assert server.client().ping() is True


@pytest.mark.slow
def test_a_thousand_connections_are_held_and_served(make_daemon):
    server = make_daemon(tcp=True)
    conns = []
    for _ in range(1000):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conns.append(sock)
    for i, sock in enumerate(conns):
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\nc%d\r\n$2\r\nok\r\n" % (len(b"c%d" % i), i))
    for sock in conns:
        assert sock.recv(100) == b"+OK\r\n"
    assert server.info("clients")["connected_clients"] >= 1000
    assert server.client().dbsize() == 1000
    for sock in conns:
        sock.close()
