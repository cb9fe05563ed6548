"""The exceptions of the server, one per kind of failure a caller acts on."""

from __future__ import annotations


class StartupError(Exception):
    """The server cannot start; the message is for the user (`kvd start` prints it)."""


class CommandError(Exception):
    """A command refuses a request: `reply` is the error reply to send (Redis's text).

    Raised where the refusal is found (a key or value over its limit is found
    in the keyspace), turned into the reply by the gate; nothing was written.
    """

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply.decode(errors="replace").strip())
        self.reply = reply
