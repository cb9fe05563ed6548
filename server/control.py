"""The server as commands see it: the `Control` handle of context.py, implemented over the
running server's parts -- shutdown and compaction requests, the clients, one pass while
a script is busy, CONFIG SET's changes, and the figures INFO reports."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Collection
from typing import Protocol

from storage import Store

from . import logs
from .commit import GroupCommit
from .compactor import Compactor
from .config import SETTINGS, Config, is_loopback
from .connection import Connection
from .context import Auth
from .databases import Databases
from .eventloop import EventLoop
from .latency import LatencyMonitor
from .network import Network
from .notify import parse_classes
from .scripting import Scripts
from .settings import Text
from .slowlog import SlowLog
from .watchdog import PassTimes, Watchdog

log = logging.getLogger("kvd.server")


class Running(Protocol):
    """What of the running server (loop.Server) its Control works over."""

    config: Config
    loop: EventLoop
    store: Store
    network: Network
    commit: GroupCommit
    compaction: Compactor
    scripts: Scripts
    databases: Databases
    auth: Auth
    slowlog: SlowLog
    latency: LatencyMonitor
    pass_times: PassTimes
    watchdog: Watchdog
    signals: set[int]
    shutdown_requests: list[str]
    draining: bool
    tcp_port: int
    started_monotonic: float

    def schedule_idle_check(self, now: float) -> None: ...


class ServerControl:
    def __init__(self, server: Running) -> None:
        self.server = server
        # What CONFIG SET redoes, by the `apply` of the settings it changed (settings.py).
        self._reapply = {"clients": self._reapply_clients, "auth": self._reapply_auth,
                         "compaction": self._reapply_compaction, "slowlog": self._reapply_slowlog,
                         "latency": self._reapply_latency, "log": self._reapply_log,
                         "timeout": self._reapply_timeout,
                         "notifications": self._reapply_notifications}

    def request_compaction(self, source: str) -> None:
        if self.server.draining:
            log.info("compaction request (%s) ignored: shutting down", source)
            return
        self.server.compaction.request(source)

    def request_shutdown(self, reason: str) -> None:
        """Begin the drain (or cut it short) at the end of this pass, after its replies."""
        self.server.shutdown_requests.append(reason)

    def connections(self) -> Collection[Connection]:
        return self.server.network.clients.values()

    def kill(self, conn: Connection) -> None:
        log.info("%s: killed (CLIENT KILL)", conn.describe())
        self.server.network.close(conn)

    def serve_while_busy(self, caller: Connection) -> None:
        """One pass without waiting, from inside a script past the busy threshold: the
        other clients through the busy gate (Network.serve_while_busy), and the signals
        read; a TERM or INT stops the script. A compaction's progress waits."""
        server = self.server
        server.network.serve_while_busy(caller, server.loop.wait(0))
        for signum in (signal.SIGTERM, signal.SIGINT):
            if signum in server.signals:
                server.scripts.stop(signal.Signals(signum).name)

    def reconfigure(self, changes: dict[str, object]) -> str | None:
        """CONFIG SET: the new values into the one Config everything reads, then what the
        server derived from them redone, once per `apply` of the settings changed (a
        setting without one is read from the Config where it is used)."""
        config = self.server.config
        if ("requirepass" in changes and changes["requirepass"] is None and config.port
                and config.protected_mode and not is_loopback(config.bind)):
            return (f"protected mode: kvd listens on {config.bind} and would be left without "
                    "a password (restart it with --no-protected-mode to allow that)")
        rows = {row.field: row for row in SETTINGS}
        for field, value in changes.items():
            value = rows[field].kind.merge(getattr(config, field), value)
            setattr(config, field, value)
            kind = rows[field].kind
            secret = isinstance(kind, Text) and kind.secret
            log.info("CONFIG SET %s = %s", field, "(redacted)" if secret else value)
        for apply in {rows[field].apply for field in changes}:
            if apply is not None:
                self._reapply[apply]()
        return None

    def _reapply_clients(self) -> None:
        server = self.server
        server.network.fit_clients_to_descriptors(server.store.stats().descriptors)

    def _reapply_auth(self) -> None:
        password = self.server.config.requirepass
        self.server.auth.password = password.encode() if password is not None else None

    def _reapply_compaction(self) -> None:
        config, compaction = self.server.config, self.server.compaction
        policy = compaction.policy
        policy.enabled, policy.ratio = config.auto_compact, config.auto_compact_ratio
        policy.min_bytes = config.auto_compact_min_size
        compaction.rate_limit = config.compaction_rate * 1e6

    def _reapply_slowlog(self) -> None:
        config, slowlog = self.server.config, self.server.slowlog
        slowlog.slower_than_us = config.slowlog_log_slower_than
        slowlog.max_len = config.slowlog_max_len
        slowlog.trim()

    def _reapply_latency(self) -> None:
        self.server.latency.threshold_ms = self.server.config.latency_monitor_threshold

    def _reapply_notifications(self) -> None:
        server = self.server
        server.databases.events.flags = parse_classes(server.config.notify_keyspace_events) or 0

    def _reapply_timeout(self) -> None:
        self.server.schedule_idle_check(time.monotonic())

    def _reapply_log(self) -> None:
        logs.set_level(self.server.config.log_level)

    def figures(self) -> dict:
        server = self.server
        return {
            "tcp_port": server.tcp_port,
            "uptime_s": time.monotonic() - server.started_monotonic,
            "max_clients": server.network.max_clients,
            "write_error": server.commit.write_error,
            "compaction": server.compaction.info(),
            "compaction_running_s": server.compaction.running_for_s(),
            "longest_pass_ms": server.pass_times.longest_ms(),
            "slow_passes": server.pass_times.slow_passes,
            "watchdog_stack_dumps": server.watchdog.stack_dumps,
        }
