"""COMMAND: the commands kvd has, described as Redis 7.0 describes them.

COMMAND INFO and COMMAND DOCS replies come from redis_commands.json: Redis's own
answers for each command kvd has (tests/tools/command_table.py regenerates it
from a redis-server), stored with their RESP3 types and encoded here in the
client's protocol. Subcommands are shown only where kvd's command table has
them (table.py: Command.subcommands), so the description is of kvd, not of Redis;
kvd's own COMPACT is described in table.py. redis-cli 7 reads
COMMAND DOCS for its hints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..glob import compile_glob
from ..resp import array, bulk, error, integer, status
from .common import SYNTAX, Command, help_reply
from .keyspecs import FLAG_ORDER, PROCEDURES, key_positions
from .table import REDIS

if TYPE_CHECKING:
    from ..connection import Connection
    from ..context import Context
    from ..resp import Resp2

_TABLE = REDIS  # Redis 7.0's descriptions (and kvd's COMPACT): see table.py

# The command table (server/commands/__init__.py fills it in once built: it includes COMMAND).
DESCRIBED: dict[bytes, Command] = {}


HELP = [
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
    "    Return a list of all commands in this server.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


def _encode(node, resp: Resp2) -> bytes:
    """A stored reply (see tests/tools/command_table.py) in the client's protocol."""
    if isinstance(node, str):
        return bulk(node.encode())
    if isinstance(node, int):
        return integer(node)
    if node is None:
        return resp.null
    kind, value = node
    if kind == "+":
        return status(value)
    parts = [_encode(item, resp) for item in value]
    if kind == "m":
        return resp.map_of(parts)
    return resp.set_of(parts) if kind == "s" else array(parts)


def _shown_subcommands(command: Command, entries: list, full_name) -> list:
    """The entries (Redis's, one per subcommand) of subcommands kvd has."""
    have = command.subcommands or {}
    return [entry for entry in entries
            if full_name(entry).split("|", 1)[1].upper().encode() in have]


def _info(command: Command):
    info = _TABLE[command.name]["info"]
    kind, fields = info
    subcommands = fields[9]
    if subcommands[1]:
        kept = _shown_subcommands(command, subcommands[1], lambda entry: entry[1][0])
        fields = [*fields[:9], [subcommands[0], kept]]
    return [kind, fields]


def _docs(command: Command):
    kind, fields = _TABLE[command.name]["docs"]
    if "subcommands" in fields[::2]:
        at = fields.index("subcommands")
        pairs = fields[at + 1][1]
        kept = [pair for name, docs in zip(pairs[::2], pairs[1::2])
                for pair in (name, docs)
                if (command.subcommands or {}).get(name.split("|", 1)[1].upper().encode())]
        fields = [*fields[:at + 1], ["m", kept], *fields[at + 2:]]
    return [kind, fields]


def _lookup(ctx: Context, name: bytes) -> tuple[Command, bytes | None] | None:
    """A command by name, or a subcommand as "container|sub" (Redis's fullname)."""
    container, _, sub = name.partition(b"|")
    command = ctx.lookup(container)
    if command is None or command.name not in _TABLE:
        return None
    if not sub:
        return command, None
    if not command.subcommands or sub.upper() not in command.subcommands:
        return None
    return command, sub.lower()


def _sub_info(command: Command, sub: bytes):
    full = f"{command.name}|{sub.decode()}"
    return next(entry for entry in _info(command)[1][9][1] if entry[1][0] == full)


def _sub_docs(command: Command, sub: bytes) -> tuple[str, object]:
    full = f"{command.name}|{sub.decode()}"
    fields = _docs(command)[1]
    pairs = fields[fields.index("subcommands") + 1][1]
    return full, pairs[pairs.index(full) + 1]


def _names_and_infos(commands: list[Command]) -> list[tuple[str, Any]]:
    """Every command and shown subcommand, by full name, with its info (COMMAND LIST)."""
    found: list[tuple[str, Any]] = []
    for c in commands:
        info = _info(c)
        found.append((c.name, info))
        found += [(entry[1][0], entry) for entry in info[1][9][1]]
    return found


