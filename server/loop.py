"""The server's life: start-up, the loop's passes, signals, the graceful drain.

`start(config)` does everything up to "ready" and returns the Server, every part of it
constructed (in Server.__init__) and none optional. One pass of `serve`:

1. wait for what is ready (eventloop.py), until the nearest timer at most;
2. run the requests the output cap kept back of clients that have read since, then
   act on what is ready: each connection is read once and what it sent runs through
   the gate (network.py, dispatch.py); replies are collected, not sent;
3. group commit (commit.py): one flush for all writes of the pass -- *before* any
   reply of the pass is sent; then the replies;
4. act on the signals read from the signal pipe, run the timers that are due (active
   expiry, the drain timeout, ...), advance a compaction.

Graceful drain (SIGTERM/SIGINT/SHUTDOWN): close the listeners, answer what was
already read, refuse what comes later with `-ERR server is shutting down`, close each
connection once its replies are sent, close whatever is left at the drain timeout,
then flush, fsync, remove the PID file and exit 0. A second TERM/INT cuts the wait
short.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterable

from storage import StorageError, Store, open_store

from . import logs
from .commit import GroupCommit
from .compactor import AutoPolicy, Compactor
from .config import Config
from .connection import Connection
from .context import REDIS_VERSION, Auth, Context
from .control import ServerControl
from .databases import Databases
from .dispatch import Dispatcher
from .errors import StartupError
from .eventloop import READ, EventLoop
from .expiry import ActiveExpiry
from .functions import Functions
from .latency import LatencyMonitor
from .listeners import Listener, listen_tcp, listen_unix
from .monitor import Monitors
from .network import Network
from .notify import KeyspaceEvents, parse_classes
from .pause import ClientPause
from .pidfile import PidFile, PidFileError
from .scripting import ScriptAbandoned, Scripts
from .sdnotify import Notifier
from .signals import SignalPipe
from .slowlog import SlowLog
from .stats import Stats
from .watchdog import PassTimes, Watchdog

log = logging.getLogger("kvd.server")

GATHER_ROUNDS = 4
STATUS_PERIOD_S = 2.0  # how often systemd's STATUS= line is brought up to date
IDLE_CHECK_PERIOD_S = 1.0  # how often clients are checked against the `timeout` setting


def start(config: Config) -> Server:
    """Everything up to "ready": the signal pipe, the PID file, the listeners, the store,
    then the server over them.

    The sockets are bound before the store is opened, so that a port in use fails the
    start before anything is created; connections that arrive during a long load wait
    in the backlog until the loop accepts them, and a TERM during it waits in the
    signal pipe. Raises StartupError with a message for the user; whatever was set up
    is undone, including a data directory this start created.
    """
    data_dir_was_there = os.path.lexists(config.data_dir)
    loop = EventLoop()
    signal_pipe = SignalPipe()
    pidfile: PidFile | None = None
    listeners: list[Listener] = []
    store: Store | None = None
    try:
        signal_pipe.install()  # a TERM during a long load is acted on, not fatal
        try:
            pidfile = PidFile.acquire(config.pidfile)
        except PidFileError as exc:
            raise StartupError(str(exc)) from None
        if pidfile.replaced_stale:
            log.warning("replaced a stale PID file %s (it named PID %d, which no longer held "
                        "it)%s", config.pidfile, pidfile.replaced_stale,
                        f"; that daemon's shutdown failed: {pidfile.stale_failure}"
                        if pidfile.stale_failure else "")
        if config.socket:
            listeners.append(listen_unix(config.socket, config.socket_mode))
        if config.port:
            listeners.append(listen_tcp(config.bind, config.port))
        store = _open_store(config)
        server = Server(config, loop, signal_pipe, pidfile, listeners, store)
    except BaseException:
        for listener in listeners:
            listener.close()
        if store is not None:
            _close_store(store)
        if pidfile is not None:
            pidfile.release()
        signal_pipe.close()
        loop.close()
        if not data_dir_was_there and os.path.isdir(config.data_dir):
            log.info("removing %s, created by this failed start", config.data_dir)
            shutil.rmtree(config.data_dir, ignore_errors=True)
        raise
    log.info("ready: PID %d, socket %s, TCP %s", os.getpid(), config.socket or "off",
             f"{config.bind}:{server.tcp_port}" if server.tcp_port else "off")
    server.notify_ready()
    return server


def _open_store(config: Config) -> Store:
    log.info("opening %s (engine %s, fsync %s)", config.data_dir,
             config.engine or "as the directory says", config.fsync)
    started = time.monotonic()
    try:
        store = open_store(config.data_dir, engine=config.engine, fsync=config.fsync,
                           segment_size=config.segment_size)
    except StorageError as exc:  # its message names the directory or file
        raise StartupError(f"cannot open the data: {exc}") from None
    except OSError as exc:
        raise StartupError(f"cannot open the data directory {config.data_dir}: {exc}") from None
    config.engine = store.engine  # what it is, when the directory chose
    log.info("loaded %d keys in %.2f s", len(store), time.monotonic() - started)
    return store


def _close_store(store: Store) -> str:
    """Flush, fsync and close the store; why that failed (logged), or ''."""
    try:
        store.close()
    except (StorageError, OSError) as exc:
        failure = f"closing the store failed: {exc}"
        log.error("%s", failure)
        return failure
    return ""


class Server:
    """A started server (see `start`): its parts, the passes of its loop, its signals and
    its drain. `control` is what commands may ask of it (control.py)."""

    def __init__(self, config: Config, loop: EventLoop, signal_pipe: SignalPipe,
                 pidfile: PidFile, listeners: list[Listener], store: Store) -> None:
        self.config = config
        self.loop = loop
        self.signal_pipe = signal_pipe
        self.pidfile = pidfile
        self.store = store
        self.stats = Stats()
        self.auth = Auth(config.requirepass)
        self.signals: set[int] = set()
        self.shutdown_requests: list[str] = []
        self.draining = False
        self.finished = False
        self._released = False
        self.exit_code = 0
        self.started_monotonic = time.monotonic()
        self.tcp_port = next((listener.port for listener in listeners if listener.kind == "tcp"), 0)
        self.watchdog = Watchdog(config.watchdog_period)
        self.pass_times = PassTimes(config.watchdog_period)
        self.notifier = Notifier.from_environment()  # systemd's, when it started kvd
        self.latency = LatencyMonitor(config.latency_monitor_threshold)
        self.commit = GroupCommit(store, self.stats, self.latency)
        self.databases = Databases(store, self.stats, config.max_key_size,
                                   config.max_value_size, config.databases,
                                   KeyspaceEvents(parse_classes(config.notify_keyspace_events)
                                                  or 0))
        self.keyspace = self.databases[0]
        hidden = [db for db in range(config.databases, store.databases()) if store.count(db)]
        if hidden:
            log.warning("databases %s hold keys that --databases %d hides from clients (they "
                        "are kept; start with --databases %d to reach them)",
                        ", ".join(map(str, hidden)), config.databases, hidden[-1] + 1)
        self.expiry = ActiveExpiry(self.databases, self.stats, self.latency, self.commit,
                                   loop.timers)
        self.scripts = Scripts(config, REDIS_VERSION)
        self.monitors = Monitors(config.socket)
        self.slowlog = SlowLog(config.slowlog_log_slower_than, config.slowlog_max_len)
        self.control = ServerControl(self)
        self.functions = Functions(self.scripts, store)  # (the libraries kept on disk)
        self.pause = ClientPause(loop.timers, self.databases, self._resume_held,
                                 self.functions.may_write)
        self.dispatcher = Dispatcher(Context(self.keyspace, self.stats, config, self.control,
                                             self.auth, self.scripts, self.monitors,
                                             self.slowlog, self.latency, self.pause,
                                             self.databases, self.functions),
                                     self.commit)
        self.databases.events.publish = self.dispatcher.ctx.pubsub.publish
        self.network = Network(config, loop, self.stats, self.auth, listeners,
                               self.dispatcher.run, self.commit, self.monitors,
                               self.databases.watches, self.databases.blocking,
                               self.dispatcher.ctx.pubsub)
        policy = AutoPolicy(config.auto_compact, config.auto_compact_ratio,
                            config.auto_compact_min_size)
        self.compaction = Compactor(store, policy, self._watch, loop.unwatch,
                                    rate_limit=config.compaction_rate * 1e6,
                                    on_fork=lambda ns: self.latency.add_if_needed("fork", ns))
        loop.watch(signal_pipe, READ, self._on_signals)
        self.network.fit_clients_to_descriptors(store.stats().descriptors)
        self.network.resume_accepting()
        self.schedule_idle_check(time.monotonic())

    def schedule_idle_check(self, now: float) -> None:
        """With a client `timeout`, look for idle clients every second (Redis's clientsCron
        does it ten times a second over a tenth of them)."""
        if self.config.client_timeout:
            self.loop.timers.set("idle-clients", now + IDLE_CHECK_PERIOD_S, self._idle_check)
        else:
            self.loop.timers.cancel("idle-clients")

    def _idle_check(self, now: float) -> None:
        self.network.close_idle(now, self.config.client_timeout)
        self.schedule_idle_check(now)

    def _resume_held(self, held: Iterable[Connection]) -> None:
        self.network.resume(held)

    def _watch(self, fd: int, callback: Callable[[], None]) -> None:
        """A descriptor the compactor reads (its child's progress): not while a script is
        busy, when only the clients are served."""
        network = self.network
        self.loop.watch(fd, READ, lambda ready: None if network.busy_skip is not None
                        else callback())

    def _on_signals(self, ready: int) -> None:
        self.signals |= self.signal_pipe.read()

    def notify_ready(self) -> None:
        """Tell systemd (when it started kvd) that kvd serves, then how it does."""
        if self.notifier.address is not None:
            self.notifier.ready(self._status_line())
            self.loop.timers.set("sd-status", time.monotonic() + STATUS_PERIOD_S,
                                 self._report_status)

    def _status_line(self) -> str:
        """What `systemctl status` shows under the unit (sd_notify's STATUS=)."""
        compacting = self.compaction.info()["compaction_in_progress"]
        return (f"serving {len(self.store)} keys, {len(self.network.clients)} clients; "
                f"compaction {'running' if compacting else 'idle'}")

    def _report_status(self, now: float) -> None:
        if not self.draining:
            self.notifier.status(self._status_line())
            self.loop.timers.set("sd-status", now + STATUS_PERIOD_S, self._report_status)

    # -- the loop -----------------------------------------------------------------------

    def serve(self) -> int:
        """Run until a drain completes; return the exit status."""
        wait, network = self.loop.wait, self.network
        watchdog, pass_times, clock = self.watchdog, self.pass_times, time.monotonic
        watchdog.start()
        try:
            while not self.finished:
                events = wait(0.0 if network.ready else self._timeout())
                began = watchdog.began = network.now = clock()
                if network.ready:
                    network.run_deferred()
                for callback, ready in events:
                    callback(ready)
                if self.commit.dirty and len(network.clients) > 1:
                    # Gather: requests that arrived while this pass ran join its group
                    # commit instead of paying for an fsync of their own next pass. (A
                    # lone client has nothing more to send before its reply: no gather.)
                    for _ in range(GATHER_ROUNDS):
                        more = wait(0)
                        if not more:
                            break
                        for callback, ready in more:
                            callback(ready)
                if network.touched or self.monitors.fed:
                    network.commit_and_reply()
                if self.signals:
                    self._handle_signals()
                self._after_pass(clock())
                watchdog.began = 0.0
                pass_times.record(began, clock())
        except ScriptAbandoned as stopped:
            self._exit_without_script(str(stopped))
        watchdog.stop()
        return self.exit_code

    def _timeout(self) -> float | None:
        if self.compaction.wants_ticks():
            return 0.0  # a sliced compaction advances once per pass
        return self.loop.until_next_timer()

    def _after_pass(self, now: float) -> None:
        self.stats.sample(now)  # for INFO's instantaneous_ops_per_sec, as Redis samples
        while self.shutdown_requests:
            self._shutdown(self.shutdown_requests.pop(0))
        timers = self.loop.timers
        timers.run_due(now)
        if not self.draining:
            self.expiry.schedule(now)
            self.compaction.tick()
            policy = self.compaction.policy
            if policy.enabled and "auto-compaction" not in timers:
                # Wake the idle loop for the policy's next check, which the tick at the
                # end of that pass makes.
                timers.set("auto-compaction", policy.next_check, _nothing)
        elif not self.network.clients:
            self._finish()

    # -- signals and the work they ask for --------------------------------------------

    def _handle_signals(self) -> None:
        seen, self.signals = self.signals, set()
        self.stats.signals_received += len(seen)
        log.debug("signals: %s", sorted(seen))
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum in seen:
                self.control.request_shutdown(signal.Signals(signum).name)
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
            self.control.request_compaction("SIGUSR1")

    def _exit_without_script(self, sha: str) -> None:
        """A script that had written was stopped (SHUTDOWN NOSAVE, SIGTERM): its writes were
        dropped before reaching the disk, and the keys in memory hold half of it, so
        nothing more is served; close what was acknowledged and exit."""
        log.warning("exiting at once: the stopped script %s had written; on disk it never ran",
                    sha)
        self.pidfile.mark_shutting_down()
        for conn in list(self.network.clients.values()):
            conn.replies.clear()
            self.network.close(conn)
        self.compaction.stop()
        self._finish()

    # -- the drain ----------------------------------------------------------------------

    def _shutdown(self, reason: str) -> None:
        self.pidfile.mark_shutting_down()
        if not self.draining:
            self._begin_drain(reason)
            return
        log.info("%s during the drain: closing %d remaining connection(s) now", reason,
                 len(self.network.clients))
        self._drain_timed_out(time.monotonic())

    def _begin_drain(self, reason: str) -> None:
        self.draining = True
        timers, clients = self.loop.timers, self.network.clients
        timers.cancel("auto-compaction")
        timers.cancel("sd-status")
        timers.set("drain", time.monotonic() + self.config.drain_timeout,
                   self._drain_timed_out)
        log.info("%s: shutting down: no new connections; answering %d connected client(s) "
                 "(drain timeout %.1f s)", reason, len(clients), self.config.drain_timeout)
        self.notifier.stopping(f"shutting down ({reason}): answering {len(clients)} client(s)")
        self.network.close_listeners()
        self.compaction.stop()
        if self.pause.mode:  # what it held was read before the drain: it runs now
            self.pause.unpause()
        self.network.begin_drain()

    def _drain_timed_out(self, now: float) -> None:
        self.loop.timers.cancel("drain")
        if self.network.clients:
            log.info("drain: closing %d connection(s) that did not finish in time",
                     len(self.network.clients))
            self.network.close_all()

    def _finish(self) -> None:
        log.info("drain: all connections closed; flushing and closing the store")
        failure = _close_store(self.store)
        if failure:
            self.exit_code = 1
        self._release_resources(failure)
        log.info("shutdown complete (exit %d)", self.exit_code)
        self.finished = True

    def abort(self, why: str) -> None:
        """After a crash of the loop: close the store (flushing it), the PID file (left
        stale with `why`), the sockets."""
        self._release_resources(f"crashed: {why}")

    def _release_resources(self, failure: str = "") -> None:
        """Undo start(): everything, once. A `failure` is left in the PID file."""
        if self._released:
            return
        self._released = True
        self.watchdog.stop()
        self.network.close_listeners()
        self.network.close_all()
        closing = _close_store(self.store)
        self.pidfile.release(failure or closing)
        self.loop.unwatch(self.signal_pipe)
        self.signal_pipe.close(exiting=True)
        self.loop.close()


def _nothing(now: float) -> None:
    """A timer that only wakes the loop (its pass does the work)."""
