"""The clients: accepting them, reading what they send and running it through the gate,
the output cap, sending the replies after the pass's group commit, and closing.

One pass of the loop reads each readable connection once (`on_client`), runs what was
read through the gate (dispatch.py), and, once every readable connection was served,
`commit_and_reply` makes the pass's writes durable (one flush) and only then sends the
pass's replies -- one `send` per connection; what the kernel does not take waits in
`conn.out`. A client owed more than --max-output-buffer is not read until it reads
(backpressure), and the gate stops running its requests once a reply passes that cap
(they wait in `conn.deferred` and run first in the pass after the client has read
everything: `run_deferred`).
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from collections.abc import Callable, Collection, Iterable
from functools import partial

from .blocking import BlockedClients
from .commit import GroupCommit
from .config import Config
from .connection import REPLY_SKIP, Connection
from .context import Auth
from .dispatch import OUT_OF_MEMORY
from .eventloop import READ, WRITE, EventLoop
from .listeners import Listener
from .monitor import Monitors
from .protocol import ProtocolError, RequestParser
from .pubsub import PubSub
from .stats import Stats
from .transaction import Watches

log = logging.getLogger("kvd.server")

# Below malloc's mmap threshold: recv() allocates its whole buffer first, and
# a larger one costs an mmap and a munmap on every call.
RECV_SIZE = 64 * 1024
MAX_CLIENTS = b"-ERR max number of clients reached\r\n"
ACCEPT_PAUSE_S = 0.1
FD_RESERVE = 64  # descriptors kept for the store, the log, pipes and a compaction

Run = Callable[..., list]  # the gate: (conn, requests, busy=, admitted=) -> requests kept back


class Network:
    def __init__(self, config: Config, loop: EventLoop, stats: Stats, auth: Auth,
                 listeners: list[Listener], run: Run, commit: GroupCommit,
                 monitors: Monitors, watches: Watches, blocking: BlockedClients,
                 pubsub: PubSub) -> None:
        self.config = config
        self.loop = loop
        self.stats = stats
        self.auth = auth
        self.listeners = listeners
        self.run = run
        self.commit = commit
        self.monitors = monitors
        self.watches = watches
        self.blocking = blocking
        blocking.wake = self.wake
        blocking.timers = loop.timers
        self.pubsub = pubsub
        pubsub.deliver = self.deliver
        self.clients: dict[int, Connection] = {}
        self.max_clients = config.max_clients  # lowered when descriptors are short
        self.accepting = False
        # Connections read (or fed by MONITOR) this pass: their replies go out after the
        # pass's group commit.
        self.touched: set[Connection] = set()
        # Connections whose deferred requests can run: their client read all it was owed.
        self.ready: set[Connection] = set()
        self.now = 0.0  # the monotonic time of the current pass (set by the loop)
        # While a script is busy (serve_while_busy): the connections left alone.
        self.busy_skip: Collection[Connection] | None = None
        # No argument can be stored above the larger size limit (Redis's proto-max-bulk-len
        # is kvd's max-value-size): a longer one refuses its request at its header, and is
        # thrown away as it arrives rather than held (protocol.py's Refused).
        self._max_bulk = max(config.max_value_size, config.max_key_size)
        self._bulk_limit = ("--max-value-size" if config.max_value_size >= config.max_key_size
                            else "--max-key-size")

    # -- accepting ----------------------------------------------------------------------

    def resume_accepting(self) -> None:
        if not self.accepting:
            self.accepting = True
            for listener in self.listeners:
                self.loop.watch(listener.sock, READ, partial(self._accept, listener))

    def stop_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            for listener in self.listeners:
                self.loop.unwatch(listener.sock)

    def close_listeners(self) -> None:
        self.stop_accepting()
        self.loop.timers.cancel("accept")
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()

    def _pause_accepting(self) -> None:
        self.stop_accepting()
        self.loop.timers.set("accept", time.monotonic() + ACCEPT_PAUSE_S,
                             lambda now: self.resume_accepting())

    def fit_clients_to_descriptors(self, reserve: int) -> None:
        """Like Redis: raise the descriptor limit as far as allowed, and if it is still
        too low for --max-clients (with `reserve` for the store), serve fewer clients
        rather than fail at accept(). A client over the limit is then refused with an
        error instead of left hanging in the kernel's backlog."""
        self.max_clients = self.config.max_clients
        reserve += FD_RESERVE
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.config.max_clients + reserve
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
        if soft != resource.RLIM_INFINITY and soft - reserve < self.config.max_clients:
            self.max_clients = max(1, soft - reserve)
            log.warning("only %d file descriptors are allowed (ulimit -n): serving at most %d "
                        "clients instead of --max-clients %d", soft, self.max_clients,
                        self.config.max_clients)

    def _accept(self, listener: Listener, ready: int = READ) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept connections: %s; pausing accepts for %.1f s",
                                exc.strerror, ACCEPT_PAUSE_S)
                    self._pause_accepting()
                    return
                raise
            self.stats.connections_received += 1
            if len(self.clients) >= self.max_clients:
                self.stats.rejected_connections += 1
                try:
                    sock.send(MAX_CLIENTS)
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            if listener.kind == "tcp":
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                where = f"{addr[0]}:{addr[1]}"
            else:
                where = f"{listener.path}:0"
            conn = Connection(
                sock, where, listener.kind,
                RequestParser(self._max_bulk, self.config.max_request_size,
                              unauthenticated=self.auth.required, bulk_limit=self._bulk_limit),
            )
            conn.callback = partial(self._on_client, conn)
            self.clients[conn.fd] = conn
            self.loop.watch(sock, READ, conn.callback)

    # -- reading and running ------------------------------------------------------------

    def _on_client(self, conn: Connection, ready: int) -> None:
        if self.clients.get(conn.fd) is not conn:
            return  # closed earlier in this pass
        if self.busy_skip is not None and conn in self.busy_skip:
            return
        if ready & READ:
            self._on_readable(conn)
        if ready & WRITE and self.clients.get(conn.fd) is conn:
            self.send(conn)

    def _on_readable(self, conn: Connection) -> None:
        if conn.deferred:
            return  # what was read already runs first (this pass or the next)
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(conn)
            return
        if not data:  # EOF: close once the replies already owed are sent (half-close)
            conn.closing = True
            if conn.replies:
                return  # this pass's replies: sent when it commits, then send() closes
            if conn.out:
                self._set_events(conn, reading=False)
            else:
                self.close(conn)
            return
        self.stats.net_input_bytes += len(data)
        conn.last_active = self.now
        if conn.closing:
            return  # said goodbye already: discard until EOF
        self.touched.add(conn)
        self._serve_input(conn, data)

    def _serve_input(self, conn: Connection, data: bytes) -> None:
        """Parse what was read and run the requests; those the output cap keeps back wait
        in `conn.deferred` (and nothing more is read until they have run)."""
        parser = conn.parser
        run = self.run
        busy = self.busy_skip is not None
        while True:
            try:
                requests = parser.feed(data)
            except ProtocolError as exc:
                rest = run(conn, exc.requests, busy)
                while rest and not conn.closing:  # the error comes after them all: no cap
                    rest = run(conn, rest, busy)
                if conn.closing:
                    return  # a QUIT came first: Redis reads no further, so neither do we
                self.stats.protocol_errors += 1
                log.info("%s: protocol error: %s", conn.describe(), exc)
                conn.replies.append(exc.reply)
                conn.closing = True  # closed by send() once the error reply is out
                return
            if requests:
                conn.deferred = run(conn, requests, busy)
                if conn.deferred:
                    return
            if not parser.held_back or conn.closing:
                return
            data = b""  # before AUTH: one request at a time (see RequestParser)

    def run_deferred(self) -> None:
        """Run the requests the output cap kept back, of the clients that have read."""
        ready, self.ready = self.ready, set()
        for conn in ready:
            if self.clients.get(conn.fd) is not conn or not conn.deferred or conn.paused:
                continue
            self.touched.add(conn)
            requests, conn.deferred = conn.deferred, []
            conn.deferred = self.run(conn, requests, admitted=True)
            if not conn.deferred and conn.parser.held_back and not conn.closing:
                self._serve_input(conn, b"")

    def serve_while_busy(self, caller: Connection, events: list) -> None:
        """One pass from inside a script past the busy threshold (Redis's
        processEventsWhileBlocked): `events` (what is ready now) are acted on in busy
        mode -- the gate answers -BUSY to all but what may run while a script is busy --
        and the replies go out at once. The caller, and clients whose replies of the
        current pass still wait for its group commit, are left unread until the script
        ends. Nothing written is answered here (no write runs while a script is busy);
        the replies of the current pass that wait only for the script go out too: if
        nothing was written before it in this pass, they answered reads of durable
        data."""
        outer, self.touched = self.touched, set()
        if not self.commit.dirty:
            for conn in [c for c in outer if c is not caller and not c.write_slots]:
                outer.discard(conn)
                self.touched.add(conn)
        self.busy_skip = outer | {caller}
        try:
            for callback, ready in events:
                callback(ready)
            self.reply_to(self.take_touched())
        finally:
            self.busy_skip = None
            self.touched = outer

    def wake(self, conn: Connection, reply: bytes, written: bool) -> None:
        """A blocked client stops waiting (blocking.py): its reply goes out with this pass
        (after the group commit, if `written`), and its held requests run next."""
        if self.clients.get(conn.fd) is not conn:
            return
        if written:
            conn.write_slots.append(len(conn.replies))
        if conn.muted:  # CLIENT REPLY OFF, or SKIP before the blocking command
            reply = b""
            if conn.muted == REPLY_SKIP:
                conn.muted = ""
        conn.replies.append(reply)
        self.touched.add(conn)
        self.ready.add(conn)

    def deliver(self, conn: Connection, message: bytes) -> None:
        """A pub/sub message for a subscriber: it goes out with this pass."""
        if self.clients.get(conn.fd) is conn:
            conn.replies.append(message)
            self.touched.add(conn)

    # -- replying -----------------------------------------------------------------------

    def take_touched(self) -> set[Connection]:
        """The connections with replies this pass (monitors fed included), and a new set."""
        touched, self.touched = self.touched, set()
        if self.monitors.fed:
            touched |= self.monitors.fed
            self.monitors.fed.clear()
        return touched

    def commit_and_reply(self) -> None:
        """Group commit for the pass, then send every reply of the pass."""
        touched = self.take_touched()  # (send() may close, and discard, any of them)
        self.commit.commit(touched)
        self.reply_to(touched)

    def reply_to(self, touched: set[Connection]) -> None:
        """Send the pass's replies of these connections (after their commit)."""
        clients = self.clients
        for conn in touched:
            if conn.write_slots:
                conn.write_slots.clear()
            if clients.get(conn.fd) is not conn:
                conn.replies.clear()
                continue
            replies = conn.replies
            if not replies:
                self.send(conn)
                continue
            try:
                data = replies[0] if len(replies) == 1 else b"".join(replies)
            except MemoryError:
                self._out_of_memory(conn)
                continue
            replies.clear()
            if conn.out or conn.writing or conn.closing or conn.draining:
                conn.out += data
                self.send(conn)
            else:
                self._send_replies(conn, data)
            if conn.deferred and not conn.out and not conn.paused and \
                    clients.get(conn.fd) is conn:
                self.ready.add(conn)  # it took everything: what was kept back runs next

    def _out_of_memory(self, conn: Connection) -> None:
        """The replies of one client could not be put together: that client is told and
        closed; everyone else goes on."""
        log.error("%s: out of memory joining %d replies; closing the connection",
                  conn.describe(), len(conn.replies))
        conn.replies.clear()
        conn.deferred = []
        conn.out = bytearray(OUT_OF_MEMORY)
        conn.closing = True
        self.send(conn)

    def _send_replies(self, conn: Connection, data: bytes) -> None:
        """The common case of `send`: nothing was queued before and the connection
        stays as it is, so the replies go straight to the kernel -- no copy into
        `conn.out` -- and only what it did not take is queued."""
        sent = self._send_once(conn, data)
        if sent is not None and sent < len(data):
            conn.out += memoryview(data)[sent:]
            self.send(conn)  # watches for writability, stops reading if too much is owed

    def _send_once(self, conn: Connection, data: bytes | bytearray) -> int | None:
        """One send(): the bytes the kernel took, or None if the connection failed
        (it is closed then)."""
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self.close(conn)
            return None
        self.stats.net_output_bytes += sent
        return sent

    def send(self, conn: Connection) -> None:
        out = conn.out
        if out:
            sent = self._send_once(conn, out)
            if sent is None:
                return
            del out[:sent]
        if out:
            reason = self._past_limits(conn, len(out))
            if reason is not None:
                # Other clients' commands (or messages) keep coming: a monitor or subscriber
                # that does not keep up is dropped (as Redis's output buffer limits drop
                # it), never a memory leak.
                log.warning("%s: %s client dropped: %d bytes unread (%s)", conn.describe(),
                            "MONITOR" if conn in self.monitors.clients else
                            "pub/sub" if conn.subscriptions else "normal", len(out), reason)
                self.close(conn)
                return
            # Backpressure: stop reading from a client that does not read its replies.
            over = len(out) > self.config.max_output_buffer
            reading = conn.reading and not over and not conn.paused
            self._set_events(conn, reading=reading, writing=True)
            return
        if conn.closing:
            self.close(conn)
            return
        if conn.draining and self.close_if_idle(conn):
            return
        self._set_events(conn, reading=not conn.paused, writing=False)
        if conn.deferred and not conn.paused:
            self.ready.add(conn)  # the client has read all it was owed

    def _past_limits(self, conn: Connection, owed: int) -> str | None:
        """Why a client that owes `owed` bytes must go, or None: a monitor past
        --max-output-buffer; a subscriber (or, if limits are set for it, a normal client)
        past its class's client-output-buffer-limit -- the hard one at once, the soft one
        once it has lasted its seconds (Redis's checkClientOutputBufferLimits)."""
        if conn in self.monitors.clients:
            return "--max-output-buffer" if owed > self.config.max_output_buffer else None
        limits = self.config.client_output_buffer_limit
        name, hard, soft, seconds = limits[2] if conn.subscriptions else limits[0]
        if hard and owed >= hard:
            return f"client-output-buffer-limit {name} hard limit {hard}"
        if soft and owed >= soft:
            if not conn.over_soft_since:
                conn.over_soft_since = self.now or time.monotonic()
            elif (self.now or time.monotonic()) - conn.over_soft_since > seconds:
                return f"client-output-buffer-limit {name} soft limit {soft} for {seconds} s"
        else:
            conn.over_soft_since = 0.0
        return None

    def _set_events(self, conn: Connection, reading: bool | None = None,
                    writing: bool | None = None) -> None:
        reading = conn.reading if reading is None else reading
        writing = conn.writing if writing is None else writing
        if reading == conn.reading and writing == conn.writing:
            return
        conn.reading, conn.writing = reading, writing
        events = (READ if reading else 0) | (WRITE if writing else 0)
        if events:
            self.loop.watch(conn.sock, events, conn.callback)
        elif conn.paused:  # (what it sends meanwhile waits in the kernel)
            self.loop.unwatch(conn.sock)
        else:
            self.close(conn)

    def resume(self, held: Iterable[Connection]) -> None:
        """A CLIENT PAUSE ended (pause.py): the clients it held are read again and their
        waiting requests run next pass."""
        for conn in held:
            if self.clients.get(conn.fd) is not conn:
                continue  # closed meanwhile
            self._set_events(conn, reading=not conn.closing)
            if conn.deferred:
                self.ready.add(conn)

    # -- closing ------------------------------------------------------------------------

    def close_if_idle(self, conn: Connection) -> bool:
        """Draining: close a connection that is owed nothing and has sent nothing more.

        Closing a socket with unread input makes TCP reset the connection,
        which can destroy replies still in flight; so a connection with input
        waiting is left for the loop to read (and refuse) first.
        """
        if (conn.out or conn.replies or conn.deferred or conn.parser.pending
                or conn.tx.queued is not None):
            return False  # (a client inside MULTI is owed the answer to its EXEC)
        try:
            waiting = conn.sock.recv(1, socket.MSG_PEEK)
        except OSError:  # including BlockingIOError: nothing waiting
            waiting = b""
        if waiting:
            return False
        self.close(conn)
        return True

    def close(self, conn: Connection) -> None:
        if self.clients.get(conn.fd) is not conn:
            return
        del self.clients[conn.fd]
        self.touched.discard(conn)
        self.ready.discard(conn)
        if conn.blocked:
            self.blocking.forget(conn)
        if conn.subscriptions:
            self.pubsub.forget(conn)
        self.monitors.discard(conn)
        self.watches.unwatch_all(conn.tx)
        self.loop.unwatch(conn.sock)
        conn.sock.close()

    def begin_drain(self) -> None:
        """A shutdown began: every connection is draining; blocked clients get their
        timeout reply; those idle are closed."""
        self.blocking.time_out_all()
        for conn in list(self.clients.values()):
            conn.draining = True
            self.close_if_idle(conn)

    def close_idle(self, now: float, timeout: float) -> int:
        """Close the clients that sent nothing for `timeout` seconds (Redis's `timeout`),
        but those that wait for the server rather than the other way round: a MONITOR,
        one held by CLIENT PAUSE, one owed replies it has not read. How many."""
        idle = [conn for conn in self.clients.values()
                if now - conn.last_active > timeout and not conn.paused and not conn.out
                and not conn.deferred and not conn.blocked and conn not in self.monitors.clients]
        for conn in idle:
            log.info("%s: closed after %d s idle (timeout)", conn.describe(),
                     now - conn.last_active)
            self.close(conn)
        return len(idle)

    def close_all(self) -> None:
        for conn in list(self.clients.values()):
            self.close(conn)
