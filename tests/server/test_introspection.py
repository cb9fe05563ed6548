"""COMMAND describes exactly the commands kvd has, as Redis 7.0 describes them (the bytes are
compared with redis-server by tests/torture/test_differential.py)."""

from __future__ import annotations

import pytest

from server.commands import COMMANDS
from server.commands.introspection import _TABLE, _docs, _info
from server.commands.table import REDIS as REDIS_TABLE
from tests.kvd_process import RawConnection, kvd_beside_redis


def test_every_command_is_described_with_its_own_arity():
    assert {name.decode() for name in COMMANDS} <= set(_TABLE)
    for command in COMMANDS.values():
        info = _info(command)[1]
        assert info[0] == command.name and info[1] == command.arity, command.name
        docs = dict(zip(*[iter(_docs(command)[1])] * 2))
        assert docs["summary"] and docs["group"], command.name


def test_every_commands_arity_and_flags_are_redis_7s():
    """The table takes them from Redis's description; this holds the overrides to what is
    kvd's own (COMPACT) or newer than Redis 7.0 (CLIENT SETINFO), and to the flags Redis
    has but its COMMAND INFO does not show (PUBLISH's may_replicate)."""
    unshown = {"publish": {"may_replicate"}, "spublish": {"may_replicate"}}
    def redis(name: str) -> tuple[int, frozenset] | None:
        container, _, sub = name.partition("|")
        info = REDIS_TABLE.get(container, {}).get("info", [None, [None] * 10])[1]
        if sub:
            info = next((e[1] for e in info[9][1] if e[1][0] == name), None)
        if info is None or info[0] is None:
            return None
        return info[1], frozenset(flag for _, flag in info[2][1])

    checked = 0
    for command in COMMANDS.values():
        for c in [command, *(command.subcommands or {}).values()]:
            expected = redis(c.name)
            if c.name in ("compact", "client|setinfo"):
                assert expected is None or c.name == "compact"
                continue
            assert expected == (c.arity, c.flags - unshown.get(c.name, set())), c.name
            checked += 1
    assert checked > 100


def test_containers_show_only_the_subcommands_kvd_has():
    for command in COMMANDS.values():
        if not command.subcommands:
            continue
        shown = {entry[1][0].split("|")[1].upper().encode(): entry[1][1]
                 for entry in _info(command)[1][9][1]}
        # all of kvd's, with kvd's arity; CLIENT SETINFO is newer than Redis 7.0's table
        assert shown == {sub: sub_command.arity for sub, sub_command in command.subcommands.items()
                         if (command.name, sub) != ("client", b"SETINFO")}, command.name


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_reads_the_command_table(shared_kvd, protocol):
    client = shared_kvd.client(protocol=protocol)
    table = client.command()
    assert len(table) == len(COMMANDS) == client.command_count()
    assert table["set"]["arity"] == -3 and "write" in {
        f.decode() if isinstance(f, bytes) else f for f in table["set"]["flags"]}
    docs = client.execute_command("COMMAND DOCS", "get")  # redis-cli 7 reads these for hints
    assert docs
    listed = {name.decode() if isinstance(name, bytes) else name
              for name in client.command_list()}
    assert "config|get" in listed and "get" in listed and "config|rewrite" in listed
    assert "client|kill" in listed and "client|tracking" not in listed


GETKEYS = [  # command lines whose keys COMMAND GETKEYS finds as Redis does
    "get k", "set k v GET", "mset a 1 b 2", "sort abc store def", "sort_ro abc",
    "sort abc store invalid store stillbad store def", "sort abc by w get x limit 0 1 store d",
    "fcall test 1 x foo", "fcall_ro test 1 x foo", "fcall f 0", "eval x 0", "eval x 2 a b c",
    "zunionstore d 2 a b WEIGHTS 1 2", "zunionstore d 0", "zinterstore d 0 a",
    "migrate h p '' 0 5 KEYS a b c", "migrate h p k 0 5", "lmpop 2 a b LEFT",
    "blmpop 0 2 a b LEFT", "ping", "nosuch a", "get", "object encoding k", "config get x",
    "xadd s * f v", "xrange s - +", "lmove a b left right", "rename a b", "bitop and d a b",
    "bitfield k GET u8 0", "bitfield k SET u8 0 1", "set k v",
]


def test_command_getkeys_and_flags_as_redis(tmp_path):
    with kvd_beside_redis(tmp_path, tcp=True) as (kvd, reference):
        seen = []
        for address, protocol in ((kvd.socket, 2), (("127.0.0.1", reference.port), 2),
                                  (kvd.socket, 3), (("127.0.0.1", reference.port), 3)):
            connection = RawConnection(address, protocol)
            try:
                replies = []
                for line in GETKEYS:
                    args = [b"" if word == "''" else word.encode() for word in line.split()]
                    replies.append(connection.call(b"COMMAND", b"GETKEYS", *args))
                    replies.append(connection.call(b"COMMAND", b"GETKEYSANDFLAGS", *args))
                seen.append(replies)
            finally:
                connection.close()
    lines = [text for text in GETKEYS for _ in (1, 2)]
    for line, ours, theirs in [*zip(lines, seen[0], seen[1]), *zip(lines, seen[2], seen[3])]:
        assert ours == theirs, line
