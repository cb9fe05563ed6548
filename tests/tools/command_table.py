"""Regenerate server/commands/redis_commands.json: what Redis 7.0 answers to COMMAND INFO
and COMMAND DOCS for each of its commands. kvd's command table takes each command's
arity, flags and key positions from it (server/commands/table.py), and COMMAND
describes the commands kvd has exactly as Redis does.

    ./run python -m tests.tools.command_table        (needs redis-server on PATH)

Replies are read in RESP3 and stored with their types, compactly: a JSON string is a
bulk string, a number an integer, null a null; ["+", text] a status, ["a", [...]] an
array, ["s", [...]] a set, ["m", [k, v, ...]] a map. kvd encodes them back in either
protocol (server/commands/introspection.py). Subcommands are all kept; kvd shows those
its command table has. kvd's own COMPACT is described in that module.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.kvd_process import RedisServer

OUT = Path(__file__).resolve().parents[2] / "server" / "commands" / "redis_commands.json"


class Resp3:
    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def read(self):
        line = self.file.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return ["+", rest.decode()]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            data = self.file.read(int(rest) + 2)[:-2]
            return data.decode()
        if kind == b"_":
            return None
        if kind in (b"*", b"~"):
            return ["a" if kind == b"*" else "s", [self.read() for _ in range(int(rest))]]
        if kind == b"%":
            return ["m", [self.read() for _ in range(2 * int(rest))]]
        raise ValueError(f"unexpected RESP3 type {kind!r}")


def ask(sock: socket.socket, reader: Resp3, *args: str):
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args))
    return reader.read()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory))
        try:
            version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                     text=True).stdout.split()[2].split("=")[1]
            sock = socket.create_connection(("127.0.0.1", redis_server.port))
            reader = Resp3(sock)
            ask(sock, reader, "HELLO", "3")
            table = {}
            names = [name for name in ask(sock, reader, "COMMAND", "LIST")[1] if "|" not in name]
            for name in sorted(names):
                info = ask(sock, reader, "COMMAND", "INFO", name)[1][0]
                docs = ask(sock, reader, "COMMAND", "DOCS", name)[1]
                table[name] = {"info": info, "docs": docs[1]}
            sock.close()
        finally:
            redis_server.stop()
    OUT.write_text(json.dumps({"redis_version": version, "commands": table},
                              separators=(",", ":")) + "\n")
    print(f"{len(table)} commands from Redis {version} -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
