"""Moving values between servers (Redis's cluster.c): DUMP, RESTORE, MIGRATE.

The payloads are Redis's own (server/rdb.py), so a value dumped by
redis-server restores into kvd and the other way round, and MIGRATE works in
both directions: redis-server's MIGRATE sends kvd `SELECT` and `RESTORE`, and
kvd's MIGRATE sends the same to any Redis-speaking server.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from .. import notify
from ..keyspace import now_ms
from ..protocol import encode_request, parse_strict_int
from ..rdb import PayloadError
from ..rdb_objects import dump_payload, load_payload
from ..resp import OK, error, status
from .common import NOT_INTEGER, SYNTAX, keyword
from .table import row
from .values import read_value, write_value

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

BUSYKEY = error("BUSYKEY Target key name already exists.")


def dump(ctx: Context, conn: Connection, args: list) -> bytes:
    value = read_value(ctx.keyspace, args[1])
    if value is None:
        return conn.resp.null
    parts = dump_payload(value)
    return b"".join([b"$%d\r\n" % sum(map(len, parts)), *parts, b"\r\n"])  # one copy


def restore(ctx: Context, conn: Connection, args: list) -> bytes:
    """RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]: kvd keeps no
    access times or frequencies, so IDLETIME and FREQ are checked, then ignored."""
    replace = absolute = False
    idle = freq = None
    j = 4
    while j < len(args):
        option = keyword(args[j])
        more = j + 1 < len(args)
        if option == b"replace":
            replace = True
        elif option == b"absttl":
            absolute = True
        elif option == b"idletime" and more and freq is None:
            idle = parse_strict_int(args[j + 1])
            if idle is None:
                return NOT_INTEGER
            if idle < 0:
                return error("ERR Invalid IDLETIME value, must be >= 0")
            j += 1
        elif option == b"freq" and more and idle is None:
            freq = parse_strict_int(args[j + 1])
            if freq is None:
                return NOT_INTEGER
            if not 0 <= freq <= 255:
                return error("ERR Invalid FREQ value, must be >= 0 and <= 255")
            j += 1
        else:
            return SYNTAX
        j += 1
    keyspace, key = ctx.keyspace, args[1]
    if not replace and key in keyspace:
        return BUSYKEY
    ttl = parse_strict_int(args[2])
    if ttl is None:
        return NOT_INTEGER
    if ttl < 0:
        return error("ERR Invalid TTL value, must be >= 0")
    try:
        value = load_payload(args[3])
    except PayloadError as exc:
        return error(str(exc))
    deadline = ttl if absolute or not ttl else ttl + now_ms()
    if deadline and deadline <= now_ms():  # already expired: only the REPLACE's delete
        if replace:
            keyspace.remove(key)
        return OK
    write_value(ctx, key, value, deadline)
    keyspace.notify(notify.GENERIC, b"restore", key)
    return OK


def migrate(ctx: Context, conn: Connection, args: list) -> bytes:
    """MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw]
    [KEYS key...]: RESTORE each key on the target, then delete it here (unless COPY).

    As in Redis, this holds the loop while it talks to the target, each wait bounded by
    `timeout` ms; kvd opens a connection per MIGRATE instead of keeping one cached.
    """
    copy = replace = False
    auth: list[bytes] = []
    keys = [args[3]]
    j = 6
    while j < len(args):
        option = keyword(args[j])
        left = len(args) - 1 - j
        if option == b"copy":
            copy = True
        elif option == b"replace":
            replace = True
        elif option == b"auth":
            if not left:
                return SYNTAX
            auth = [args[j + 1]]
            j += 1
        elif option == b"auth2":
            if left < 2:
                return SYNTAX
            auth = [args[j + 1], args[j + 2]]
            j += 2
        elif option == b"keys":
            if args[3]:
                return error("ERR When using MIGRATE KEYS option, the key argument must be set "
                             "to the empty string")
            keys = args[j + 1:]
            break
        else:
            return SYNTAX
        j += 1
    timeout, db = parse_strict_int(args[5]), parse_strict_int(args[4])
    if timeout is None or db is None:
        return NOT_INTEGER
    timeout = timeout if timeout > 0 else 1000
    keyspace = ctx.keyspace
    found = [(key, value) for key in keys if (value := read_value(keyspace, key)) is not None]
    if not found:
        return status("NOKEY")
    restores = []
    for key, value in found:
        deadline = keyspace.deadline(key)
        ttl = max(deadline - now_ms(), 1) if deadline else 0
        restores.append((key, [b"RESTORE", key, b"%d" % ttl, b"".join(dump_payload(value)),
                               *([b"REPLACE"] if replace else [])]))
    commands = ([[b"AUTH", *auth]] if auth else []) + [[b"SELECT", b"%d" % db]]
    commands += [command for _, command in restores]
    try:
        target = socket.create_connection((args[1].decode(errors="replace"),
                                           int(args[2]) if args[2].isdigit() else 0),
                                          timeout=timeout / 1000)
    except ConnectionRefusedError:  # Redis connects without blocking: its write fails
        return error("IOERR error or timeout writing to target instance")
    except (OSError, ValueError, OverflowError):
        return error("IOERR error or timeout connecting to the client")
    with target:
        try:
            target.sendall(b"".join(encode_request(*command) for command in commands))
        except OSError:
            return error("IOERR error or timeout writing to target instance")
        lines = _ReplyLines(target)
        setup_error = target_error = None  # AUTH's or SELECT's refusal fails every key
        moved = []
        try:
            for _ in commands[:len(commands) - len(restores)]:
                reply = lines.next()
                if reply.startswith(b"-") and setup_error is None:
                    setup_error = reply
            for key, _ in restores:
                reply = lines.next()
                if setup_error is not None or reply.startswith(b"-"):
                    target_error = target_error or setup_error or reply
                else:
                    moved.append(key)
        except OSError:
            pass
        finally:
            if not copy:
                for key in moved:
                    keyspace.remove(key)
        if target_error is not None:
            return error(b"ERR Target instance replied with error: " + target_error[1:])
        if len(moved) < len(restores):
            return error("IOERR error or timeout reading to target instance")
    return OK


class _ReplyLines:
    """The target's one-line replies (+OK, -ERR ...), as Redis's connSyncReadLine."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the target closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.rstrip(b"\r")


COMMANDS = [
    row("dump", dump),
    row("restore", restore),
    row("migrate", migrate),
]
