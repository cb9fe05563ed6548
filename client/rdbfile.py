"""Reading and writing RDB files (Redis's dump.rdb). Read, from `SAVE`, `BGSAVE` or
`redis-cli --rdb`, as a stream of keys for `kvctl import`: Redis 6.x and 7.0 files (RDB
versions up to 10; 11 and 12, of Redis 7.2 and 7.4, are read where they use the types
kvd knows).

Each key comes with its database, its deadline and its value in a plain form
(server/rdb_objects.py reads every encoding); a module's value, or a stream with
consumer groups (kvd has none yet), is passed over (its bytes skipped) and reported by
what it is, so that an import can count what it left out. Function libraries (Redis 7
keeps them in the file) come as their code. The whole file's CRC-64 is checked before
anything is read, so a damaged file is refused before a single key is sent. Written
(`kvctl export --rdb`) in RDB version 10, which Redis 7.0 and later load at start-up.
"""

from __future__ import annotations

import mmap
import struct
import time
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

from server.rdb import (
    RDB_VERSION,
    PayloadError,
    _length,
    _read_length,
    _read_string,
    crc64,
    encode_string,
)
from server.rdb_objects import (
    STREAM_TYPES,
    T_MODULE_2,
    Value,
    encode_value,
    read_stream,
    read_value,
)

OP_FUNCTION2, OP_FUNCTION, OP_MODULE_AUX, OP_IDLE, OP_FREQ = 245, 246, 247, 248, 249
OP_AUX, OP_RESIZEDB, OP_EXPIRETIME_MS, OP_EXPIRETIME, OP_SELECTDB, OP_EOF = (
    250, 251, 252, 253, 254, 255)
MAX_VERSION = 12


class RdbError(ValueError):
    """A file that is not a readable RDB file; str() says where and why."""


class Entry(NamedTuple):
    db: int
    key: bytes
    value: Value | None  # None: passed over (see `skipped`)
    deadline_ms: int  # 0: none
    end: int  # where in the file it ends (progress)
    skipped: str = ""  # "stream" or "module" for a value not read


class Library(NamedTuple):
    code: bytes
    end: int


def read_rdb(path: str) -> Iterator[Entry | Library]:
    """The keys and libraries of the RDB file at `path`, in file order."""
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            raise RdbError(f"{path} is empty, not an RDB file") from None
    with mapped:
        body = memoryview(mapped)
        try:
            yield from _entries(body, path)
        finally:
            body.release()


