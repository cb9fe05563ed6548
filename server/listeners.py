"""The listening sockets: a Unix socket that is ours alone, and loopback (or bound) TCP.

A Unix socket path is only ever unlinked by the server that created it (its
inode is remembered), and a stale one left by a killed server is replaced
only after a connect() proves nobody listens on it.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

from .errors import StartupError

log = logging.getLogger("kvd.server")

BACKLOG = 511


class Listener:
    __slots__ = ("sock", "kind", "path", "inode", "port")

    def __init__(self, sock: socket.socket, kind: str, path: str = "", inode: int = 0,
                 port: int = 0) -> None:
        self.sock, self.kind, self.path, self.inode, self.port = sock, kind, path, inode, port

    def close(self) -> None:
        self.sock.close()
        if self.kind == "unix":
            _unlink_if_ours(self.path, self.inode)
            log.info("stopped listening on %s (socket removed)", self.path)
        else:
            log.info("stopped listening on TCP port %s", self.port)


def listen_unix(path: str, mode: int) -> Listener:
    if os.path.lexists(path):
        _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is never reachable by others, not even briefly
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    log.info("listening on %s (mode %o)", path, mode)
    return Listener(sock, "unix", path, os.stat(path).st_ino)


def _remove_stale_socket(path: str) -> None:
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise StartupError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        log.info("removed a stale Unix socket %s", path)
    except OSError as exc:
        raise StartupError(f"cannot check the existing socket {path}: {exc.strerror}") from None
    else:
        raise StartupError(f"another server is listening on {path}")
    finally:
        probe.close()


def listen_tcp(host: str, port: int) -> Listener:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    port = sock.getsockname()[1]
    log.info("listening on %s:%d", host, port)
    return Listener(sock, "tcp", port=port)


def _unlink_if_ours(path: str, inode: int) -> None:
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass
