"""The select loop: listening sockets, client connections and the signal pipe, one thread.

One pass of the loop:

1. `select` on everything registered, until the nearest timer at most;
2. read from each readable connection once, parse, and hand every complete
   request to the gate (dispatch.py), which runs its command; replies are
   collected, not sent;
3. group commit (commit.py): one flush for all writes of the pass -- *before*
   any reply of the pass is sent;
4. send the replies (one `send` per connection; what the kernel does not
   take waits, and a client owed too much is no longer read: backpressure);
5. act on the signals read from the signal pipe, run the timers that are
   due, advance a compaction.

Graceful drain (SIGTERM/SIGINT/SHUTDOWN): close the listeners, answer what
was already read, refuse what comes later with `-ERR server is shutting
down`, close each connection once its replies are sent, close whatever is
left at the drain timeout, then flush, fsync, remove the PID file and exit 0.
A second TERM/INT cuts the wait short.

The loop implements `Control` (context.py), the narrow handle commands get.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import selectors
import shutil
import signal
import socket
import time
from typing import Collection

from storage import StorageError, open_store

from . import logs
from .commit import GroupCommit
from .compactor import AutoPolicy, Compactor
from .config import SETTINGS, Config, is_loopback
from .settings import Text
from .connection import Connection
from .context import REDIS_VERSION, Auth, Context
from .dispatch import OUT_OF_MEMORY, Dispatcher
from .errors import StartupError
from .keyspace import Keyspace
from .latency import LatencyMonitor
from .monitor import Monitors
from .slowlog import SlowLog
from .listeners import Listener, listen_tcp, listen_unix
from .pidfile import PidFile, PidFileError
from .protocol import ProtocolError, RequestParser
from .scripting import ScriptAbandoned, Scripts
from .sdnotify import Notifier
from .signals import SignalPipe
from .stats import Stats
from .timers import Timers
from .watchdog import PassTimes, Watchdog

log = logging.getLogger("kvd.server")

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# Below malloc's mmap threshold: recv() allocates its whole buffer first, and
# a larger one costs an mmap and a munmap on every call.
RECV_SIZE = 64 * 1024
MAX_CLIENTS = b"-ERR max number of clients reached\r\n"
ACCEPT_PAUSE_S = 0.1
# Active expiry: a cycle at most every EXPIRE_PERIOD_S while keys are due, each dropping
# due keys for at most EXPIRE_BUDGET_S; one that runs out of time comes back on the next
# pass, after the clients have been served. A short budget is what keeps latency low
# during an expiry storm (25 ms, Redis's slow cycle, measured a 35 ms p99 for GETs while
# a million keys expired at once; 2 ms: see ./run bench --only expiry).
EXPIRE_PERIOD_S, EXPIRE_BUDGET_S = 0.1, 0.002
FD_RESERVE = 64  # descriptors kept for the store, the log, pipes and a compaction
GATHER_ROUNDS = 4
STATUS_PERIOD_S = 2.0  # how often systemd's STATUS= line is brought up to date


class _SignalSource:
    """Marks the signal pipe's key in the selector."""


