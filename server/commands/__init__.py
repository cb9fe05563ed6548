"""The command table: Redis command name -> one small function, by family.

    strings.py     GET SET GETSET GETDEL MGET MSET APPEND STRLEN INCR...   (t_string.c)
    bits.py        SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD            (bitops.c)
    hashes.py      HSET HGET HMGET HGETALL HDEL HINCRBY HSCAN...           (t_hash.c)
    lists.py       LPUSH RPUSH LPOP RPOP LRANGE LINDEX LSET LMOVE LMPOP... (t_list.c)
    sets.py        SADD SREM SMEMBERS SISMEMBER SPOP SINTER SUNION SDIFF...  (t_set.c)
    zsets.py       ZADD ZRANGE ZRANK ZSCORE ZPOPMIN BZPOPMIN ZUNION...          (t_zset.c)
    sort.py        SORT SORT_RO                                                (sort.c)
    pubsub.py      SUBSCRIBE PSUBSCRIBE PUBLISH PUBSUB SSUBSCRIBE...          (pubsub.c)
    streams.py     XADD XRANGE XREVRANGE XLEN XDEL XTRIM                   (t_stream.c)
    keys.py        DEL EXISTS KEYS SCAN DBSIZE TYPE TTL RENAME COPY...    (db.c, expire.c)
    dump.py        DUMP RESTORE MIGRATE                                    (cluster.c)
    connection.py  PING ECHO SELECT QUIT AUTH HELLO CLIENT
    admin.py       INFO CONFIG COMPACT SHUTDOWN DEBUG TIME LASTSAVE WAIT MONITOR SLOWLOG MEMORY
    transactions.py MULTI EXEC DISCARD WATCH UNWATCH                        (multi.c)
    scripting.py   EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT                  (eval.c)
    functions.py   FUNCTION FCALL FCALL_RO                                 (functions.c)
    introspection.py COMMAND (INFO, DOCS from redis_commands.json)
    info.py        what INFO and CONFIG GET report
    common.py      the errors and argument readers the families share
    table.py       a row of the table: Command, from Redis 7.0's description

Each family lists its commands as rows of table.py: a name and a handler, with
Redis 7.0's own arity, flags and key positions (and what kvd overrides).

Every handler is `handler(ctx, conn, args) -> bytes`: `ctx` is the narrow
Context (keyspace, stats, config, control, auth), `conn` the client (its
reply encoder is `conn.resp`), `args[0]` the command name as sent. The one
gate every request passes before a handler (lookup, arity, auth, write
refusal, drain) is server/dispatch.py. COMMAND, which describes this table,
lives in introspection.py.
"""

from __future__ import annotations

from ..resp import error
from . import (
    admin,
    bits,
    connection,
    dump,
    functions,
    hashes,
    introspection,
    keys,
    lists,
    pubsub,
    scripting,
    sets,
    sort,
    streams,
    strings,
    transactions,
    zsets,
)
from .common import Command, c_string, subcommand_refusal, unknown_subcommand, wrong_arity  # noqa: F401
from .table import row


def unknown_command(args: list[bytes]) -> bytes:
    """Redis 7's text, with the first arguments quoted (at most 128 bytes of them),
    byte for byte as the client sent them.

    Redis formats them with C's %.*s, so each stops at its first NUL byte.
    """
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + c_string(arg)[: 128 - len(shown)] + b"' "
    name = c_string(args[0])[:128]
    return error(b"ERR unknown command '" + name + b"', with args beginning with: " + shown)


def _table() -> dict[bytes, Command]:
    rows = [*strings.COMMANDS, *bits.COMMANDS, *hashes.COMMANDS, *lists.COMMANDS,
            *sets.COMMANDS, *zsets.COMMANDS, *sort.COMMANDS, *pubsub.COMMANDS,
            *streams.COMMANDS,
            *keys.COMMANDS, *dump.COMMANDS,
            *connection.COMMANDS, *admin.COMMANDS, *transactions.COMMANDS, *scripting.COMMANDS,
            *functions.COMMANDS,
            row("command", introspection.command,
                subcommands=["count", "docs", "getkeys", "getkeysandflags", "info", "list",
                             "help"])]
    return {command.name.encode(): command for command in rows}


COMMANDS: dict[bytes, Command] = _table()
introspection.DESCRIBED.update(COMMANDS)
# Exact-case lookups first: clients send upper case, people type lower case.
LOOKUP: dict[bytes, Command] = {**COMMANDS, **{k.upper(): v for k, v in COMMANDS.items()}}
