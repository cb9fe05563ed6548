"""The gate every request passes (Redis's processCommand), then its command.

In order: look the command up (unknown command), check its arity, check
that the client is authenticated, refuse a write while the store cannot
write, refuse everything on a connection that is draining -- then call the
handler with the narrow Context.

MULTI: from MULTI to EXEC every command that passes the checks is queued
(`+QUEUED`) instead; one that fails them dooms the transaction (EXECABORT).
EXEC (commands/transactions.py) runs the queue through `call`, past the
checks made when queueing, as Redis's EXEC re-enters call().

This is the hot path of the server: a pipelined client's requests all pass
through `run`, so it keeps to local names and adds the per-request counters
up once per call.
"""

from __future__ import annotations

import logging
import time
from typing import cast

from storage import StorageError

from . import fastpath
from .blocking import BLOCKED
from .commands import COMMANDS, LOOKUP, Command, subcommand_refusal, unknown_command, wrong_arity
from .commands.admin import debug_refusal
from .commands.table import redis_arity_and_flags
from .commit import GroupCommit
from .connection import REPLY_SKIP, REPLY_SKIP_NEXT, Connection
from .context import Context
from .errors import CommandError
from .fastpath import FastPath, Parts
from .protocol import Refused
from .resp import error, status
from .scripting import Run
from .slowlog import OFF as NEVER_SLOW

log = logging.getLogger("kvd.server")

SHUTTING_DOWN = error("ERR server is shutting down")
OUT_OF_MEMORY = error("OOM out of memory: the command's reply could not be built")
NOAUTH = error("NOAUTH Authentication required.")
QUEUED = status("QUEUED")
NO_MULTI = error("ERR Command not allowed inside a transaction")
# The (un)subscribe commands: their confirmations go out even under CLIENT REPLY OFF
CONFIRMED = frozenset({"subscribe", "ssubscribe", "unsubscribe", "sunsubscribe",
                       "psubscribe", "punsubscribe"})
# What a RESP2 client may run while subscribed (processCommand)
SUBSCRIBED_MAY = CONFIRMED | {"ping", "quit", "reset"}
# Inside MULTI these run at once; everything else is queued until EXEC (processCommand).
TRANSACTION_CONTROL = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})
GET, SET = LOOKUP[b"GET"], LOOKUP[b"SET"]
UNKNOWN_FROM_SCRIPT = error("ERR Unknown Redis command called from script")
ARITY_FROM_SCRIPT = error("ERR Wrong number of args calling Redis command from script")
NOT_FROM_SCRIPT = error("ERR This Redis command is not allowed from script")
WRITE_FROM_READ_ONLY = error("ERR Write commands are not allowed from read-only scripts.")