class _Watch:
    """Another descriptor the loop watches for reading (a compaction child's progress pipe)."""

    __slots__ = ("callback",)

    def __init__(self, callback) -> None:
        self.callback = callback


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.clients: dict[int, Connection] = {}
        self.store = None
        self.compaction: Compactor | None = None
        self.commit: GroupCommit | None = None
        self.keyspace: Keyspace | None = None
        self.dispatcher: Dispatcher | None = None
        self.scripts: Scripts | None = None
        self.monitors: Monitors | None = None
        self.slowlog: SlowLog | None = None
        self.latency: LatencyMonitor | None = None
        self.tcp_port: int | None = None
        self.max_clients = config.max_clients  # lowered at start-up if descriptors are short
        self.started_monotonic = time.monotonic()
        self.draining = False
        self.finished = False
        self.exit_code = 0
        self.watchdog = Watchdog(config.watchdog_period)
        self.pass_times = PassTimes(config.watchdog_period)
        self.timers = Timers()
        self._auth = Auth(config.requirepass)
        self.notifier = Notifier.from_environment()  # systemd's, when it started kvd
        self._selector = selectors.DefaultSelector()
        self._signal_pipe: SignalPipe | None = None
        self._signal_source = _SignalSource()
        self._signals: set[int] = set()
        self._listeners: list[Listener] = []
        self._accepting = False
        self._pidfile: PidFile | None = None
        self._touched: set[Connection] = set()
        # Connections whose deferred requests (the output cap) can run: their client has
        # read what it was owed. The next pass runs them first.
        self._ready: set[Connection] = set()
        self._shutdown_requests: list[str] = []
        self._last_expire = 0.0
        self._expire_hurry = False
        # What CONFIG SET redoes, by the `apply` of the settings it changed (settings.py).
        self._reapply = {"clients": self._reapply_clients, "auth": self._reapply_auth,
                         "compaction": self._reapply_compaction, "slowlog": self._reapply_slowlog,
                         "latency": self._reapply_latency, "log": self._reapply_log}
        # Bulks up to the request limit are read, so that an oversized key or value gets
        # its own clear error from the command rather than a protocol error.
        self._max_bulk = config.max_request_size

    # -- start-up -------------------------------------------------------------------

    def start(self) -> None:
        """Everything up to "ready": signals, PID file, listeners, store.

        The sockets are bound before the store is opened, so that a port in use fails
        the start before anything is created; connections that arrive during a long
        load wait in the backlog until the loop accepts them. Raises StartupError with
        a message for the user; whatever was set up is undone, including a data
        directory this start created.
        """
        data_dir_was_there = os.path.lexists(self.config.data_dir)
        try:
            self._signal_pipe = SignalPipe()
            self._signal_pipe.install()  # a TERM during a long load is acted on, not fatal
            self._selector.register(self._signal_pipe, READ, self._signal_source)
            try:
                self._pidfile = PidFile.acquire(self.config.pidfile)
            except PidFileError as exc:
                raise StartupError(str(exc)) from None
            if self._pidfile.replaced_stale:
                log.warning("replaced a stale PID file %s (it named PID %d, which no longer "
                            "held it)", self.config.pidfile, self._pidfile.replaced_stale)
            if self.config.socket:
                self._listeners.append(listen_unix(self.config.socket, self.config.socket_mode))
            if self.config.port:
                listener = listen_tcp(self.config.bind, self.config.port)
                self.tcp_port = listener.port
                self._listeners.append(listener)
            self._open_store()
            self._fit_clients_to_descriptors()
            self._resume_accepting()
        except BaseException:
            self._release_resources()
            if not data_dir_was_there and os.path.isdir(self.config.data_dir):
                log.info("removing %s, created by this failed start", self.config.data_dir)
                shutil.rmtree(self.config.data_dir, ignore_errors=True)
            raise
        log.info("ready: PID %d, socket %s, TCP %s", os.getpid(), self.config.socket or "off",
                 f"{self.config.bind}:{self.tcp_port}" if self.tcp_port else "off")
        if self.notifier.address is not None:
            self.notifier.ready(self._status_line())
            self.timers.set("sd-status", time.monotonic() + STATUS_PERIOD_S, self._report_status)

    def _status_line(self) -> str:
        """What `systemctl status` shows under the unit (sd_notify's STATUS=)."""
        compacting = self.compaction.info()["compaction_in_progress"]
        return (f"serving {len(self.store)} keys, {len(self.clients)} clients; compaction "
                f"{'running' if compacting else 'idle'}")

    def _report_status(self, now: float) -> None:
        if not self.draining:
            self.notifier.status(self._status_line())
            self.timers.set("sd-status", now + STATUS_PERIOD_S, self._report_status)

    def _fit_clients_to_descriptors(self) -> None:
        """Like Redis: raise the descriptor limit as far as allowed, and if it is still
        too low for --max-clients, serve fewer clients rather than fail at accept().
        A client over the limit is then refused with an error instead of left
        hanging in the kernel's backlog."""
        reserve = FD_RESERVE + self.store.stats().get("segments", 1)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.config.max_clients + reserve
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
        if soft != resource.RLIM_INFINITY and soft - reserve < self.config.max_clients:
            self.max_clients = max(1, soft - reserve)
            log.warning("only %d file descriptors are allowed (ulimit -n): serving at most %d "
                        "clients instead of --max-clients %d", soft, self.max_clients,
                        self.config.max_clients)

    def _open_store(self) -> None:
        c = self.config
        log.info("opening %s (engine %s, fsync %s)", c.data_dir,
                 c.engine or "as the directory says", c.fsync)
        started = time.monotonic()
        try:
            self.store = open_store(c.data_dir, engine=c.engine, fsync=c.fsync,
                                    segment_size=c.segment_size)
        except StorageError as exc:  # its message names the directory or file
            raise StartupError(f"cannot open the data: {exc}") from None
        except OSError as exc:
            raise StartupError(f"cannot open the data directory {c.data_dir}: {exc}") from None
        c.engine = self.store.engine  # what it is, when the directory chose
        policy = AutoPolicy(c.auto_compact, c.auto_compact_ratio, c.auto_compact_min_size)
        self.compaction = Compactor(self.store, policy, self._watch, self._unwatch,
                                    rate_limit=c.compaction_rate * 1e6,
                                    on_fork=lambda ns: self.latency.add_if_needed("fork", ns))
        self.latency = LatencyMonitor(c.latency_monitor_threshold)
        self.commit = GroupCommit(self.store, self.stats, self.latency)
        self.keyspace = Keyspace(self.store, self.stats, c.max_key_size, c.max_value_size)
        self.scripts = Scripts(c, REDIS_VERSION)
        self.monitors = Monitors(c.socket, lambda conn: self._touched.add(conn))
        self.slowlog = SlowLog(c.slowlog_log_slower_than, c.slowlog_max_len)
        self.dispatcher = Dispatcher(Context(self.keyspace, self.stats, c, self, self._auth,
                                             self.scripts, self.monitors, self.slowlog,
                                             self.latency), self.commit)
        log.info("loaded %d keys in %.2f s", len(self.store), time.monotonic() - started)

    # -- the loop -----------------------------------------------------------------------

    def serve(self) -> int:
        """Run until a drain completes; return the exit status."""
        select = self._selector.select
        watchdog, pass_times, clock = self.watchdog, self.pass_times, time.monotonic
        watchdog.start()
        try:
            while not self.finished:
                events = select(0.0 if self._ready else self._timeout())
                began = watchdog.began = clock()
                if self._ready:
                    self._run_deferred()
                self._dispatch(events)
                if self.commit.dirty and len(self.clients) > 1:
                    # Gather: requests that arrived while this pass ran join its group
                    # commit instead of paying for an fsync of their own next pass. (A
                    # lone client has nothing more to send before its reply: no gather.)
                    for _ in range(GATHER_ROUNDS):
                        ready = select(0)
                        if not ready:
                            break
                        self._dispatch(ready)
                if self._touched:
                    self._commit_and_reply()
                if self._signals:
                    self._handle_signals()
                self._after_pass(clock())
                watchdog.began = 0.0
                pass_times.record(began, clock())
        except ScriptAbandoned as stopped:
            self._exit_without_script(str(stopped))
        watchdog.stop()
        return self.exit_code

    def _dispatch(self, events: list, busy_skip: set | None = None) -> None:
        """Act on what select() reported. `busy_skip`: a script is busy (serve_while_busy)
        and these connections are left alone; the others go through the busy gate, and
        a compaction's progress waits."""
        clients = self.clients
        for key, mask in events:
            source = key.data
            if type(source) is Connection:
                if clients.get(source.fd) is not source:
                    continue  # closed earlier in this pass
                if busy_skip is not None and source in busy_skip:
                    continue
                if mask & READ:
                    self._on_readable(source, busy_skip is not None)
                if mask & WRITE and clients.get(source.fd) is source:
                    self._send(source)
            elif source is self._signal_source:
                self._signals |= self._signal_pipe.read()
            elif type(source) is _Watch:
                if busy_skip is None:
                    source.callback()
            else:
                self._accept(source)

    def _watch(self, fd: int, callback) -> None:
        self._selector.register(fd, READ, _Watch(callback))

    def _unwatch(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _timeout(self) -> float | None:
        if self.compaction.wants_ticks():
            return 0.0  # a sliced compaction advances once per pass
        return self.timers.timeout(time.monotonic())

    def _after_pass(self, now: float) -> None:
        self.stats.sample(now)  # for INFO's instantaneous_ops_per_sec, as Redis samples
        while self._shutdown_requests:
            self._shutdown(self._shutdown_requests.pop(0))
        self.timers.run_due(now)
        if not self.draining:
            self._schedule_expiry(now)
            self.compaction.tick()
            policy = self.compaction.policy
            if policy.enabled and "auto-compaction" not in self.timers:
                # Wake the idle loop for the policy's next check, which the tick at the
                # end of that pass makes.
                self.timers.set("auto-compaction", policy.next_check, _nothing)
        elif not self.clients:
            self._finish()

    def _schedule_expiry(self, now: float) -> None:
        """Arm the active-expiry timer for the earliest deadline, no sooner than a period
        after the last cycle; a cycle that ran out of time comes back next pass."""
        next_ms = self.keyspace.next_deadline()
        if not next_ms:
            self.timers.cancel("expire")
            return
        if self._expire_hurry:
            at = now
        else:
            wait = (next_ms - time.time_ns() // 1_000_000) / 1000
            at = max(now + wait, self._last_expire + EXPIRE_PERIOD_S)
        armed = self.timers.deadline("expire")
        if armed is None or at < armed:
            self.timers.set("expire", at, self._expire)

    def _expire(self, now: float) -> None:
        self._last_expire = now
        before = self.stats.expired_keys
        started = time.perf_counter_ns()
        self._expire_hurry = self.keyspace.expire_cycle(EXPIRE_BUDGET_S)
        self.latency.add_if_needed("expire-cycle", time.perf_counter_ns() - started)
        if self.stats.expired_keys != before:
            self.commit.dirty = True  # the sqlite engine deletes their rows

    # -- accepting ----------------------------------------------------------------------

    def _accept(self, listener: Listener) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept connections: %s; pausing accepts for %.1f s",
                                exc.strerror, ACCEPT_PAUSE_S)
                    self._pause_accepting()
                    return
                raise
            self.stats.connections_received += 1
            if len(self.clients) >= self.max_clients:
                self.stats.rejected_connections += 1
                try:
                    sock.send(MAX_CLIENTS)
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            if listener.kind == "tcp":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                where = f"{addr[0]}:{addr[1]}"
            else:
                where = f"{listener.path}:0"
            conn = Connection(
                sock, where, listener.kind,
                RequestParser(self._max_bulk, self.config.max_request_size,
                              unauthenticated=self._auth.required),
            )
            self.clients[conn.fd] = conn
            self._selector.register(sock, READ, conn)

    def _pause_accepting(self) -> None:
        self._stop_accepting()
        self.timers.set("accept", time.monotonic() + ACCEPT_PAUSE_S,
                        lambda now: self._resume_accepting())

    def _stop_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            for listener in self._listeners:
                self._selector.unregister(listener.sock)

    def _resume_accepting(self) -> None:
        if not self._accepting:
            self._accepting = True
            for listener in self._listeners:
                self._selector.register(listener.sock, READ, listener)

    # -- reading and running ------------------------------------------------------------

    def _on_readable(self, conn: Connection, busy: bool = False) -> None:
        if conn.deferred:
            return  # what was read already runs first (this pass or the next)
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # EOF: close once the replies already owed are sent (half-close)
            conn.closing = True
            if conn.replies:
                return  # this pass's replies: sent when it commits, then _send closes
            if conn.out:
                self._set_events(conn, reading=False)
            else:
                self._close(conn)
            return
        self.stats.net_input_bytes += len(data)
        if conn.closing:
            return  # said goodbye already: discard until EOF
        self._touched.add(conn)
        self._serve_input(conn, data, busy)

    def _serve_input(self, conn: Connection, data: bytes, busy: bool = False) -> None:
        """Parse what was read and run the requests; those the output cap keeps back wait
        in `conn.deferred` (and nothing more is read until they have run)."""
        parser = conn.parser
        run = self.dispatcher.run
        while True:
            try:
                requests = parser.feed(data)
            except ProtocolError as exc:
                rest = run(conn, exc.requests, busy)
                while rest and not conn.closing:  # the error comes after them all: no cap
                    rest = run(conn, rest, busy)
                if conn.closing:
                    return  # a QUIT came first: Redis reads no further, so neither do we
                self.stats.protocol_errors += 1
                log.info("%s: protocol error: %s", conn.describe(), exc)
                conn.replies.append(exc.reply)
                conn.closing = True  # closed by _send once the error reply is out
                return
            if requests:
                conn.deferred = run(conn, requests, busy)
                if conn.deferred:
                    return
            if not parser.held_back or conn.closing:
                return
            data = b""  # before AUTH: one request at a time (see RequestParser)

    def _run_deferred(self) -> None:
        """Run the requests the output cap kept back, of the clients that have read."""
        ready, self._ready = self._ready, set()
        for conn in ready:
            if self.clients.get(conn.fd) is not conn or not conn.deferred:
                continue
            self._touched.add(conn)
            requests, conn.deferred = conn.deferred, []
            conn.deferred = self.dispatcher.run(conn, requests, admitted=True)
            if not conn.deferred and conn.parser.held_back and not conn.closing:
                self._serve_input(conn, b"")

    # -- replying -----------------------------------------------------------------------

    def _commit_and_reply(self) -> None:
        """Group commit for the pass, then send every reply of the pass."""
        touched, self._touched = self._touched, set()  # _send may close (and discard) any
        self.commit.commit(touched)
        self._reply_to(touched)

    def _reply_to(self, touched: set[Connection]) -> None:
        """Send the pass's replies of these connections (after their commit)."""
        clients = self.clients
        for conn in touched:
            if conn.write_slots:
                conn.write_slots.clear()
            if clients.get(conn.fd) is not conn:
                conn.replies.clear()
                continue
            replies = conn.replies
            if not replies:
                self._send(conn)
                continue
            try:
                data = replies[0] if len(replies) == 1 else b"".join(replies)
            except MemoryError:
                self._out_of_memory(conn)
                continue
            replies.clear()
            if conn.out or conn.writing or conn.closing or conn.draining:
                conn.out += data
                self._send(conn)
            else:
                self._send_replies(conn, data)
            if conn.deferred and not conn.out and clients.get(conn.fd) is conn:
                self._ready.add(conn)  # it took everything: what was kept back runs next

    def _out_of_memory(self, conn: Connection) -> None:
        """The replies of one client could not be put together: that client is told and
        closed; everyone else goes on."""
        log.error("%s: out of memory joining %d replies; closing the connection",
                  conn.describe(), len(conn.replies))
        conn.replies.clear()
        conn.deferred = []
        conn.out = bytearray(OUT_OF_MEMORY)
        conn.closing = True
        self._send(conn)

    def _send_replies(self, conn: Connection, data: bytes) -> None:
        """The common case of `_send`: nothing was queued before and the connection
        stays as it is, so the replies go straight to the kernel -- no copy into
        `conn.out` -- and only what it did not take is queued."""
        sent = self._send_once(conn, data)
        if sent is not None and sent < len(data):
            conn.out += memoryview(data)[sent:]
            self._send(conn)  # watches for writability, stops reading if too much is owed

    def _send_once(self, conn: Connection, data: bytes | bytearray) -> int | None:
        """One send(): the bytes the kernel took, or None if the connection failed
        (it is closed then)."""
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._close(conn)
            return None
        self.stats.net_output_bytes += sent
        return sent

    def _send(self, conn: Connection) -> None:
        out = conn.out
        if out:
            sent = self._send_once(conn, out)
            if sent is None:
                return
            del out[:sent]
        if out:
            over = len(out) > self.config.max_output_buffer
            if over and conn in self.monitors.clients:
                # Other clients' commands keep coming: a monitor that does not keep up is
                # dropped (as Redis's output buffer limits drop it), never a memory leak.
                log.warning("%s: MONITOR client dropped: %d bytes unread (--max-output-buffer)",
                            conn.describe(), len(out))
                self._close(conn)
                return
            # Backpressure: stop reading from a client that does not read its replies.
            reading = conn.reading and not over
            self._set_events(conn, reading=reading, writing=True)
            return
        if conn.closing:
            self._close(conn)
            return
        if conn.draining and self._close_if_idle(conn):
            return
        self._set_events(conn, reading=not conn.closing, writing=False)
        if conn.deferred:
            self._ready.add(conn)  # the client has read all it was owed

    def _set_events(self, conn: Connection, reading: bool | None = None,
                    writing: bool | None = None) -> None:
        reading = conn.reading if reading is None else reading
        writing = conn.writing if writing is None else writing
        if reading == conn.reading and writing == conn.writing:
            return
        conn.reading, conn.writing = reading, writing
        events = (READ if reading else 0) | (WRITE if writing else 0)
        if events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._close(conn)

    def _close_if_idle(self, conn: Connection) -> bool:
        """Draining: close a connection that is owed nothing and has sent nothing more.

        Closing a socket with unread input makes TCP reset the connection,
        which can destroy replies still in flight; so a connection with input
        waiting is left for the loop to read (and refuse) first.
        """
        if (conn.out or conn.replies or conn.deferred or conn.parser.pending
                or conn.tx.queued is not None):
            return False  # (a client inside MULTI is owed the answer to its EXEC)
        try:
            waiting = conn.sock.recv(1, socket.MSG_PEEK)
        except OSError:  # including BlockingIOError: nothing waiting
            waiting = b""
        if waiting:
            return False
        self._close(conn)
        return True

    def _close(self, conn: Connection) -> None:
        if self.clients.get(conn.fd) is not conn:
            return
        del self.clients[conn.fd]
        self._touched.discard(conn)
        self._ready.discard(conn)
        if self.monitors is not None:
            self.monitors.discard(conn)
        if self.keyspace is not None:
            self.keyspace.watches.unwatch_all(conn.tx)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    # -- signals and the work they ask for --------------------------------------------

    def _handle_signals(self) -> None:
        seen, self._signals = self._signals, set()
        self.stats.signals_received += len(seen)
        log.debug("signals: %s", sorted(seen))
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum in seen:
                self.request_shutdown(signal.Signals(signum).name)
                break
        if signal.SIGHUP in seen:
            self.notifier.reloading()
            if logs.reopen():
                log.info("SIGHUP: log file reopened")
            else:
                log.info("SIGHUP: logging to stderr, nothing to reopen")
            self.notifier.reloaded()
        if signal.SIGCHLD in seen:
            self.compaction.reap()
        if signal.SIGUSR1 in seen:
            self.request_compaction("SIGUSR1")

    # -- Control: what commands may ask of the server ------------------------------------

    def request_compaction(self, source: str) -> None:
        if self.draining:
            log.info("compaction request (%s) ignored: shutting down", source)
            return
        self.compaction.request(source)

    def request_shutdown(self, reason: str) -> None:
        """Begin the drain (or cut it short) at the end of this pass, after its replies."""
        self._shutdown_requests.append(reason)

    def serve_while_busy(self, caller: Connection) -> None:
        """One pass without waiting, from inside a script past the busy threshold
        (Redis's processEventsWhileBlocked): accept, read and answer the other clients
        through the busy gate, read the signals. The caller, and clients whose
        replies of the current pass still wait for its group commit, are left
        unread until the script ends; a compaction's progress waits too. Nothing
        written is answered here (no write runs while a script is busy), so the
        replies go out at once -- and so do the replies of the current pass that
        are waiting only for the script: if nothing was written before it in this
        pass, they answered reads of durable data."""
        outer, self._touched = self._touched, set()
        if not self.commit.dirty:
            for conn in [c for c in outer if c is not caller and not c.write_slots]:
                outer.discard(conn)
                self._touched.add(conn)
        try:
            self._dispatch(self._selector.select(0), busy_skip=outer | {caller})
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signum in self._signals:
                    self.scripts.stop(signal.Signals(signum).name)
            self._reply_to(self._touched)
        finally:
            self._touched = outer

    def _exit_without_script(self, sha: str) -> None:
        """A script that had written was stopped (SHUTDOWN NOSAVE, SIGTERM): its writes were
        dropped before reaching the disk, and the keys in memory hold half of it, so
        nothing more is served; close what was acknowledged and exit."""
        log.warning("exiting at once: the stopped script %s had written; on disk it never ran",
                    sha)
        if self._pidfile is not None:
            self._pidfile.mark_shutting_down()
        for conn in list(self.clients.values()):
            conn.replies.clear()
            self._close(conn)
        self.compaction.stop()
        self._finish()

    def connections(self) -> Collection[Connection]:
        return self.clients.values()

    def reconfigure(self, changes: dict[str, object]) -> str | None:
        """CONFIG SET: the new values into the one Config everything reads, then what the
        server derived from them redone, once per `apply` of the settings changed (a
        setting without one is read from the Config where it is used)."""
        config = self.config
        if ("requirepass" in changes and changes["requirepass"] is None and config.port
                and config.protected_mode and not is_loopback(config.bind)):
            return (f"protected mode: kvd listens on {config.bind} and would be left without "
                    "a password (restart it with --no-protected-mode to allow that)")
        rows = {row.field: row for row in SETTINGS}
        for field, value in changes.items():
            setattr(config, field, value)
            secret = isinstance(rows[field].kind, Text) and rows[field].kind.secret
            log.info("CONFIG SET %s = %s", field, "(redacted)" if secret else value)
        for apply in {rows[field].apply for field in changes} - {None}:
            self._reapply[apply]()
        return None

    def _reapply_clients(self) -> None:
        self.max_clients = self.config.max_clients
        self._fit_clients_to_descriptors()

    def _reapply_auth(self) -> None:
        password = self.config.requirepass
        self._auth.password = password.encode() if password is not None else None

    def _reapply_compaction(self) -> None:
        config, policy = self.config, self.compaction.policy
        policy.enabled, policy.ratio = config.auto_compact, config.auto_compact_ratio
        policy.min_bytes = config.auto_compact_min_size
        self.compaction.rate_limit = config.compaction_rate * 1e6

    def _reapply_slowlog(self) -> None:
        self.slowlog.slower_than_us = self.config.slowlog_log_slower_than
        self.slowlog.max_len = self.config.slowlog_max_len
        self.slowlog.trim()

    def _reapply_latency(self) -> None:
        self.latency.threshold_ms = self.config.latency_monitor_threshold

    def _reapply_log(self) -> None:
        logs.set_level(self.config.log_level)

    def figures(self) -> dict:
        return {
            "tcp_port": self.tcp_port or 0,
            "uptime_s": time.monotonic() - self.started_monotonic,
            "max_clients": self.max_clients,
            "write_error": self.commit.write_error,
            "compaction": self.compaction.info(),
            "compaction_running_s": self.compaction.running_for_s(),
            "longest_pass_ms": self.pass_times.longest_ms(),
            "slow_passes": self.pass_times.slow_passes,
            "watchdog_stack_dumps": self.watchdog.stack_dumps,
        }

    # -- the drain ----------------------------------------------------------------------

    def _shutdown(self, reason: str) -> None:
        if self._pidfile is not None:
            self._pidfile.mark_shutting_down()
        if not self.draining:
            self._begin_drain(reason)
            return
        log.info("%s during the drain: closing %d remaining connection(s) now", reason,
                 len(self.clients))
        self._drain_timed_out(time.monotonic())

    def _begin_drain(self, reason: str) -> None:
        self.draining = True
        self.timers.cancel("auto-compaction")
        self.timers.cancel("sd-status")
        self.timers.set("drain", time.monotonic() + self.config.drain_timeout,
                        self._drain_timed_out)
        log.info("%s: shutting down: no new connections; answering %d connected client(s) "
                 "(drain timeout %.1f s)", reason, len(self.clients), self.config.drain_timeout)
        self.notifier.stopping(f"shutting down ({reason}): answering {len(self.clients)} "
                               "client(s)")
        self._close_listeners()
        self.compaction.stop()
        for conn in list(self.clients.values()):
            conn.draining = True
            self._close_if_idle(conn)

    def _drain_timed_out(self, now: float) -> None:
        self.timers.cancel("drain")
        if self.clients:
            log.info("drain: closing %d connection(s) that did not finish in time",
                     len(self.clients))
            for conn in list(self.clients.values()):
                self._close(conn)

    def _close_listeners(self) -> None:
        self._stop_accepting()
        self.timers.cancel("accept")
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def _finish(self) -> None:
        log.info("drain: all connections closed; flushing and closing the store")
        try:
            self.store.close()
        except StorageError as exc:
            log.error("closing the store failed: %s", exc)
            self.exit_code = 1
        self._release_resources()
        log.info("shutdown complete (exit %d)", self.exit_code)
        self.finished = True

    def abort(self) -> None:
        """After a crash of the loop: close the store (flushing it), the PID file, the sockets."""
        self._release_resources()

    def _release_resources(self) -> None:
        """Undo start(): everything but the store's final flush (done by the caller)."""
        self.watchdog.stop()
        self._close_listeners()
        for conn in list(self.clients.values()):
            self._close(conn)
        if self.store is not None:
            try:
                self.store.close()
            except StorageError as exc:
                log.error("closing the store failed: %s", exc)
        if self._pidfile is not None:
            self._pidfile.release()
            self._pidfile = None
        if self._signal_pipe is not None:
            try:
                self._selector.unregister(self._signal_pipe)
            except (KeyError, ValueError):
                pass
            self._signal_pipe.close()
            self._signal_pipe = None
        self._selector.close()


def _nothing(now: float) -> None:
    """A timer that only wakes the loop (its pass does the work)."""