def command(ctx: Context, conn: Connection, args: list) -> bytes:
    resp = conn.resp
    commands = list(DESCRIBED.values())
    if len(args) == 1:
        return array([_encode(_info(c), resp) for c in commands])
    sub = args[1].upper()
    if sub == b"COUNT":
        return integer(len(commands))
    if sub == b"INFO":
        if len(args) == 2:
            return array([_encode(_info(c), resp) for c in commands])
        replies = []
        for name in args[2:]:
            found = _lookup(ctx, name)
            if found is None:
                replies.append(resp.null)
            elif found[1] is None:
                replies.append(_encode(_info(found[0]), resp))
            else:
                replies.append(_encode(_sub_info(found[0], found[1]), resp))
        return array(replies)
    if sub == b"DOCS":
        parts: list[bytes] = []
        if len(args) == 2:
            for c in commands:
                parts += [bulk(c.name.encode()), _encode(_docs(c), resp)]
        for name in args[2:]:
            found = _lookup(ctx, name)
            if found is None:
                continue
            if found[1] is None:
                parts += [bulk(found[0].name.encode()), _encode(_docs(found[0]), resp)]
            else:
                full, docs = _sub_docs(found[0], found[1])
                parts += [bulk(full.encode()), _encode(docs, resp)]
        return resp.map_of(parts)
    if sub == b"LIST":
        return _list(commands, args)
    if sub in (b"GETKEYS", b"GETKEYSANDFLAGS"):
        return _getkeys(ctx, conn, args[2:], with_flags=sub == b"GETKEYSANDFLAGS")
    return help_reply("COMMAND", HELP)  # HELP: the gate let no other subcommand through


def _getkeys(ctx: Context, conn: Connection, line: list[bytes], with_flags: bool) -> bytes:
    """COMMAND GETKEYS / GETKEYSANDFLAGS command [arg ...] (Redis's getKeysSubcommandImpl)."""
    command = ctx.lookup(line[0])
    if command is None or command.name not in _TABLE:
        return error("ERR Invalid command specified")
    fields = _info(command)[1]
    if command.subcommands and len(line) > 1:
        full = f"{command.name}|{line[1].decode(errors='replace').lower()}"
        entry = next((e for e in fields[9][1] if e[1][0] == full), None)
        if entry is None:
            return error("ERR Invalid command specified")
        fields = entry[1]
    name, arity, specs = fields[0], fields[1], fields[8]
    procedure = PROCEDURES.get(name)
    if not specs[1] and procedure is None:
        return error("ERR The command has no key arguments")
    if (arity > 0 and arity != len(line)) or len(line) < -arity:
        return error("ERR Invalid number of arguments specified for command")
    found = key_positions(specs, line)
    if found is None:
        found = procedure(line) if procedure is not None else []
    if not found:
        if ["+", "no_mandatory_keys"] in fields[2][1]:
            return array([])
        return error("ERR Invalid arguments specified for command")
    if not with_flags:
        return array([bulk(line[at]) for at, _ in found])
    return array([array([bulk(line[at]), conn.resp.set_of(
        [status(flag) for flag in FLAG_ORDER if flag in flags])]) for at, flags in found])


def _list(commands: list[Command], args: list) -> bytes:
    """COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: full names,
    subcommands included."""
    entries = _names_and_infos(commands)
    if len(args) == 2:
        return array([bulk(name.encode()) for name, _ in entries])
    if len(args) != 5 or args[2].lower() != b"filterby":
        return SYNTAX
    kind, value = args[3].lower(), args[4]
    if kind == b"module":
        return array([])  # kvd has no modules
    if kind == b"aclcat":
        category = ["+", "@" + value.decode(errors="replace").lower()]
        return array([bulk(name.encode()) for name, info in entries if category in info[1][6][1]])
    if kind == b"pattern":
        match = compile_glob(value, nocase=True)
        return array([bulk(name.encode()) for name, _ in entries if match(name.encode())])
    return SYNTAX
