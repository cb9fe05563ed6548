"""Fixtures shared by the integration tests: real kvd processes that always get stopped."""

from __future__ import annotations

import subprocess

import pytest

from tests.kvd_process import Daemon, Foreground, kvd_beside_redis, require_tool


def _servers(kind, tmp_path, default_subdir: str):
    """make(*kvd_start_args, tcp=False, subdir=..., start=True) -> a server of `kind`;
    every server made is cleaned up when the test ends."""
    started: list = []

    def make(*args: str, tcp: bool = False, subdir: str = default_subdir, start: bool = True):
        server = kind(tmp_path / subdir, list(args), tcp)
        started.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture
def make_daemon(tmp_path):
    """make_daemon(*kvd_start_args, tcp=False, subdir="srv") -> a started Daemon."""
    yield from _servers(Daemon, tmp_path, "srv")


@pytest.fixture
def kvd(make_daemon) -> Daemon:
    return make_daemon()


@pytest.fixture
def make_foreground(tmp_path):
    """make_foreground(*kvd_start_args, ...) -> a `kvd start --foreground` child."""
    yield from _servers(Foreground, tmp_path, "fg")


@pytest.fixture(scope="module")
def shared_kvd(tmp_path_factory) -> Daemon:
    """One daemon for a whole module of tests that do not disturb each other."""
    daemon = Daemon(tmp_path_factory.mktemp("shared"), [], tcp=True)
    daemon.start()
    yield daemon
    daemon.cleanup()


@pytest.fixture
def sleeper():
    """An unrelated live process whose PID a stale PID file may name."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="session")
def redis_cli() -> str:
    return require_tool("redis-cli", "redis-tools")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A kvd and a redis-server on loopback TCP, shared by a module's byte-for-byte
    comparisons (each test leaves both as it found them)."""
    with kvd_beside_redis(tmp_path_factory.mktemp("pair"), tcp=True) as servers:
        yield servers
