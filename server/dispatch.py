"""The gate every request passes (Redis's processCommand), then its command.

In order: look the command up (unknown command), check its arity, check
that the client is authenticated, refuse a write while the store cannot
write, refuse everything on a connection that is draining -- then call the
handler with the narrow Context. MULTI queueing will go here, so that EXEC
re-enters the same checks instead of repeating them.

This is the hot path of the server: a pipelined client's requests all pass
through `run`, so it keeps to local names and adds the per-request counters
up once per call.
"""

from __future__ import annotations

import logging

from storage import StorageError

from .commands import BEFORE_AUTH, COMMANDS, LOOKUP, unknown_command, wrong_arity
from .commit import GroupCommit
from .connection import Connection
from .context import Context
from .errors import CommandError
from .resp import error

log = logging.getLogger("kvd.server")

SHUTTING_DOWN = error("ERR server is shutting down")
NOAUTH = error("NOAUTH Authentication required.")


class Dispatcher:
    def __init__(self, ctx: Context, commit: GroupCommit) -> None:
        self.ctx = ctx
        self.commit = commit

    def run(self, conn: Connection, requests: list[list[bytes]]) -> None:
        """Execute requests in order, collecting their replies on the connection."""
        replies = conn.replies
        if not requests:
            return
        if conn.draining:
            replies.extend(SHUTTING_DOWN for _ in requests)
            return
        ctx, commit = self.ctx, self.commit
        lookup = LOOKUP
        write_slots = conn.write_slots
        writes_before = len(write_slots)
        errors = 0
        for args in requests:
            command = lookup.get(args[0])
            if command is None:
                command = COMMANDS.get(args[0].lower())
                if command is None:
                    errors += 1
                    replies.append(unknown_command(args))
                    continue
            arity = command.arity
            if (len(args) != arity) if arity > 0 else (len(args) < -arity):
                errors += 1
                replies.append(wrong_arity(args[0]))
                continue
            if not conn.authenticated and command.name.encode() not in BEFORE_AUTH:
                replies.append(NOAUTH)
                continue
            if command.write:
                if commit.write_error is not None:
                    refused = commit.refusal()
                    if refused is not None:
                        replies.append(refused)
                        continue
                write_slots.append(len(replies))
            try:
                replies.append(command.handler(ctx, conn, args))
            except CommandError as exc:
                replies.append(exc.reply)
            except StorageError as exc:
                replies.append(error(f"ERR storage error: {exc}"))
            except Exception as exc:  # a bug must cost one reply, not the server
                log.exception("%s: %s failed", conn.describe(), command.name)
                replies.append(error(f"ERR internal error in {command.name}: {exc}"))
            if conn.closing:  # QUIT: nothing after it is executed
                break
        stats = ctx.stats
        stats.commands_processed += len(requests)
        stats.error_replies += errors
        conn.commands += len(requests)
        writes = len(write_slots) - writes_before
        if writes:
            stats.writes_processed += writes
            commit.dirty = True
        conn.last_command = requests[-1][0]
