"""How a setting is described (Redis's standardConfig): the one table of settings is the
Config dataclass (config.py), each field declared with `setting(...)`, and everything
that handles settings reads it from there:

* `kvd start`'s options and their KVD_* variables (cli.py builds them from the rows);
* CONFIG GET (`config_values`: every setting under each of its names, and the Redis
  settings kvd only reports) and CONFIG SET (`parse_changes`, Redis's error texts);
* what the running server redoes when CONFIG SET changes one (`Setting.apply`, a name
  of what to redo: the server's `reconfigure` runs each once).

Values in text are read by the setting's `Kind`: bounds and Redis's messages once, for
the option and for CONFIG SET alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .notify import parse_classes, show_classes
from .protocol import parse_strict_int

Config = Any  # (config.Config: the table is declared there, with these)

LONG_MAX = (1 << 63) - 1
# Redis settings kvd reports but has no setting for: CONFIG GET shows them; CONFIG SET
# accepts the value shown (changing nothing: Redis's test suite sets `save ""` before
# each unit) and refuses any other.
REPORTED = {"appendonly": "yes", "save": ""}


class Refused(ValueError):
    """The text after "CONFIG SET failed (possibly related to argument 'x') - "."""


class Kind:
    """What values a setting takes: read from text (CONFIG SET, and the option's type in
    cli.py) and shown as text (CONFIG GET)."""

    def parse(self, text: bytes) -> Any:
        raise Refused("argument cannot be changed at run time")

    def show(self, value: Any) -> str:
        return "" if value is None else str(value)

    def merge(self, old: Any, new: Any) -> Any:
        """The value CONFIG SET leaves, from the one in force and the one parsed."""
        return new


@dataclass(frozen=True)
class Integer(Kind):
    low: int
    high: int = LONG_MAX

    def parse(self, text: bytes) -> int:
        value = parse_strict_int(text)
        if value is None:
            raise Refused("argument couldn't be parsed into an integer")
        if not self.low <= value <= self.high:
            raise Refused(f"argument must be between {self.low} and {self.high} inclusive")
        return value


@dataclass(frozen=True)
class MemoryAmount(Kind):
    """A byte count as Redis's memtoull reads it: digits and an optional unit (k, kb, m,
    mb, g, gb: 1000 or 1024 based, any case)."""

    low: int = 0
    high: int = LONG_MAX

    def parse(self, text: bytes) -> int:
        match = re.fullmatch(rb"(\d+)(k|kb|m|mb|g|gb)?", text.lower())
        if match is None:
            raise Refused("argument must be a memory value")
        value = int(match.group(1)) * _UNITS[match.group(2) or b""]
        if not self.low <= value <= self.high:
            raise Refused(f"argument must be between {self.low} and {self.high} inclusive")
        return value


_UNITS = {b"": 1, b"k": 1000, b"kb": 1024, b"m": 1000**2, b"mb": 1024**2, b"g": 1000**3,
          b"gb": 1024**3}


@dataclass(frozen=True)
class Number(Kind):
    low: float

    def parse(self, text: bytes) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Refused("argument couldn't be parsed into a number") from None
        if not value >= self.low or value == float("inf"):
            raise Refused(f"argument must be a number of at least {self.low:g}")
        return value

    def show(self, value: Any) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class YesNo(Kind):
    """A switch: `--name/--no-name` as an option, yes or no in CONFIG."""

    def parse(self, text: bytes) -> bool:
        answer = text.lower()
        if answer not in (b"yes", b"no"):
            raise Refused("argument must be 'yes' or 'no'")
        return answer == b"yes"

    def show(self, value: Any) -> str:
        return "yes" if value else "no"


@dataclass(frozen=True)
class Choice(Kind):
    """One of `values`; CONFIG names may differ (`aliases`: Redis's name -> kvd's) and
    are shown as Redis's where `shown` says so."""

    values: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()
    shown: tuple[tuple[str, str], ...] = ()
    listed: tuple[str, ...] = ()  # the names Redis's error lists (default: the values)

    def parse(self, text: bytes) -> str:
        name = text.decode(errors="replace").lower()
        value = dict(self.aliases).get(name, name)
        if value not in self.values:
            raise Refused("argument(s) must be one of the following: "
                          + ", ".join(self.listed or self.values))
        return value

    def show(self, value: Any) -> str:
        return dict(self.shown).get(value, "" if value is None else str(value))


@dataclass(frozen=True)
class Text(Kind):
    """Any text; `secret`: kept out of the log; `empty_is_none`: "" unsets it (requirepass)."""

    secret: bool = False
    empty_is_none: bool = False

    def parse(self, text: bytes) -> str | None:
        if self.empty_is_none and not text:
            return None
        return text.decode()


