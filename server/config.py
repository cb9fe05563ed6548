"""The daemon's settings: one dataclass whose fields are the table of settings (each
declared with settings.setting: its default, kind, help, option, CONFIG names, whether
CONFIG SET may change it and what the server redoes then). The `kvd` CLI fills it
(options and KVD_* variables), CONFIG GET/SET read and change it.

Paths are made absolute by `resolved()` before daemonizing, because the
daemon changes its working directory to `/`.

Adding a setting is adding a field here; everything else follows from its row.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os

from storage import ENGINES, FSYNC_POLICIES

from .notify import parse_classes
from .settings import (
    Choice,
    EventClasses,
    Integer,
    MemoryAmount,
    Number,
    Octal,
    OutputLimits,
    Path,
    Setting,
    Text,
    YesNo,
    setting,
    settings_of,
)

KIB = 1024
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting is invalid; the message says which and why."""


def _port(config: Config, figures: dict) -> str:
    return str(figures["tcp_port"])


def _max_clients(config: Config, figures: dict) -> str:
    return str(figures["max_clients"])  # (lowered at start-up when descriptors are short)


def _bind(config: Config, figures: dict) -> str:
    return config.bind if config.port else ""


def _log_file(config: Config, figures: dict) -> str:
    return config.log_file if config.log_file != "-" else ""


def _milliseconds(config: Config, figures: dict) -> str:
    return str(int(config.watchdog_period * 1000))  # Redis's watchdog-period is in ms


# Log levels: kvd's (the option's), Redis's names for them (CONFIG SET reads either).
LOG_LEVEL = Choice(("debug", "info", "warning", "error", "critical"),
                   aliases=(("verbose", "debug"), ("notice", "info"), ("nothing", "critical")),
                   shown=(("info", "notice"), ("error", "warning"), ("critical", "nothing")),
                   listed=("debug", "verbose", "notice", "warning", "nothing"))


