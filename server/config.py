"""The daemon's settings: one dataclass, filled by the `kvd` CLI (options and KVD_* variables).

Paths are made absolute by `resolved()` before daemonizing, because the
daemon changes its working directory to `/`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os

KIB = 1024
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting is invalid; the message says which and why."""


@dataclasses.dataclass
class Config:
    """The settings. CONFIG SET changes a few at run time (server/settings.py says which),
    through the loop, which also updates what it derived from them."""

    data_dir: str = "kvd-data"
    engine: str | None = None  # None: the data directory's own (META), "log" for a new one
    fsync: str = "always"
    segment_size: int = 64 * MIB
    pidfile: str = "kvd.pid"
    socket: str = "kvd.sock"  # "" disables the Unix socket
    socket_mode: int = 0o600
    bind: str = "127.0.0.1"
    port: int = 7379  # 0 disables TCP
    requirepass: str | None = None
    protected_mode: bool = True
    max_clients: int = 10_000
    max_key_size: int = 1 * MIB
    max_value_size: int = 64 * MIB
    max_request_size: int = 128 * MIB
    max_output_buffer: int = 8 * MIB
    max_transaction_size: int = 128 * MIB  # bytes of requests queued by one MULTI
    busy_reply_threshold: int = 5000  # ms a script runs before others get -BUSY; 0: never
    script_memory: int = 256 * MIB  # the Lua state's memory limit
    drain_timeout: float = 10.0
    auto_compact: bool = True
    auto_compact_ratio: float = 1.0  # dead bytes >= this x live bytes...
    auto_compact_min_size: int = 64 * MIB  # ...and at least this many dead bytes
    compaction_rate: float = 0.0  # MB/s of segments a compaction reads; 0: unlimited
    slowlog_log_slower_than: int = 10_000  # microseconds; negative: off, 0: every command
    slowlog_max_len: int = 128
    latency_monitor_threshold: int = 0  # ms; 0: the latency monitor is off
    watchdog_period: float = 1.0  # seconds one loop pass may run before its stack is logged; 0: off
    enable_debug_command: str = "no"  # "yes", "local" (Unix socket and loopback) or "no", as Redis
    log_file: str = "kvd.log"  # "-" is stderr
    log_level: str = "info"

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
            raise ConfigError(f"--port must be between 1 and 65535 (0 disables TCP), not {self.port}")
        if self.port and self.protected_mode and not self.requirepass and not is_loopback(self.bind):
            raise ConfigError(
                f"refusing to listen on {self.bind} without a password (protected mode): "
                "set --requirepass or --password-file, bind a loopback address, "
                "or pass --no-protected-mode if the network is trusted"
            )
        if self.socket and len(self.socket.encode()) > 107:
            raise ConfigError(f"Unix socket path is too long for the kernel (max 107 bytes): {self.socket}")
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
            raise ConfigError("--auto-compact-ratio and --auto-compact-min-size must not be negative")
        if self.watchdog_period < 0:
            raise ConfigError("--watchdog-period must not be negative (0 turns the watchdog off)")
        if self.busy_reply_threshold < 0:
            raise ConfigError("--busy-reply-threshold must not be negative (0: no threshold)")
        if self.script_memory < 4 * MIB:
            raise ConfigError("--script-memory must be at least 4 MiB")
        if self.slowlog_max_len < 0:
            raise ConfigError("--slowlog-max-len must not be negative")
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
