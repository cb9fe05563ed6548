"""What every command family shares: the handler signature and Redis's common errors."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..glob import compile_glob
from ..protocol import parse_strict_int
from ..resp import array, error, status
from .table import Command, Handler  # noqa: F401 (the families' and the gate's)

if TYPE_CHECKING:
    pass

NOT_INTEGER = error("ERR value is not an integer or out of range")
NOT_FLOAT = error("ERR value is not a valid float")
SYNTAX = error("ERR syntax error")
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def c_string(arg: bytes) -> bytes:
    """An argument as Redis's C code reads it with strcasecmp or %s: up to its first NUL."""
    return arg.split(b"\0", 1)[0]


def keyword(arg: bytes) -> bytes:
    """An option word, compared as Redis's strcasecmp compares it: lower case, to a NUL."""
    return c_string(arg).lower()


def wrong_arity(name: bytes) -> bytes:
    shown = name.decode(errors="replace").lower()
    return error(f"ERR wrong number of arguments for '{shown}' command")


def invalid_expire(command: str) -> bytes:
    """Redis's addReplyErrorExpireTime."""
    return error(f"ERR invalid expire time in '{command}' command")


def subcommand_refusal(command: Command, args: list[bytes]) -> bytes | None:
    """Why the gate refuses a command's subcommand (processCommand's lookup), or None.
    (COMMAND alone is a command of its own: no subcommand to check.)"""
    if len(args) < 2:
        return None
    sub = args[1].upper()
    found = command.subcommands.get(sub) if command.subcommands is not None else None
    if found is None:
        return error(b"ERR unknown subcommand '" + c_string(args[1])[:128]
                     + b"'. Try " + command.name.upper().encode() + b" HELP.")
    arity = found.arity
    if (len(args) != arity) if arity > 0 else (len(args) < -arity):
        return wrong_arity(command.name.encode() + b"|" + sub.lower())
    return None


def unknown_subcommand(args: list[bytes]) -> bytes:
    """Redis's addReplySubcommandSyntaxError."""
    return error(b"ERR unknown subcommand or wrong number of arguments for '"
                 + c_string(args[1])[:128] + b"'. Try "
                 + args[0].upper() + b" HELP.")


def help_reply(name: str, lines: list[str]) -> bytes:
    """Redis's addReplyHelp: a header, the lines, and HELP itself, as status lines."""
    return array([status(line) for line in (
        f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", *lines,
        "HELP", "    Prints this help.")])


def parse_db_index(text: bytes) -> int | None:
    """A database number as Redis's getIntFromObjectOrReply reads it (a C int)."""
    index = parse_strict_int(text)
    return index if index is not None and -(1 << 31) <= index < (1 << 31) else None


DB_OUT_OF_RANGE = error("ERR DB index is out of range")


def parse_multi_pop(args: list[bytes], numkeys_at: int, ends: tuple[bytes, bytes]
                    ) -> tuple[list[bytes], bool, int] | bytes:
    """LMPOP's and ZMPOP's (and their blocking forms') `numkeys key [key ...] END [COUNT
    count]` from args[numkeys_at]: the keys, whether END is the second of `ends` (RIGHT,
    MAX), the count; or the error reply, as Redis's lmpopGenericCommand words it."""
    numkeys = parse_strict_int(args[numkeys_at])
    if numkeys is None or numkeys < 1:
        return error("ERR numkeys should be greater than 0")
    where_at = numkeys_at + numkeys + 1
    if where_at >= len(args):
        return SYNTAX
    where = keyword(args[where_at])
    if where not in ends:
        return SYNTAX
    count = -1
    j = where_at + 1
    while j < len(args):
        if count == -1 and keyword(args[j]) == b"count" and j + 1 < len(args):
            parsed = parse_strict_int(args[j + 1])
            if parsed is None or parsed < 1:
                return error("ERR count should be greater than 0")
            count = parsed
            j += 2
        else:
            return SYNTAX
    return args[numkeys_at + 1:where_at], where == ends[1], max(count, 1)


def parse_random_count(args: list[bytes], word: bytes | None) -> tuple[int, bool] | bytes:
    """HRANDFIELD's, SRANDMEMBER's and ZRANDMEMBER's count (args[2]: Redis's range is
    -LONG_MAX..LONG_MAX) and, where `word` names one (withvalues, withscores), whether
    args[3] asks for the values too; or the error reply."""
    count = parse_strict_int(args[2])
    if count is None:
        return NOT_INTEGER
    if count == INT64_MIN:
        return error(f"ERR value is out of range, value must between {-INT64_MAX} and "
                     f"{INT64_MAX}")
    if word is None:
        return count, False
    if len(args) > 4 or (len(args) == 4 and keyword(args[3]) != word):
        return SYNTAX
    with_values = len(args) == 4
    if with_values and not -INT64_MAX // 2 <= count <= INT64_MAX // 2:
        return error("ERR value is out of range")
    return count, with_values


def random_picks(names: list[bytes], count: int) -> list[bytes]:
    """A positive count: that many distinct names (all of them, in their order, if there
    are no more); a negative one: that many picks that may repeat."""
    if count < 0:
        return [random.choice(names) for _ in range(-count)]
    return names if count >= len(names) else random.sample(names, count)


def parse_limit(args: list[bytes], start: int) -> int | bytes:
    """SINTERCARD's and ZINTERCARD's `[LIMIT limit]` from args[start]: the limit (0: none),
    or the error reply."""
    limit = 0
    j = start
    while j < len(args):
        if keyword(args[j]) == b"limit" and j + 1 < len(args):
            parsed = parse_strict_int(args[j + 1])
            if parsed is None or parsed < 0:
                return error("ERR LIMIT can't be negative")
            limit = parsed
            j += 2
        else:
            return SYNTAX
    return limit


class ScanOptions:
    """SCAN's and HSCAN's COUNT, MATCH (and SCAN's TYPE), read as Redis reads them."""

    __slots__ = ("count", "match", "type_name")

    def __init__(self) -> None:
        self.count = 10
        self.match: Callable[[bytes], bool] | None = None
        self.type_name: bytes | None = None


def scan_options(args: list[bytes], start: int, with_type: bool) -> ScanOptions | bytes:
    """The options from args[start:], or the error reply refusing them."""
    options = ScanOptions()
    i = start
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            return SYNTAX
        if option == b"COUNT":
            parsed = parse_strict_int(args[i + 1])
            if parsed is None:
                return NOT_INTEGER
            if parsed < 1:
                return SYNTAX
            options.count = parsed
        elif option == b"MATCH":
            options.match = None if args[i + 1] == b"*" else compile_glob(args[i + 1])
        elif option == b"TYPE" and with_type:
            options.type_name = args[i + 1].lower()
        else:
            return SYNTAX
        i += 2
    return options
