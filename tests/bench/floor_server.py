"""The floor for a Python server: the least any RESP server in Python must do.

A reference for the benchmark, not a product: one selectors loop, a hiredis
reader per connection, a dict, and the same durability as kvd -- every SET's
request bytes are appended to a file with one `write` per loop pass and,
under `always`, one `fdatasync` before that pass's replies are sent. No
record format, no CRC, no key directory by location, no error handling
beyond what keeps it running, no limits, no INFO; a reply that does not fit
the socket buffer is finished with a blocking send (the benchmark's clients
always read).

What it measures: if this loop reaches only a fraction of Redis's
throughput on a workload, that fraction bounds any Python server that parses
with hiredis and serves from a dict; kvd's gap beyond it is kvd's own work.

    python -m tests.bench.floor_server DIRECTORY always|everysec

It listens on a free loopback port and prints `ready PORT`.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time

import hiredis

OK, NIL = b"+OK\r\n", b"$-1\r\n"


def serve(directory: str, fsync: str) -> None:
    log_fd = os.open(os.path.join(directory, "floor.log"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    listener = socket.create_server(("127.0.0.1", 0), backlog=511)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    data: dict[bytes, bytes] = {}
    log = bytearray()
    last_sync = time.monotonic()
    print("ready", listener.getsockname()[1], flush=True)
    while True:
        replies: list[tuple[socket.socket, list[bytes]]] = []
        for key, _ in selector.select():
            if key.data is None:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ, hiredis.Reader())
                continue
            conn, reader = key.fileobj, key.data
            try:
                chunk = conn.recv(65536)
            except OSError:  # reset by the client
                chunk = b""
            if not chunk:
                selector.unregister(conn)
                conn.close()
                continue
            reader.feed(chunk)
            out = []
            wrote = False
            request = reader.gets()
            while request is not False:
                name = request[0].upper()
                if name == b"SET":
                    data[request[1]] = request[2]
                    wrote = True
                    out.append(OK)
                elif name == b"GET":
                    value = data.get(request[1])
                    out.append(NIL if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
                else:
                    out.append(OK)  # redis-benchmark's CONFIG GET at start-up
                request = reader.gets()
            if wrote:
                log += chunk  # stands in for the records: as many bytes, written and synced
            replies.append((conn, out))
        if log:
            os.write(log_fd, log)
            log.clear()
            now = time.monotonic()
            if fsync == "always" or now - last_sync >= 1:
                os.fdatasync(log_fd)
                last_sync = now
        for conn, out in replies:
            try:
                _send_all(conn, b"".join(out))
            except OSError:
                pass  # the client went away; its EOF closes the connection next pass


def _send_all(conn: socket.socket, data: bytes) -> None:
    try:
        sent = conn.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        conn.setblocking(True)
        conn.sendall(data[sent:])
        conn.setblocking(False)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
