"""Python helpers for kvd's users, and the `kvctl` command line (client.cli).

kvd speaks RESP2, so the Python client is redis-py; `connect()` returns one
configured for kvd:

    from client import connect
    r = connect()                      # ./kvd.sock, or $KVD_SOCKET
    r.set("greeting", "hello")
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"user:{i}", i)
    pipe.execute()

Signals go to the daemon through its PID file with `server.pidfile`'s
`send_signal` -- the one implementation `kvd stop` uses too.
"""

from __future__ import annotations

import os

import redis

DEFAULT_SOCKET = "kvd.sock"

__all__ = ["connect", "password_from", "DEFAULT_SOCKET"]


def password_from(password: str | None = None, password_file: str | None = None) -> str | None:
    """The password to send: given, else from `password_file`, else $KVD_PASSWORD or
    $KVD_PASSWORD_FILE; None when there is none."""
    if password:
        return password
    password_file = password_file or os.environ.get("KVD_PASSWORD_FILE")
    if password_file:
        with open(password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n") or None
    return os.environ.get("KVD_PASSWORD") or None


def connect(socket: str | None = None, host: str | None = None, port: int | None = None,
            password: str | None = None, password_file: str | None = None,
            **kwargs) -> redis.Redis:
    """A redis-py client for kvd, with redis-py's defaults (RESP3 in redis-py 8).

    With `host` (or `port`) it uses TCP (default port 7379); otherwise the Unix
    socket `socket`, $KVD_SOCKET, or ./kvd.sock. Extra keyword arguments go to
    `redis.Redis`. The connection is opened lazily, on the first command.
    """
    password = password_from(password, password_file)
    if host or port:
        return redis.Redis(host=host or "127.0.0.1", port=port or 7379, password=password,
                           **kwargs)
    path = socket or os.environ.get("KVD_SOCKET") or DEFAULT_SOCKET
    return redis.Redis(unix_socket_path=path, password=password, **kwargs)
