"""Fixtures shared by the integration tests: real kvd processes that always get stopped."""

from __future__ import annotations

import pytest

from tests.kvd_process import Daemon, Foreground


@pytest.fixture
def make_daemon(tmp_path):
    """make_daemon(*kvd_start_args, tcp=False, subdir="srv") -> a started Daemon."""
    started: list = []

    def make(*args: str, tcp: bool = False, subdir: str = "srv", start: bool = True) -> Daemon:
        daemon = Daemon(tmp_path / subdir, list(args), tcp)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        daemon.cleanup()


@pytest.fixture
def kvd(make_daemon) -> Daemon:
    return make_daemon()


@pytest.fixture
def make_foreground(tmp_path):
    started: list = []

    def make(*args: str, tcp: bool = False, subdir: str = "fg", start: bool = True) -> Foreground:
        server = Foreground(tmp_path / subdir, list(args), tcp)
        started.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture(scope="module")
def shared_kvd(tmp_path_factory) -> Daemon:
    """One daemon for a whole module of tests that do not disturb each other."""
    daemon = Daemon(tmp_path_factory.mktemp("shared"), [], tcp=True)
    daemon.start()
    yield daemon
    daemon.cleanup()