@dataclasses.dataclass
class Config:
    """The settings: one row each (see settings.py for what reads the rows). CONFIG SET
    changes the mutable ones at run time, through the loop, which redoes what it derived
    from them (`apply`)."""

    data_dir: str = setting("kvd-data", Path(), "Data directory.", names=("dir",))
    engine: str | None = setting(
        None, Choice(ENGINES), "Storage engine; default: the data directory's own, log for "
        "a new one.", names=("kvd-engine",))
    fsync: str = setting(
        "always", Choice(FSYNC_POLICIES), "When writes reach the disk: every acknowledged "
        "write (always), about once a second (everysec) or when the OS decides (no).",
        names=("appendfsync",))
    segment_size: int = setting(64 * MIB, Integer(4096, 2**32 - 1),
                                "Log engine: segment size in bytes before rotating.",
                                names=("kvd-segment-size",))
    pidfile: str = setting("kvd.pid", Path(), "PID file of the daemon.", names=("pidfile",))
    socket: str = setting("kvd.sock", Path(), "Unix socket to listen on ('' disables it).",
                          names=("unixsocket",))
    socket_mode: int = setting(0o600, Octal(), "Permissions of the Unix socket (octal).",
                               names=("unixsocketperm",))
    bind: str = setting("127.0.0.1", Text(), "TCP address to listen on.", names=("bind",),
                        show=_bind)
    port: int = setting(7379, Integer(0, 65535), "TCP port (0 disables TCP).", names=("port",),
                        show=_port)
    requirepass: str | None = setting(
        None, Text(secret=True, empty_is_none=True), "Password clients must send with AUTH "
        "(prefer --password-file: a command line is visible to other users).",
        names=("requirepass",), mutable=True, apply="auth")
    protected_mode: bool = setting(
        True, YesNo(), "Without a password, refuse to listen on a non-loopback address.",
        names=("protected-mode",))
    max_clients: int = setting(10_000, Integer(1, (1 << 32) - 1),
                               "Connections served at once; more get an error.",
                               names=("maxclients",), mutable=True, apply="clients",
                               show=_max_clients)
    client_timeout: int = setting(0, Integer(0, 2**31 - 1),
                                  "Close a client idle for this many seconds (0: never); "
                                  "not one that MONITORs or waits for a CLIENT PAUSE.",
                                  names=("timeout",), mutable=True, apply="timeout")
    databases: int = setting(16, Integer(1, 1 << 20), "Databases clients may SELECT "
                             "(numbered from 0), as Redis's option.", names=("databases",))
    # Redis's encoding knobs: accepted and shown (CONFIG SET / GET; Redis's own test suite
    # sets them), read by kvd's small-collection policy as the collections arrive
    # (docs/data-model.md); no `kvd start` option.
    hash_max_listpack_entries: int = setting(
        128, Integer(0), "Fields of a hash kept packed (one record); past it, one record "
        "per field.", option=None, mutable=True,
        names=("hash-max-listpack-entries", "hash-max-ziplist-entries"))
    hash_max_listpack_value: int = setting(
        64, MemoryAmount(), "Bytes of a field of a hash kept packed.", option=None, mutable=True,
        names=("hash-max-listpack-value", "hash-max-ziplist-value"))
    list_max_listpack_size: int = setting(
        -2, Integer(-(1 << 31), (1 << 31) - 1), "Redis's list node size (accepted).",
        option=None, mutable=True, names=("list-max-listpack-size", "list-max-ziplist-size"))
    list_compress_depth: int = setting(
        0, Integer(0, (1 << 31) - 1), "Redis's list compression depth (accepted).",
        option=None, mutable=True, names=("list-compress-depth",))
    set_max_intset_entries: int = setting(
        512, Integer(0), "Members of an integer set kept packed.", option=None, mutable=True,
        names=("set-max-intset-entries",))
    zset_max_listpack_entries: int = setting(
        128, Integer(0), "Members of a sorted set kept packed.", option=None, mutable=True,
        names=("zset-max-listpack-entries", "zset-max-ziplist-entries"))
    zset_max_listpack_value: int = setting(
        64, MemoryAmount(), "Bytes of a member of a sorted set kept packed.", option=None,
        mutable=True, names=("zset-max-listpack-value", "zset-max-ziplist-value"))
    notify_keyspace_events: str = setting(
        "", EventClasses(), "Keyspace notifications to publish, as Redis's classes: K and/or "
        "E, and the events (A all, g generic, $ string, l list, s set, h hash, z sorted set, "
        "t stream, x expired, m key miss, n new key); '' (none) by default.",
        names=("notify-keyspace-events",), mutable=True, apply="notifications")
    max_key_size: int = setting(1 * MIB, Integer(1), "Largest key in bytes.",
                                names=("kvd-max-key-size",))
    max_value_size: int = setting(64 * MIB, Integer(1, 2**31 - 1), "Largest value in bytes.",
                                  names=("kvd-max-value-size", "proto-max-bulk-len"))
    max_request_size: int = setting(128 * MIB, Integer(1),
                                    "Bytes a single request may occupy while it arrives.",
                                    names=("client-query-buffer-limit",))
    max_output_buffer: int = setting(
        8 * MIB, Integer(1), "Reply bytes a client may owe before kvd stops running and "
        "reading its requests until it has read its replies.", names=("kvd-max-output-buffer",))
    client_output_buffer_limit: tuple = setting(
        (("normal", 0, 0, 0), ("slave", 256 * MIB, 64 * MIB, 60),
         ("pubsub", 32 * MIB, 8 * MIB, 60)),
        OutputLimits(), "Redis's limits on what a client may owe, by class: "
        "'pubsub <hard> <soft> <seconds>' disconnects a subscriber owing more than <hard> "
        "bytes, or more than <soft> for <seconds> (default pubsub 32mb 8mb 60); 'normal' "
        "ones past --max-output-buffer's backpressure; 'replica' ones are kept, unused.",
        names=("client-output-buffer-limit",), mutable=True)
    max_transaction_size: int = setting(
        128 * MIB, Integer(1), "Bytes of requests one MULTI may queue before EXEC; past it "
        "the transaction is refused.", names=("kvd-max-transaction-size",))
    busy_reply_threshold: int = setting(
        5000, Integer(0), "Milliseconds a Lua script may run before other clients get -BUSY "
        "and SCRIPT KILL can stop it (0: never), as Redis's option.",
        names=("busy-reply-threshold", "lua-time-limit"), mutable=True)
    script_memory: int = setting(256 * MIB, Integer(4 * MIB),
                                 "Bytes the Lua state of scripts may allocate; a script that "
                                 "needs more fails with an error.", names=("kvd-script-memory",))
    drain_timeout: float = setting(10.0, Number(0), "Seconds a shutdown waits for clients to "
                                   "finish.", names=("kvd-drain-timeout",), mutable=True)
    auto_compact: bool = setting(True, YesNo(), "Compact unasked when garbage passes both "
                                 "thresholds below.", names=("kvd-auto-compact",), mutable=True,
                                 apply="compaction")
    auto_compact_ratio: float = setting(
        1.0, Number(0), "Dead bytes as a multiple of live bytes that trigger automatic "
        "compaction.", names=("kvd-auto-compact-ratio",), mutable=True, apply="compaction")
    auto_compact_min_size: int = setting(
        64 * MIB, Integer(0), "Dead bytes below which automatic compaction never starts.",
        names=("kvd-auto-compact-min-size",), mutable=True, apply="compaction")
    compaction_rate: float = setting(
        0.0, Number(0), "MB/s of segments a compaction may read (0: no limit); a limit leaves "
        "the disk to the server's own fsyncs.", names=("kvd-compaction-rate",), mutable=True,
        apply="compaction")
    slowlog_log_slower_than: int = setting(
        10_000, Integer(-1), "Microseconds from which a command is kept in the slow log "
        "(SLOWLOG GET); negative: off, 0: every command.", names=("slowlog-log-slower-than",),
        mutable=True, apply="slowlog")
    slowlog_max_len: int = setting(128, Integer(0), "Entries the slow log keeps (the oldest "
                                   "go first).", names=("slowlog-max-len",), mutable=True,
                                   apply="slowlog")
    latency_monitor_threshold: int = setting(
        0, Integer(0), "Milliseconds from which an event (a command, a flush, an expiry "
        "cycle, a fork) is kept by LATENCY; 0: off.", names=("latency-monitor-threshold",),
        mutable=True, apply="latency")
    watchdog_period: float = setting(
        1.0, Number(0), "Seconds one pass of the loop may run before the watchdog logs its "
        "stack (0: off).", names=("watchdog-period",), show=_milliseconds)
    enable_debug_command: str = setting(
        "no", Choice(("no", "yes", "local")), "Allow the DEBUG command (DEBUG SLEEP) from any "
        "client (yes), from the Unix socket and loopback (local), or not at all (no), as "
        "Redis's option of the same name.", names=("enable-debug-command",))
    log_file: str = setting("kvd.log", Path(), "Log file ('-' is stderr; the default with "
                            "--foreground).", names=("logfile",), show=_log_file)
    log_level: str = setting("info", LOG_LEVEL, "Log level.", names=("loglevel",), mutable=True,
                             apply="log")

    def resolved(self) -> Config:
        """A copy with every path absolute (relative to the current directory)."""
        def absolute(path: str) -> str:
            return path if path in ("", "-") else os.path.abspath(path)

        return dataclasses.replace(
            self,
            data_dir=absolute(self.data_dir),
            pidfile=absolute(self.pidfile),
            socket=absolute(self.socket),
            log_file=absolute(self.log_file),
        )

    def check(self) -> None:
        """Raise ConfigError for settings that cannot work together."""
        if not self.socket and not self.port:
            raise ConfigError("both the Unix socket and TCP are disabled; nothing to listen on")
        if self.port and not 0 < self.port < 65536:
            raise ConfigError("--port must be between 1 and 65535 (0 disables TCP), "
                              f"not {self.port}")
        if (self.port and self.protected_mode and not self.requirepass
                and not is_loopback(self.bind)):
            raise ConfigError(
                f"refusing to listen on {self.bind} without a password (protected mode): "
                "set --requirepass or --password-file, bind a loopback address, "
                "or pass --no-protected-mode if the network is trusted"
            )
        if self.socket and len(self.socket.encode()) > 107:
            raise ConfigError("Unix socket path is too long for the kernel (max 107 bytes): "
                              f"{self.socket}")
        for name in ("max_clients", "max_key_size", "max_value_size", "max_request_size",
                     "max_output_buffer", "max_transaction_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        needed = self.max_key_size + self.max_value_size + 64 * KIB
        if self.max_request_size < needed:
            raise ConfigError(
                f"--max-request-size ({self.max_request_size}) must hold a SET of the largest key "
                f"and value: at least {needed}"
            )
        if self.auto_compact_ratio < 0 or self.auto_compact_min_size < 0:
            raise ConfigError("--auto-compact-ratio and --auto-compact-min-size must not be "
                              "negative")
        if self.watchdog_period < 0:
            raise ConfigError("--watchdog-period must not be negative (0 turns the watchdog off)")
        if self.busy_reply_threshold < 0:
            raise ConfigError("--busy-reply-threshold must not be negative (0: no threshold)")
        if self.script_memory < 4 * MIB:
            raise ConfigError("--script-memory must be at least 4 MiB")
        if self.slowlog_max_len < 0:
            raise ConfigError("--slowlog-max-len must not be negative")
        if parse_classes(self.notify_keyspace_events) is None:
            raise ConfigError("--notify-keyspace-events takes Redis's class characters "
                              f"(Ag$lshzxeKEtmdn), not {self.notify_keyspace_events!r}")
        if self.drain_timeout < 0:
            raise ConfigError("--drain-timeout must not be negative")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password_file(path: str) -> str:
    """The first line of a password file, which must not be readable by others."""
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise ConfigError(f"password file {path} is readable by others; chmod 600 it")
    if not password:
        raise ConfigError(f"password file {path} is empty")
    return password


SETTINGS: list[Setting] = settings_of(Config)
