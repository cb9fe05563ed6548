"""The pub/sub commands (Redis's pubsub.c): SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE
PUBLISH SSUBSCRIBE SUNSUBSCRIBE SPUBLISH PUBSUB (CHANNELS NUMSUB NUMPAT SHARDCHANNELS
SHARDNUMSUB). The registry and delivery are server/pubsub.py's; in RESP2 a subscribed
client may run only these, PING, QUIT and RESET (the gate, dispatch.py).

Each (un)subscription is confirmed by its own message, so these commands answer with
several replies joined (as Redis's addReplyPubsub*), or none at all (UNSUBSCRIBE with
nothing to unsubscribe answers one with a null channel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..glob import compile_glob
from ..resp import array, bulk, integer
from .common import help_reply, unknown_subcommand
from .table import row

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context


def _plain(conn: Connection) -> int:
    """The count a (P)(UN)SUBSCRIBE confirmation carries: channels and patterns (shard
    channels are counted apart, as Redis's clientSubscriptionsCount)."""
    return len(conn.channels) + len(conn.patterns)


def subscribe(ctx: Context, conn: Connection, args: list) -> bytes:
    """SUBSCRIBE / SSUBSCRIBE channel [channel ...]."""
    shard = args[0].upper() == b"SSUBSCRIBE"
    kind = b"ssubscribe" if shard else b"subscribe"
    replies = []
    for channel in args[1:]:
        ctx.pubsub.subscribe(conn, channel, shard)
        count = len(conn.shard_channels) if shard else _plain(conn)
        replies.append(conn.resp.push([kind, channel, count]))
    return b"".join(replies)


def unsubscribe(ctx: Context, conn: Connection, args: list) -> bytes:
    """UNSUBSCRIBE / SUNSUBSCRIBE [channel ...] (none named: all of them)."""
    shard = args[0].upper() == b"SUNSUBSCRIBE"
    kind = b"sunsubscribe" if shard else b"unsubscribe"
    mine = conn.shard_channels if shard else conn.channels
    channels = args[1:] or list(mine)
    if not channels:
        count = len(conn.shard_channels) if shard else _plain(conn)
        return conn.resp.push([kind, None, count])
    replies = []
    for channel in channels:
        ctx.pubsub.unsubscribe(conn, channel, shard)
        count = len(conn.shard_channels) if shard else _plain(conn)
        replies.append(conn.resp.push([kind, channel, count]))
    return b"".join(replies)


def psubscribe(ctx: Context, conn: Connection, args: list) -> bytes:
    replies = []
    for pattern in args[1:]:
        ctx.pubsub.psubscribe(conn, pattern)
        replies.append(conn.resp.push([b"psubscribe", pattern, _plain(conn)]))
    return b"".join(replies)


def punsubscribe(ctx: Context, conn: Connection, args: list) -> bytes:
    patterns = args[1:] or list(conn.patterns)
    if not patterns:
        return conn.resp.push([b"punsubscribe", None, _plain(conn)])
    replies = []
    for pattern in patterns:
        ctx.pubsub.punsubscribe(conn, pattern)
        replies.append(conn.resp.push([b"punsubscribe", pattern, _plain(conn)]))
    return b"".join(replies)


def publish(ctx: Context, conn: Connection, args: list) -> bytes:
    """PUBLISH / SPUBLISH channel message: how many clients received it."""
    return integer(ctx.pubsub.publish(args[1], args[2], shard=args[0].upper() == b"SPUBLISH"))


def pubsub(ctx: Context, conn: Connection, args: list) -> bytes:
    """PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS [pattern] |
    SHARDNUMSUB [channel ...] | HELP."""
    sub, registry = args[1].upper(), ctx.pubsub
    if sub in (b"CHANNELS", b"SHARDCHANNELS") and len(args) <= 3:
        table = registry.channels if sub == b"CHANNELS" else registry.shard_channels
        match = compile_glob(args[2]) if len(args) == 3 else None
        return conn.resp.bulks([c for c in table if match is None or match(c)])
    if sub in (b"NUMSUB", b"SHARDNUMSUB"):
        table = registry.channels if sub == b"NUMSUB" else registry.shard_channels
        return array([part for channel in args[2:] for part in (  # (flat, in RESP3 too)
            bulk(channel), integer(len(table.get(channel, ()))))])
    if sub == b"NUMPAT" and len(args) == 2:
        return integer(len(registry.patterns))
    if sub == b"HELP" and len(args) == 2:
        return help_reply("PUBSUB", PUBSUB_HELP)
    return unknown_subcommand(args)


PUBSUB_HELP = [
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
]


COMMANDS = [
    row("subscribe", subscribe),
    row("ssubscribe", subscribe),
    row("unsubscribe", unsubscribe),
    row("sunsubscribe", unsubscribe),
    row("psubscribe", psubscribe),
    row("punsubscribe", punsubscribe),
    # Redis flags them may-replicate (the message goes to replicas), though COMMAND INFO
    # does not show it: CLIENT PAUSE WRITE holds them, a read-only script may not call them.
    row("publish", publish, add_flags=["may_replicate"]),
    row("spublish", publish, add_flags=["may_replicate"]),
    row("pubsub", pubsub, subcommands=["channels", "numsub", "numpat", "shardchannels",
                                       "shardnumsub", "help"]),
]
