"""What a command may use: the keyspace, the counters, the settings, and a narrow handle
on the server (shutdown, compaction, the figures INFO reports) -- never the server itself.

Commands import this module and the loop implements `Control`, so nothing
in the command modules imports the loop (tests/test_architecture.py holds
that), and a command can run in-process against a keyspace on a temporary
store, with a stand-in Control (tests/server/test_commands_inprocess.py).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config
from .keyspace import Keyspace
from .latency import LatencyMonitor
from .monitor import Monitors
from .pause import ClientPause
from .pubsub import PubSub
from .scripting import Scripts
from .slowlog import SlowLog
from .stats import Stats

if TYPE_CHECKING:
    from .connection import Connection
    from .databases import Databases
    from .functions import Functions
    from .scripting import Run

REDIS_VERSION = "7.0.0"  # the Redis whose command semantics kvd follows


class Control(Protocol):
    """The server as commands see it."""

    def request_shutdown(self, reason: str) -> None:
        """Begin the graceful drain after this pass's replies."""

    def request_compaction(self, source: str) -> None:
        """Compact in the background (as SIGUSR1)."""

    def connections(self) -> Collection[Connection]:
        """The connected clients (CLIENT LIST)."""

    def kill(self, conn: Connection) -> None:
        """Close another client's connection now (CLIENT KILL)."""

    def serve_while_busy(self, caller: Connection) -> None:
        """A script runs past the busy threshold: serve the other clients (-BUSY) and
        the signals once, without waiting, and return to the script."""

    def reconfigure(self, changes: dict[str, object]) -> str | None:
        """Apply CONFIG SET's changes (Config field -> new value) to the running server,
        all or none; the reason for refusing them, or None once applied."""

    def figures(self) -> dict:
        """The loop's figures for INFO and CONFIG GET: tcp_port, uptime_s, max_clients,
        write_error, compaction (a dict), ops_per_sec, longest_pass_ms, slow_passes,
        watchdog_stack_dumps."""


class Auth:
    """The one user Redis 7 has without ACLs, "default": any password when none is
    configured, else the configured one (compared in constant time)."""

    def __init__(self, password: str | None) -> None:
        self.password = password.encode() if password is not None else None

    @property
    def required(self) -> bool:
        return self.password is not None

    def check(self, username: bytes, password: bytes) -> bool:
        if username != b"default":
            return False
        return self.password is None or hmac.compare_digest(password, self.password)


def _before_the_gate(*args: object) -> Any:
    raise RuntimeError("the gate (dispatch.Dispatcher) sets this when it is built")


@dataclasses.dataclass
class Context:
    keyspace: Keyspace
    stats: Stats
    config: Config
    control: Control
    auth: Auth
    scripts: Scripts
    monitors: Monitors
    slowlog: SlowLog
    latency: LatencyMonitor
    pause: ClientPause
    # Every database; `keyspace` above is the current client's (the gate points it at
    # conn.db before running the client's commands, SELECT moves it).
    databases: Databases
    functions: Functions  # Redis 7's function libraries (FUNCTION, FCALL)
    # Set by the gate (dispatch.py): runs one command past it (EXEC runs its queue with
    # it), runs one command a script calls, finds a command by name.
    # (a Command is commands.Command, which imports this module: Any here)
    call: Callable[[Connection, Any, list], bytes] = _before_the_gate
    script_call: Callable[[Run, list], bytes] = _before_the_gate
    lookup: Callable[[bytes], Any] = _before_the_gate
    # Who listens to which channel (pubsub.py): one registry for the server
    pubsub: PubSub = dataclasses.field(default_factory=PubSub)
