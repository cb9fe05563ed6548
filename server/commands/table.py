"""The command table's rows: a command is its name and handler; everything else about it --
arity, flags, key positions, its subcommands' -- is Redis 7.0's own description.

`redis_commands.json` holds what Redis 7.0.15 answers to COMMAND INFO and COMMAND DOCS
for every one of its commands (tests/tools/command_table.py regenerates it). A family
module lists its commands as `row(name, handler)`; a row may override what kvd does
differently (kvd's own COMPACT, a subcommand from a later Redis) and names which of a
container's subcommands kvd has. The gate, the scripts' gate, MONITOR, MULTI and
COMMAND read the flags from the rows, so a property of a command lives in one place.

Flags used by kvd, Redis's names: write (its reply waits for the group commit; refused
while the store cannot write), noscript (not from scripts), allow_busy (runs while a
script is busy), no_multi (refused inside MULTI), no_auth (runs before AUTH),
skip_monitor and admin (not shown to MONITOR), readonly, fast, blocking, pubsub.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context

Handler = Callable[["Context", "Connection", list], bytes]

REDIS: dict[str, dict] = json.loads(
    (Path(__file__).parent / "redis_commands.json").read_text())["commands"]
REDIS["compact"] = {  # kvd's own, described as Redis describes its commands
    "info": ["a", ["compact", 1, ["s", [["+", "admin"], ["+", "noscript"]]], 0, 0, 0,
                   ["s", [["+", "@admin"], ["+", "@slow"], ["+", "@dangerous"]]], ["s", []],
                   ["s", []], ["s", []]]],
    "docs": ["m", ["summary", "Compacts the store in the background (as SIGUSR1 does).",
                   "since", "0.1.0", "group", "server",
                   "complexity", "O(N) in a background process, where N is the data's size."]],
}

# MONITOR does not show these (Redis: CMD_SKIP_MONITOR or CMD_ADMIN).
_HIDDEN = frozenset({"skip_monitor", "admin"})


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of the command table (or of a container's subcommands: "config|get",
    whose handler is its container's). arity: Redis's convention (n means exactly n
    arguments including the name, -n at least n)."""

    name: str
    handler: Handler
    arity: int
    flags: frozenset[str]
    keys: tuple[int, int, int]  # Redis's first key, last key (-1: the last argument), step
    # By upper-case name, the subcommands kvd has: Redis 7 looks them up as commands of
    # their own, so the gate refuses an unknown one or a wrong arity, even inside MULTI.
    subcommands: dict[bytes, Command] | None = None
    # The flags the gate tests on every request, as plain attributes.
    write: bool = field(init=False)
    no_auth: bool = field(init=False)
    shown: bool = field(init=False)  # to MONITOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "write", "write" in self.flags)
        object.__setattr__(self, "no_auth", "no_auth" in self.flags)
        object.__setattr__(self, "shown", not self.flags & _HIDDEN)

    def resolve(self, args: list[bytes]) -> Command:
        """The subcommand `args` names, if this is a container that has it; else self."""
        if self.subcommands is not None and len(args) > 1:
            return self.subcommands.get(args[1].upper(), self)
        return self

    def has(self, flag: str, args: list[bytes]) -> bool:
        """Whether the command `args` runs (a subcommand, for a container) has `flag`."""
        return flag in self.resolve(args).flags


def _flags(info: list) -> frozenset[str]:
    return frozenset(flag for _, flag in info[2][1])


def redis_arity_and_flags(name: bytes) -> tuple[int, frozenset[str]] | None:
    """Redis 7.0's arity and flags for the command `name` (any case), whether or not kvd
    has it; None if Redis has no such command."""
    described = REDIS.get(name.lower().decode(errors="replace"))
    if described is None:
        return None
    info = described["info"][1]
    return info[1], _flags(info)


def _described(name: str, handler: Handler, info: list, arity: int | None,
               flags: Iterable[str] | None, add_flags: Iterable[str]) -> Command:
    return Command(name, handler, info[1] if arity is None else arity,
                   (_flags(info) if flags is None else frozenset(flags)) | frozenset(add_flags),
                   (info[3], info[4], info[5]))


def row(name: str, handler: Handler, *, arity: int | None = None,
        flags: Iterable[str] | None = None, add_flags: Iterable[str] = (),
        subcommands: Iterable[str] = (),
        extra_subcommands: dict[str, tuple[int, Iterable[str]]] | None = None) -> Command:
    """The command `name` as Redis 7.0 describes it, run by `handler`. Overrides, for
    what kvd does differently: `arity`, `flags` (instead of Redis's) or `add_flags`;
    `subcommands`: the ones of Redis's that kvd has; `extra_subcommands`: ones Redis 7.0
    lacks, as name -> (arity, flags)."""
    info = REDIS[name]["info"][1]
    command = _described(name, handler, info, arity, flags, add_flags)
    if not subcommands and not extra_subcommands:
        return command
    known = {entry[1][0].split("|", 1)[1]: entry[1] for entry in info[9][1]}
    subs = {}
    for sub in subcommands:
        subs[sub.upper().encode()] = _described(f"{name}|{sub}", handler, known[sub], None,
                                                None, add_flags)
    for sub, (sub_arity, sub_flags) in (extra_subcommands or {}).items():
        subs[sub.upper().encode()] = Command(f"{name}|{sub}", handler, sub_arity,
                                             frozenset(sub_flags), (0, 0, 0))
    return Command(command.name, handler, command.arity, command.flags, command.keys, subs)