def _entries(body: memoryview, path: str) -> Iterator[Entry | Library]:
    if bytes(body[:5]) != b"REDIS" or not bytes(body[5:9]).isdigit():
        raise RdbError(f"{path} is not an RDB file (it does not start with REDIS and a version)")
    version = int(bytes(body[5:9]))
    if version > MAX_VERSION:
        raise RdbError(f"{path} is RDB version {version}; kvd reads versions up to "
                       f"{MAX_VERSION} (Redis 7.4)")
    if version >= 5 and len(body) >= 17:
        (stored,) = struct.unpack_from("<Q", body, len(body) - 8)
        if stored and crc64(body[:-8]) != stored:
            raise RdbError(f"{path}: the file's checksum is wrong (damaged or truncated)")
    at, db, deadline = 9, 0, 0
    try:
        while True:
            start = at
            opcode = body[at]
            at += 1
            if opcode == OP_EOF:
                return
            if opcode == OP_AUX:
                _, at = _read_string(body, at)
                _, at = _read_string(body, at)
            elif opcode == OP_RESIZEDB:
                _, _, at = _read_length(body, at)
                _, _, at = _read_length(body, at)
            elif opcode == OP_SELECTDB:
                db, _, at = _read_length(body, at)
            elif opcode == OP_EXPIRETIME_MS:
                (deadline,) = struct.unpack_from("<q", body, at)
                at += 8
            elif opcode == OP_EXPIRETIME:
                (seconds,) = struct.unpack_from("<i", body, at)
                deadline = seconds * 1000
                at += 4
            elif opcode == OP_FREQ:
                at += 1
            elif opcode == OP_IDLE:
                _, _, at = _read_length(body, at)
            elif opcode == OP_FUNCTION2:
                code, at = _read_string(body, at)
                yield Library(code, at)
            elif opcode == OP_MODULE_AUX:  # a module's own data: passed over
                _, _, at = _read_length(body, at)  # the module's id
                _, _, at = _read_length(body, at)  # when opcode
                _, _, at = _read_length(body, at)  # when
                at = _skip_fields(body, at)
            elif opcode == OP_FUNCTION:
                raise RdbError(f"{path}: offset {start}: a library in the format of Redis "
                               "7.0's release candidates, which kvd does not read")
            else:
                key, at = _read_string(body, at)
                if opcode in STREAM_TYPES:
                    stream, groups, at = read_stream(body, at, opcode)
                    if groups:  # (kvd has no consumer groups yet)
                        yield Entry(db, key, None, deadline, at, "stream with consumer groups")
                    else:
                        yield Entry(db, key, stream, deadline, at)
                elif opcode == T_MODULE_2:
                    at = _skip_module(body, at)
                    yield Entry(db, key, None, deadline, at, "module")
                else:
                    value, at = read_value(body, at, opcode)
                    yield Entry(db, key, value, deadline, at)
                deadline = 0
    except (PayloadError, IndexError, struct.error) as exc:
        raise RdbError(f"{path}: offset {start}: cannot read it ({exc or 'truncated'})") from None


def _skip_module(body: memoryview, at: int) -> int:
    """Past a module's value of RDB_TYPE_MODULE_2: its id, then its typed fields."""
    _, _, at = _read_length(body, at)
    return _skip_fields(body, at)


def _skip_fields(body: memoryview, at: int) -> int:
    """Past a module's typed fields, to their EOF marker (RDB_MODULE_OPCODE_*)."""
    while True:
        kind, _, at = _read_length(body, at)
        if kind == 0:
            return at
        if kind in (1, 2):
            _, _, at = _read_length(body, at)
        elif kind == 3:
            at += 4
        elif kind == 4:
            at += 8
        elif kind == 5:
            _, at = _read_string(body, at)
        else:
            raise PayloadError("ERR Bad data format")


# -- writing ------------------------------------------------------------------------------

class RdbWriter:
    """An RDB file of version 10 (Redis 7.0's) written as keys come: header and aux
    fields, each database's SELECTDB, each key with its deadline, the function
    libraries, EOF and the CRC-64 of it all -- what redis-server loads at start-up."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.crc = 0
        self.db: int | None = None
        self._write(b"REDIS%04d" % RDB_VERSION)
        for name, value in ((b"redis-ver", b"7.0.0"), (b"redis-bits", b"64"),
                            (b"ctime", b"%d" % time.time()), (b"aof-base", b"0")):
            self._write(bytes([OP_AUX]) + encode_string(name) + encode_string(value))

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.crc = crc64(data, self.crc)

    def key(self, db: int, key: bytes, value: Value, deadline_ms: int) -> None:
        if db != self.db:
            self._write(bytes([OP_SELECTDB]) + _length(db))
            self.db = db
        if deadline_ms:
            self._write(bytes([OP_EXPIRETIME_MS]) + struct.pack("<q", deadline_ms))
        encoded = encode_value(value)  # (the type byte, then the value)
        self._write(encoded[:1] + encode_string(key) + encoded[1:])

    def libraries(self, codes: list[bytes]) -> None:
        for code in codes:
            self._write(bytes([OP_FUNCTION2]) + _length(len(code)) + code)

    def finish(self) -> None:
        self._write(bytes([OP_EOF]))
        self.out.write(struct.pack("<Q", self.crc))
