"""One table of settings (server/config.py): every setting's option, CONFIG names and
what CONFIG SET may change come from its row, and nothing lists a setting elsewhere."""

from __future__ import annotations

import dataclasses

import pytest

from server.cli import start
from server.config import SETTINGS, Config
from server.settings import (
    REPORTED,
    Choice,
    EventClasses,
    Integer,
    MemoryAmount,
    Number,
    OutputLimits,
    Text,
    YesNo,
)
from tests.server.test_commands_inprocess import Harness
from tests.torture.test_differential import answers_beside_redis


def test_every_config_field_is_a_row_with_a_config_name():
    assert [f.name for f in dataclasses.fields(Config)] == [row.field for row in SETTINGS]
    assert all(row.names for row in SETTINGS)


def test_every_row_with_an_option_is_an_option_of_kvd_start():
    options = {opt for param in start.params for opt in param.opts}
    for row in SETTINGS:
        if row.option is not None:
            assert f"--{row.option}" in options, row.field


def _pairs(reply: bytes) -> dict[bytes, bytes]:
    import hiredis

    reader = hiredis.Reader()
    reader.feed(reply)
    flat = reader.gets()
    return dict(zip(flat[0::2], flat[1::2]))


def test_config_get_star_lists_every_setting(tmp_path):
    h = Harness(str(tmp_path / "data"))
    shown = _pairs(h("CONFIG", "GET", "*"))
    expected = {name.encode() for row in SETTINGS for name in row.names} | {
        name.encode() for name in REPORTED}
    assert set(shown) == expected
    assert shown[b"maxclients"] == b"10" and shown[b"loglevel"] == b"notice"


def _a_valid_value(row) -> bytes:
    kind = row.kind
    if isinstance(kind, YesNo):
        return b"no" if getattr(Config(), row.field) else b"yes"
    if isinstance(kind, (Integer, MemoryAmount)):
        return b"%d" % (kind.low + 1)
    if isinstance(kind, Number):
        return b"2.5"
    if isinstance(kind, Choice):
        return kind.values[-1].encode()
    if isinstance(kind, Text):
        return b"sekret"
    if isinstance(kind, EventClasses):
        return b"AKE"
    if isinstance(kind, OutputLimits):
        return b"normal 0 0 0 slave 1 2 3 pubsub 4 5 6"
    raise AssertionError(f"no value to try for {row.field}")


@pytest.mark.parametrize("row", [r for r in SETTINGS if r.mutable], ids=lambda r: r.field)
def test_each_mutable_setting_changes_and_shows_under_each_name(tmp_path, row):
    h = Harness(str(tmp_path / "data"))
    value = _a_valid_value(row)
    assert h("CONFIG", "SET", row.names[0], value) == b"+OK\r\n"
    expected = row.kind.parse(value)
    assert getattr(h.config, row.field) == expected
    shown = _pairs(h("CONFIG", "GET", row.names[0]))
    assert shown[row.names[0].encode()] == row.kind.show(expected).encode() or row.show


def test_an_immutable_setting_is_refused_as_redis_refuses_it(tmp_path):
    h = Harness(str(tmp_path / "data"))
    assert h("CONFIG", "SET", "port", "1") == (
        b"-ERR CONFIG SET failed (possibly related to argument 'port') - can't set "
        b"immutable config\r\n")
    assert h("CONFIG", "SET", "databases", "4").endswith(b"can't set immutable config\r\n")
    assert h("CONFIG", "SET", "nosuch", "1") == (
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n")
    # Redis settings kvd only reports: the value in force is accepted, any other refused
    assert h("CONFIG", "SET", "save", "") == b"+OK\r\n"
    assert h("CONFIG", "SET", "appendonly", "yes", "save", "") == b"+OK\r\n"
    assert h("CONFIG", "SET", "save", "3600 1").endswith(b"can't set immutable config\r\n")
    assert h("CONFIG", "SET", "appendonly", "no").endswith(b"can't set immutable config\r\n")


ENCODING_KNOBS = [
    (b"CONFIG", b"SET", b"hash-max-ziplist-entries", b"16"),
    (b"CONFIG", b"GET", b"hash-max-listpack-entries"),
    (b"CONFIG", b"SET", b"zset-max-listpack-value", b"1kb"),
    (b"CONFIG", b"GET", b"zset-max-ziplist-value"),
    (b"CONFIG", b"SET", b"hash-max-listpack-value", b"-1"),
    (b"CONFIG", b"SET", b"zset-max-listpack-value", b"x"),
    (b"CONFIG", b"SET", b"list-max-ziplist-size", b"-1"),
    (b"CONFIG", b"GET", b"list-max-listpack-size"),
    (b"CONFIG", b"SET", b"set-max-intset-entries", b"-1"),
    (b"CONFIG", b"SET", b"list-compress-depth", b"2"),
    (b"CONFIG", b"GET", b"list-compress-depth"),
    (b"CONFIG", b"GET", b"databases"),
]


def test_redis_encoding_knobs_are_accepted_as_redis_accepts_them(tmp_path):
    """Redis's own test suite sets them: CONFIG SET and GET answer byte for byte as Redis
    7.0 does."""
    kvd, reference = answers_beside_redis(tmp_path, ENCODING_KNOBS)
    assert kvd == reference