class Dispatcher:
    def __init__(self, ctx: Context, commit: GroupCommit) -> None:
        self.ctx = ctx
        self.commit = commit
        ctx.call = self.call  # EXEC re-enters here for each queued command
        ctx.script_call = self.script_call  # and redis.call, for each command of a script
        ctx.lookup = self.lookup
        # One per database: a run of GETs or SETs works in the client's.
        self._fast_parts = [Parts(keyspace, ctx.stats, self._failure, self._took, GET, SET)
                            for keyspace in ctx.databases]

    @staticmethod
    def _not_here(conn: Connection, args: list[bytes]) -> bytes:
        """The error for a command kvd does not have. Redis's gate checks one it has
        (SYNC, SAVE) for its arity, for authentication and, inside MULTI, whether it may
        be queued, before running it; those errors come first, as from Redis; then
        Redis's "unknown command"."""
        described = redis_arity_and_flags(args[0])
        if described is not None:
            arity, flags = described
            if (len(args) != arity) if arity > 0 else (len(args) < -arity):
                return wrong_arity(args[0])
            if not conn.authenticated and "no_auth" not in flags:
                return NOAUTH
            if conn.tx.queued is not None and "no_multi" in flags:
                return NO_MULTI
        return unknown_command(args)

    @staticmethod
    def lookup(name: bytes) -> Command | None:
        command = LOOKUP.get(name)
        return command if command is not None else COMMANDS.get(name.lower())

    def run(self, conn: Connection, requests: list[list[bytes]], busy: bool = False,
            admitted: bool = False) -> list[list[bytes]]:
        """Execute requests in order (see _run); under CLIENT REPLY OFF or SKIP one at a
        time, dropping the replies they should not send."""
        if conn.muted:
            return self._run_muted(conn, requests, busy, admitted)
        return self._run(conn, requests, busy, admitted)

    def _run_muted(self, conn: Connection, requests: list[list[bytes]], busy: bool,
                   admitted: bool) -> list[list[bytes]]:
        """CLIENT REPLY OFF drops every reply until CLIENT REPLY ON; SKIP drops the next
        command's. Pushes stay -- (un)subscribe confirmations, messages, notifications,
        as Redis sends them whatever the setting. (A reply left empty keeps its place in
        the pass: write slots are positions.)"""
        replies = conn.replies
        for index, args in enumerate(requests):
            if conn.muted == REPLY_SKIP_NEXT:  # (the SKIP is done: this request's reply goes)
                conn.muted = REPLY_SKIP
            before, mark = conn.muted, len(replies)
            left = self._run(conn, [args], busy, admitted)
            if left:  # held (a pause) or kept back (the output cap)
                return left + requests[index + 1:]
            if conn.muted and args[0].lower().decode(errors="replace") not in CONFIRMED:
                replies[mark:] = [reply if reply[:1] == b">" else b""
                                  for reply in replies[mark:]]
            if conn.blocked:  # (its reply, when it comes, is muted by the same rule)
                return requests[index + 1:]
            if before == REPLY_SKIP and conn.muted == REPLY_SKIP:
                conn.muted = ""
            if not conn.muted:
                return self._run(conn, requests[index + 1:], busy, admitted)
        return []

    def _run(self, conn: Connection, requests: list[list[bytes]], busy: bool = False,
             admitted: bool = False) -> list[list[bytes]]:
        """Execute requests in order, collecting their replies on the connection; return
        those left for later.

        The output cap (Redis's client output buffer limit, kept as backpressure): once
        the replies the connection owes pass --max-output-buffer, the requests after the
        one that passed it are not run now but returned -- the loop keeps them until the
        client has read its replies, so one read full of GETs of a large value costs
        one buffer, not one per GET. (A single reply may be larger than the cap.)

        `busy`: a script is running past the busy threshold (scripting.py); only what
        Redis allows then runs, everything else is refused with -BUSY (inside MULTI that
        dooms the transaction, as any refusal). `admitted`: the requests were read
        before a shutdown began (kept back by the cap), so they run although the
        connection is draining.

        While the gate's checks cannot fail for them, plain GETs and SETs take the
        short way (fastpath.py), whose contract keeps it the same as this one."""
        replies = conn.replies
        if not requests or conn.blocked:  # (a blocked client's requests wait: blocking.py)
            return requests
        if conn.draining and not admitted:
            replies.extend(SHUTTING_DOWN for _ in requests)
            for _ in requests:
                self.ctx.stats.error(SHUTTING_DOWN)
            if conn.tx.queued is not None:  # its EXEC is refused: nothing of it runs
                conn.tx.discard(self.ctx.keyspace.watches)
            return []
        ctx, commit = self.ctx, self.commit
        ctx.keyspace = ctx.databases.keyspaces[conn.db]
        lookup = LOOKUP
        write_slots = conn.write_slots
        writes_before = len(write_slots)
        tx = conn.tx
        stats = ctx.stats
        per_command = stats.commands
        scripts = ctx.scripts
        pause = ctx.pause
        # Each command is timed (one clock read: INFO commandstats; the slow log and the
        # latency monitor when they are on) and shown to monitors (one test while there
        # are none).
        monitors = ctx.monitors.clients
        blocking = ctx.databases.blocking
        slow_ns = min(ctx.slowlog.threshold_ns, ctx.latency.threshold_ns)
        timing = slow_ns < NEVER_SLOW
        clock = time.perf_counter_ns
        started = clock()
        short = self._short(conn, busy, monitors)
        # RESP2's subscribed mode: only the pub/sub commands, PING, QUIT, RESET
        subscribed = conn.resp.version == 2 and conn.subscriptions > 0
        runs = FastPath(self._fast_parts[conn.db], conn, requests,
                        ctx.config.max_output_buffer - len(conn.out) - sum(map(len, replies)),
                        slow_ns if timing else None, started)
        stop = len(requests)  # requests[stop:] are left for later
        muted_rest: list[list[bytes]] = []  # (see conn.muted below)
        for index, args in enumerate(requests):
            arity = short.get(args[0])
            if arity is not None and len(args) == arity:
                if arity != runs.kind:  # a new run begins: the pending one is done first
                    cut = runs.finish() if runs.items else None
                    if cut is not None:
                        stop = cut
                        break
                    runs.kind, runs.start = arity, index
                runs.items.append(args[1] if arity == 2 else (args[1], args[2]))
                continue  # its reply is added when the run is done
            cut = runs.finish()
            if cut is not None:
                stop = cut
                break
            started = runs.started
            command = lookup.get(args[0])
            if command is None:
                command = COMMANDS.get(args[0].lower())
                if command is None:
                    unknown = args.reply if type(args) is Refused else \
                        self._not_here(conn, args)
                    replies.append(self._reject(conn, None, unknown, args))
                    continue
            arity = command.arity
            if (len(args) != arity) if arity > 0 else (len(args) < -arity):
                replies.append(self._reject(conn, command, wrong_arity(args[0]), args))
                continue
            if not conn.authenticated and not command.no_auth:
                replies.append(self._reject(conn, command, NOAUTH, args))
                continue
            if command.subcommands is not None:
                refused = subcommand_refusal(command, args)
                if refused is not None:  # (an unknown one is no command: Redis counts none)
                    known = command.resolve(args)
                    replies.append(self._reject(conn, known if known is not command else None,
                                                refused, args))
                    continue
            if busy and not command.has("allow_busy", args):
                replies.append(self._reject(conn, command, ctx.scripts.busy_reply(), args))
                continue
            if subscribed and command.name not in SUBSCRIBED_MAY:
                replies.append(self._reject(conn, command, error(
                    f"ERR Can't execute '{command.resolve(args).name}': only (P|S)SUBSCRIBE "
                    "/ (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"),
                    args))
                continue
            if pause.mode and pause.holds(command, args, tx.queued):
                pause.hold(conn)  # this request and those after it wait (pause.py)
                stop = index
                break
            write = command.write
            if tx.queued is not None:
                if command.name not in TRANSACTION_CONTROL:
                    replies.append(self._queue(conn, command, args))
                    continue
                write = write or (command.name == "exec" and tx.writes > 0)
            if write:
                if commit.write_error is not None:
                    refused = commit.refusal()
                    if refused is not None:
                        replies.append(self._reject(conn, command, refused, args))
                        continue
                write_slots.append(len(replies))
            try:
                reply = command.handler(ctx, conn, args)
            except Exception as exc:
                reply = self._failure(conn, command, exc)
            if reply is BLOCKED:  # its reply comes when it is served or times out
                if write:
                    write_slots.pop()
                stats.command(command.name).calls += 1
                stop = index + 1
                break
            replies.append(reply)
            if blocking.ready:  # a write gave keys that clients wait on elements
                self._serve_blocked(conn)
            runs.room -= len(reply)
            now = clock()
            counted = command if command.subcommands is None else command.resolve(args)
            stat = per_command.get(counted.name) or stats.command(counted.name)
            stat.calls += 1
            stat.ns += now - started
            if reply and reply[0] == 45:  # "-": an error
                stat.failed += 1
                if reply is not scripts.counted_reply:  # (counted when its command failed)
                    stats.error(reply)
            if timing and now - started >= slow_ns:
                self._took(conn, command, args, now - started)
            runs.started = now
            if monitors and command.resolve(args).shown:
                ctx.monitors.feed(conn, args, conn.db)  # (after it ran, as Redis)
            if conn.db != runs.parts.keyspace.db:  # SELECT (or an EXEC with one in it)
                runs.parts = self._fast_parts[conn.db]
            short = self._short(conn, busy, monitors)  # MULTI, MONITOR, AUTH... change it
            if "pubsub" in command.flags or command.name == "reset":  # (what changes it)
                subscribed = conn.resp.version == 2 and conn.subscriptions > 0
            if conn.closing:  # QUIT: nothing after it is executed, nor kept
                stop = index + 1
                requests = requests[:stop]
                break
            if conn.muted:  # CLIENT REPLY OFF or SKIP: the rest runs one by one
                stop = index + 1
                muted_rest, requests = requests[stop:], requests[:stop]
                break
            if runs.room < 0:
                stop = index + 1
                break
        else:
            cut = runs.finish()
            if cut is not None:
                stop = cut
        stats.commands_processed += stop
        conn.commands += stop
        writes = len(write_slots) - writes_before
        if writes:
            stats.writes_processed += writes
            commit.dirty = True
        if stop:
            conn.last_command = requests[stop - 1]  # CLIENT LIST's cmd= (its name, for |sub)
        if muted_rest:
            return self._run_muted(conn, muted_rest, busy, admitted)
        return requests[stop:]

    def _serve_blocked(self, conn: Connection) -> None:
        """After a command (a whole EXEC or script): serve the clients waiting on the
        keys it gave elements (blocking.py); their pops are writes of this pass."""
        ctx = self.ctx
        databases = ctx.databases
        if databases.blocking.serve_ready(databases.__getitem__):
            self.commit.dirty = True
        ctx.keyspace = databases.keyspaces[conn.db]

    def _short(self, conn: Connection, busy: bool, monitors) -> dict[bytes, int]:
        """The short way's table (fastpath.py) while nothing the gate checks for GET and
        SET is in play (a transaction queueing, a monitor, auth to come, a store refusing
        writes, a busy script, keyspace notifications to send), else an empty one."""
        if (busy or conn.tx.queued is not None or monitors or conn.parser.unauthenticated
                or self.commit.write_error is not None or self.ctx.pause.mode
                or conn.subscriptions or self.ctx.keyspace.events.flags):
            return fastpath.NONE
        return fastpath.SHORT

    def script_call(self, run: Run, args: list[bytes]) -> bytes:
        """The gate of a command a script calls (Redis's scriptCall): known, with its
        arity, allowed from scripts, no write from a read-only script, and none while the
        store cannot write -- unless the script already wrote: it cannot stop half-way."""
        refused = self._script_refusal(run, args)
        if refused is not None:
            command, reply = refused
            stats = self.ctx.stats
            if command is not None:
                stats.command(command.resolve(args).name).rejected += 1
            stats.error(reply)
            return reply
        command = self.lookup(args[0])
        assert command is not None
        if command.write:
            run.wrote = True
        self.ctx.stats.commands_processed += 1
        # (the script's stand-in client has what commands use of one: resp, tx)
        reply = self._counted(cast(Connection, run.client), command, args, slow_log=False)
        monitors = self.ctx.monitors
        if monitors.clients and command.resolve(args).shown:
            monitors.feed(None, args, self.ctx.keyspace.db)
        return reply

    def _script_refusal(self, run: Run, args: list[bytes]
                        ) -> tuple[Command | None, bytes] | None:
        """Why a script may not run the command `args` (the command, if known, and the
        error), or None."""
        command = self.lookup(args[0])
        if command is None:
            return None, UNKNOWN_FROM_SCRIPT
        arity = command.arity
        if (len(args) != arity) if arity > 0 else (len(args) < -arity):
            return command, ARITY_FROM_SCRIPT
        if command.has("noscript", args):
            return command, NOT_FROM_SCRIPT
        if command.subcommands is not None:
            refused = subcommand_refusal(command, args)
            if refused is not None:
                known = command.resolve(args)
                return (known if known is not command else None), refused
        if run.read_only and command.has("may_replicate", args):  # PUBLISH: as a write
            return command, WRITE_FROM_READ_ONLY
        if command.write:
            if run.read_only:
                return command, WRITE_FROM_READ_ONLY
            if not run.wrote:
                refused = self.commit.refusal()
                if refused is not None:
                    return command, refused
        return None

    def call(self, conn: Connection, command: Command, args: list[bytes]) -> bytes:
        """Run one command past the gate (EXEC runs its queue through here): timed for the
        slow log and INFO commandstats, and shown to monitors, as Redis's call()."""
        reply = self._counted(conn, command, args)
        monitors = self.ctx.monitors
        if monitors.clients and command.resolve(args).shown:
            monitors.feed(conn, args, conn.db)
        return reply

    def _counted(self, conn: Connection, command: Command, args: list[bytes],
                 slow_log: bool = True) -> bytes:
        """Run a command past a gate, counted in INFO commandstats and errorstats and (not
        from a script, as in Redis) timed for the slow log, as Redis's call()."""
        started = time.perf_counter_ns()
        reply = self._execute(conn, command, args)
        elapsed = time.perf_counter_ns() - started
        stats = self.ctx.stats
        stat = stats.command(command.resolve(args).name)
        stat.calls += 1
        stat.ns += elapsed
        if reply[:1] == b"-":
            stat.failed += 1
            if reply is not self.ctx.scripts.counted_reply:
                stats.error(reply)
        if slow_log:
            self._took(conn, command, args, elapsed)
        return reply

    def _took(self, conn: Connection, command: Command, args: list[bytes], elapsed: int) -> None:
        """A command took `elapsed` ns: the slow log and the latency monitor keep it if it
        passes their thresholds (EXEC is not kept: its commands are, one by one)."""
        if command.name == "exec":
            return
        slowlog, latency = self.ctx.slowlog, self.ctx.latency
        if elapsed >= slowlog.threshold_ns:
            slowlog.add(conn, args, elapsed)
        latency.add_if_needed("command", elapsed)

    def _execute(self, conn: Connection, command: Command, args: list[bytes]) -> bytes:
        try:
            return command.handler(self.ctx, conn, args)
        except Exception as exc:
            return self._failure(conn, command, exc)

    def _failure(self, conn: Connection, command: Command, exc: Exception) -> bytes:
        if isinstance(exc, CommandError):
            return exc.reply
        if isinstance(exc, StorageError):
            return error(f"ERR storage error: {exc}")
        if isinstance(exc, MemoryError):  # (no traceback: logging one needs memory too)
            log.error("%s: %s ran out of memory", conn.describe(), command.name)
            return OUT_OF_MEMORY
        log.exception("%s: %s failed", conn.describe(), command.name)  # a bug costs one reply
        return error(f"ERR internal error in {command.name}: {exc}")

    def _queue(self, conn: Connection, command: Command, args: list[bytes]) -> bytes:
        """MULTI: the command waits for EXEC -- unless it may not, or cannot."""
        tx = conn.tx
        refused = ((command.name == "debug" and debug_refusal(self.ctx, conn))
                   or ("no_multi" in command.flags and NO_MULTI)
                   or (command.write and self.commit.refusal()))
        if refused:
            return self._reject(conn, command, refused, args)
        tx.queued_bytes += sum(len(arg) for arg in args)
        limit = self.ctx.config.max_transaction_size
        if tx.queued_bytes > limit:
            return self._reject(conn, command, error(
                f"ERR transaction too large ({tx.queued_bytes} bytes queued; "
                f"--max-transaction-size is {limit})"), args)
        assert tx.queued is not None  # (queueing: inside MULTI)
        tx.queued.append((command, args))
        tx.writes += command.write
        return QUEUED

    def _reject(self, conn: Connection, command: Command | None, reply: bytes,
                args: list[bytes]) -> bytes:
        """A request refused by the gate. Inside MULTI it also dooms the transaction, as
        Redis's rejectCommand does; a refused EXEC answers for the whole transaction.
        Counted as an error reply, and as a rejected call of its command if it has one."""
        tx = conn.tx
        stats = self.ctx.stats
        if command is not None:
            stats.command(command.resolve(args).name).rejected += 1
        if command is not None and command.name == "exec":  # even outside MULTI, as Redis
            tx.discard(self.ctx.keyspace.watches)
            reason = reply[1:-2]  # Redis's reason has an error code only if not ERR
            reply = error(b"EXECABORT Transaction discarded because of: "
                          + (reason[4:] if reason.startswith(b"ERR ") else reason))
        elif tx.queued is not None:
            tx.aborted = True
        stats.error(reply)
        return reply
