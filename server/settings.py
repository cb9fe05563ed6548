"""CONFIG SET: the settings that change at run time, under their CONFIG names.

Each entry names the Config field it sets and how its text is read, with
Redis's error texts (config.c). The loop applies a change to what it derived
from the setting (the client limit, the compaction policy, the password, the
log level, the slow log); everything else is fixed at start-up, and CONFIG SET
of it says so ("can't set immutable config"), as Redis does for its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .protocol import parse_strict_int

# Log levels: Redis's names and kvd's (the --log-level choices), to the logging level.
LOG_LEVELS = {"debug": "debug", "verbose": "debug", "notice": "info", "info": "info",
              "warning": "warning", "error": "error", "nothing": "critical"}
REDIS_LOG_LEVEL = {"debug": "debug", "info": "notice", "warning": "warning", "error": "warning",
                   "critical": "nothing"}


class Refused(ValueError):
    """The text after "CONFIG SET failed (possibly related to argument 'x') - "."""


@dataclass(frozen=True)
class Setting:
    field: str
    parse: Callable[[bytes], object]


def _integer(low: int, high: int) -> Callable[[bytes], int]:
    def parse(text: bytes) -> int:
        value = parse_strict_int(text)
        if value is None:
            raise Refused("argument couldn't be parsed into an integer")
        if not low <= value <= high:
            raise Refused(f"argument must be between {low} and {high} inclusive")
        return value
    return parse


def _number(low: float) -> Callable[[bytes], float]:
    def parse(text: bytes) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Refused("argument couldn't be parsed into a number") from None
        if not value >= low or value == float("inf"):
            raise Refused(f"argument must be a number of at least {low:g}")
        return value
    return parse


def _yes_no(text: bytes) -> bool:
    answer = text.lower()
    if answer not in (b"yes", b"no"):
        raise Refused("argument must be 'yes' or 'no'")
    return answer == b"yes"


def _log_level(text: bytes) -> str:
    level = LOG_LEVELS.get(text.decode(errors="replace").lower())
    if level is None:
        raise Refused("argument(s) must be one of the following: debug, verbose, notice, "
                      "warning, nothing (or kvd's info, error)")
    return level


def _password(text: bytes) -> str | None:
    return text.decode() if text else None  # "" removes the password, as in Redis


LONG_MAX = (1 << 63) - 1
SETTINGS = {
    "loglevel": Setting("log_level", _log_level),
    "maxclients": Setting("max_clients", _integer(1, (1 << 32) - 1)),
    "requirepass": Setting("requirepass", _password),
    "slowlog-log-slower-than": Setting("slowlog_log_slower_than", _integer(-1, LONG_MAX)),
    "slowlog-max-len": Setting("slowlog_max_len", _integer(0, LONG_MAX)),
    "latency-monitor-threshold": Setting("latency_monitor_threshold", _integer(0, LONG_MAX)),
    "busy-reply-threshold": Setting("busy_reply_threshold", _integer(0, LONG_MAX)),
    "lua-time-limit": Setting("busy_reply_threshold", _integer(0, LONG_MAX)),
    "kvd-auto-compact": Setting("auto_compact", _yes_no),
    "kvd-auto-compact-ratio": Setting("auto_compact_ratio", _number(0)),
    "kvd-auto-compact-min-size": Setting("auto_compact_min_size", _integer(0, LONG_MAX)),
    "kvd-compaction-rate": Setting("compaction_rate", _number(0)),
    "kvd-drain-timeout": Setting("drain_timeout", _number(0)),
}


def parse_changes(pairs: list[tuple[bytes, bytes]], known: set[str]
                  ) -> dict[str, object] | tuple[str, str | None]:
    """Config field -> new value for CONFIG SET's name/value pairs; or (what failed, why)
    where why is None for a name that is not a setting at all."""
    changes: dict[str, object] = {}
    seen: set[str] = set()
    refusal: tuple[str, str | None] | None = None
    for raw_name, _ in pairs:  # every name before any value; the first problem is told
        name, shown = raw_name.decode(errors="replace").lower(), raw_name.decode(errors="replace")
        if refusal is None:
            if name not in SETTINGS and name not in known:
                refusal = (shown, None)
            elif name not in SETTINGS:
                refusal = (shown, "can't set immutable config")
            elif SETTINGS[name].field in seen:
                refusal = (shown, "duplicate parameter")
        if name in SETTINGS:
            seen.add(SETTINGS[name].field)
    if refusal is not None:
        return refusal
    for raw_name, text in pairs:
        setting = SETTINGS[raw_name.decode(errors="replace").lower()]
        try:
            changes[setting.field] = setting.parse(text)
        except Refused as exc:
            return raw_name.decode(errors="replace").lower(), str(exc)
    return changes
