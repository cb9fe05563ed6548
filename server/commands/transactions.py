"""MULTI, EXEC, DISCARD, WATCH, UNWATCH (Redis's multi.c).

The gate queues what comes between MULTI and EXEC; EXEC runs the queue in
one go -- nothing of another client runs in between, the loop being one
thread -- and its writes reach the disk as one write batch, acknowledged
with the pass's group commit: after a crash the transaction is there whole
or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..resp import OK, array, error
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

EXECABORT = error("EXECABORT Transaction discarded because of previous errors.")


def multi(ctx: Context, conn: Connection, args: list) -> bytes:
    if conn.tx.queued is not None:
        return error("ERR MULTI calls can not be nested")
    conn.tx.queued = []
    return OK


def discard(ctx: Context, conn: Connection, args: list) -> bytes:
    if conn.tx.queued is None:
        return error("ERR DISCARD without MULTI")
    conn.tx.discard(ctx.keyspace.watches)
    return OK


def exec_(ctx: Context, conn: Connection, args: list) -> bytes:
    tx, keyspace = conn.tx, ctx.keyspace
    if tx.queued is None:
        return error("ERR EXEC without MULTI")
    databases = ctx.databases
    if any(not expired and databases[db].is_expired(key)
           for (db, key), expired in tx.watched.items()):
        tx.dirty = True  # a watched key expired since WATCH
    queued, aborted, dirty = tx.queued, tx.aborted, tx.dirty
    tx.discard(keyspace.watches)
    if aborted:
        return EXECABORT
    if dirty:
        return conn.resp.null_array
    ctx.stats.commands_processed += len(queued)
    call = ctx.call
    keyspace.begin_batch()
    tx.executing = True
    try:
        replies = [call(conn, command, queued_args) for command, queued_args in queued]
    finally:
        tx.executing = False
        keyspace.end_batch()
    return array(replies)


def watch(ctx: Context, conn: Connection, args: list) -> bytes:
    tx, keyspace = conn.tx, ctx.keyspace
    if tx.queued is not None:
        return error("ERR WATCH inside MULTI is not allowed")
    if not tx.dirty:  # no point in watching more once dirty
        for key in args[1:]:
            keyspace.watches.watch(tx, (keyspace.db, key), keyspace.is_expired(key))
    return OK


def unwatch(ctx: Context, conn: Connection, args: list) -> bytes:
    ctx.keyspace.watches.unwatch_all(conn.tx)
    conn.tx.dirty = False
    return OK


# name, handler, arity, writes (EXEC writes if what it runs does: the gate decides)
COMMANDS = [
    row("multi", multi),
    row("exec", exec_),
    row("discard", discard),
    row("watch", watch),
    row("unwatch", unwatch),
]