@dataclass(frozen=True)
class EventClasses(Kind):
    """notify-keyspace-events: Redis's class characters (K E g $ l s h z x e t m d n A),
    kept as CONFIG GET shows them."""

    def parse(self, text: bytes) -> str:
        flags = parse_classes(text.decode(errors="replace"))
        if flags is None:
            raise Refused("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        return show_classes(flags)


# client-output-buffer-limit's value: (class, hard bytes, soft bytes, soft seconds) for
# each of Redis's classes, in the order CONFIG GET shows them
Limits = tuple[tuple[str, int, int, int], ...]
LIMIT_CLASSES = ("normal", "slave", "pubsub")


@dataclass(frozen=True)
class OutputLimits(Kind):
    """client-output-buffer-limit: `<class> <hard> <soft> <soft seconds>` for some of
    the classes (normal, replica or slave, pubsub), as Redis's updateClientOutputBufferLimit
    reads it; the classes not named keep their limits (`merge`)."""

    def parse(self, text: bytes) -> Limits:
        words = text.decode(errors="replace").split()
        if len(words) % 4:
            raise Refused("Wrong number of arguments in buffer limit configuration.")
        given = []
        for i in range(0, len(words), 4):
            name = {"replica": "slave"}.get(words[i].lower(), words[i].lower())
            if name not in LIMIT_CLASSES:
                raise Refused("Invalid client class specified in buffer limit configuration.")
            try:
                hard, soft = (MemoryAmount().parse(word.encode()) for word in words[i + 1:i + 3])
                seconds = int(words[i + 3])
            except (Refused, ValueError):
                seconds = -1
            if seconds < 0:
                raise Refused("Error in hard, soft or soft_seconds setting in buffer limit "
                              "configuration.")
            given.append((name, hard, soft, seconds))
        return tuple(given)

    def merge(self, old: Limits, new: Limits) -> Limits:
        named = {limit[0]: limit for limit in new}
        return tuple(named.get(limit[0], limit) for limit in old)

    def show(self, value: Any) -> str:
        return " ".join(f"{name} {hard} {soft} {seconds}" for name, hard, soft, seconds in value)


@dataclass(frozen=True)
class Path(Kind):
    """A file or directory; made absolute before the daemon detaches ('' and '-' stay)."""


@dataclass(frozen=True)
class Octal(Kind):
    """Permission bits, written in octal (600)."""

    def show(self, value: Any) -> str:
        return f"{value:o}"


@dataclass(frozen=True)
class Setting:
    """One row of the table: everything about one setting but its value."""

    field: str  # the Config attribute
    kind: Kind
    help: str
    option: str | None  # `kvd start --<option>` (KVD_<OPTION>); None: no option
    names: tuple[str, ...]  # CONFIG GET/SET names (Redis's where it has the setting)
    mutable: bool  # CONFIG SET may change it
    apply: str | None  # what the running server redoes when it changes (see reconfigure)
    show: Callable[[Config, dict], str] | None  # CONFIG GET's text, when not kind.show

    def text(self, config: Config, figures: dict) -> str:
        if self.show is not None:
            return self.show(config, figures)
        return self.kind.show(getattr(config, self.field))


def setting(default: Any, kind: Kind, help: str, *, option: str | None = "",
            names: tuple[str, ...] = (), mutable: bool = False, apply: str | None = None,
            show: Callable[[Config, dict], str] | None = None) -> Any:
    """A Config field that is a setting. `option` defaults to the field's name with
    dashes; "" means that, None no option."""
    return dataclasses.field(default=default, metadata={"setting": (kind, help, option, names,
                                                                    mutable, apply, show)})


def settings_of(config_class: type) -> list[Setting]:
    """The rows: every field of `config_class` declared with setting(), in order."""
    rows = []
    for f in dataclasses.fields(config_class):
        if "setting" not in f.metadata:
            continue
        kind, help, option, names, mutable, apply, show = f.metadata["setting"]
        if option == "":
            option = f.name.replace("_", "-")
        rows.append(Setting(f.name, kind, help, option, names, mutable, apply, show))
    return rows


def by_name(rows: list[Setting]) -> dict[str, Setting]:
    """CONFIG name -> its row."""
    return {name: row for row in rows for name in row.names}


def config_values(rows: list[Setting], config: Config, figures: dict) -> dict[str, str]:
    """CONFIG GET's view: every setting under each of its names, and what kvd reports."""
    values = {name: row.text(config, figures) for row in rows for name in row.names}
    values.update(REPORTED)
    return values


def parse_changes(rows: list[Setting], pairs: list[tuple[bytes, bytes]]
                  ) -> dict[str, object] | tuple[str, str | None]:
    """Config field -> new value for CONFIG SET's name/value pairs; or (what failed, why)
    where why is None for a name that is not a setting at all."""
    named = by_name(rows)
    changes: dict[str, object] = {}
    seen: set[str] = set()
    refusal: tuple[str, str | None] | None = None
    for raw_name, text in pairs:  # every name before any value; the first problem is told
        name, shown = raw_name.decode(errors="replace").lower(), raw_name.decode(errors="replace")
        row = named.get(name)
        if refusal is None:
            if row is None and name not in REPORTED:
                refusal = (shown, None)
            elif row is None and text.decode(errors="replace") == REPORTED[name]:
                continue  # the value in force: nothing to change
            elif row is None or not row.mutable:
                refusal = (shown, "can't set immutable config")
            elif row.field in seen:
                refusal = (shown, "duplicate parameter")
        if row is not None:
            seen.add(row.field)
    if refusal is not None:
        return refusal
    for raw_name, text in pairs:
        name = raw_name.decode(errors="replace").lower()
        if name in REPORTED:
            continue
        row = named[name]
        try:
            changes[row.field] = row.kind.parse(text)
        except Refused as exc:
            return name, str(exc)
    return changes
