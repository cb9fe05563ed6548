"""CLIENT PAUSE: the clients' commands wait, as in Redis 7.0 (pauseClients, processCommand).

`WRITE` holds what may change the data -- commands Redis flags write or may-replicate,
scripts that may write (no `no-writes` shebang), an EXEC whose queue holds one -- and
`ALL` holds every command. A held request, and whatever its client sent after it,
waits in the connection's `deferred` list (as the output cap keeps requests back) and
runs once the pause ends, by CLIENT UNPAUSE, at its deadline or when a shutdown
begins. A pause already in effect is only ever lengthened or made stricter.

While paused, keys whose time has passed read as missing but are not deleted (no
write reaches the log), and active expiry waits: the point of a pause is a dataset
that does not change, e.g. while a replica catches up or a copy is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .connection import Connection
    from .databases import Databases
    from .timers import Timers

OFF, WRITE, ALL = 0, 1, 2


class _Flagged(Protocol):
    @property
    def flags(self) -> frozenset[str]: ...


class Command(Protocol):
    """What a pause reads of a command (commands.Command; the commands import the context,
    which holds the pause, so this module cannot import them)."""

    @property
    def name(self) -> str: ...

    def resolve(self, args: list[bytes]) -> _Flagged: ...

_MAY_CHANGE = frozenset({"write", "may_replicate"})
_SCRIPTS = frozenset({"eval", "evalsha", "fcall"})  # (the _ro forms never write)


class ClientPause:
    def __init__(self, timers: Timers, keyspace: Databases,
                 resume: Callable[[Iterable[Connection]], None],
                 may_write: Callable[[list[bytes]], bool]) -> None:
        self.keyspace = keyspace
        self.mode = OFF
        self.until = 0.0  # monotonic deadline
        self.held: dict[Connection, None] = {}  # the clients waiting, in order
        self._timers = timers
        self._resume = resume  # runs the held clients' requests (the network's ready set)
        self._may_write = may_write  # whether a script (EVAL/EVALSHA/FCALL args) may write

    def pause(self, mode: int, until: float) -> None:
        """Pause (or keep pausing) until `until`, the stricter of the modes."""
        if self.mode == OFF:
            self.mode, self.until = mode, until
        else:
            self.mode, self.until = max(self.mode, mode), max(self.until, until)
        self.keyspace.keep_expired = True
        self._timers.set("client-pause", self.until, self._deadline)

    def unpause(self) -> None:
        """CLIENT UNPAUSE, the deadline, or a shutdown: the held clients run."""
        self._timers.cancel("client-pause")
        self.mode = OFF
        self.keyspace.keep_expired = False
        held, self.held = list(self.held), {}
        for conn in held:
            conn.paused = False
        self._resume(held)

    def _deadline(self, now: float) -> None:
        self.unpause()

    def holds(self, command: Command, args: list[bytes], queued: list | None) -> bool:
        """Whether the command `args` waits (`queued`: an EXEC's transaction)."""
        if self.mode == ALL:
            return True
        name = command.name
        if name == "exec":
            return queued is not None and any(
                self._changes(queued_command, queued_args)
                for queued_command, queued_args in queued)
        return self._changes(command, args)

    def _changes(self, command: Command, args: list[bytes]) -> bool:
        if command.name in _SCRIPTS:
            return self._may_write(args)
        return bool(command.resolve(args).flags & _MAY_CHANGE)

    def hold(self, conn: Connection) -> None:
        conn.paused = True
        self.held[conn] = None

    def forget(self, conn: Connection) -> None:
        """A held client closed (or was killed)."""
        self.held.pop(conn, None)
