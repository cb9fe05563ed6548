"""`kvctl`: the user's side of kvd -- get, put, delete, keys, ping, stats, compact,
export, import.

Talks RESP2 to the server through redis-py (client.connect) and signals the
daemon through its PID file (server.pidfile.send_signal, shared with
`kvd stop`). Every failure is one line on stderr and an exit status:

    0 ok   1 not found   2 usage   3 cannot reach the server   4 server error
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import click
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.pidfile import PidFileError, inspect, send_signal, unresponsive

from . import DEFAULT_SOCKET, connect, rdbfile, rdbimport, transfer

EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_SERVER = 1, 2, 3, 4
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Failure(Exception):
    """A failure to report as one line, with its exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Settings:
    """The global options: where the server is and how to prove who we are."""

    def __init__(self, socket: str | None, host: str | None, port: int | None, pidfile: str,
                 password: str | None, password_file: str | None,
                 directory: str | None = None, timeout: float = 10.0, db: int = 0) -> None:
        # --dir: the server's directory, where its relative socket and PID file are
        self.socket = os.path.join(directory or "", socket or DEFAULT_SOCKET)
        self.host, self.port = host, port
        self.pidfile = os.path.join(directory or "", pidfile)
        self.password, self.password_file = password, password_file
        self.timeout = timeout  # seconds for the connection and for each reply
        self.db = db  # the database to SELECT
        self._client: redis.Redis | None = None

    @property
    def tcp(self) -> bool:
        return bool(self.host or self.port)

    @property
    def where(self) -> str:
        return f"{self.host or '127.0.0.1'}:{self.port or 7379}" if self.tcp else self.socket

    def client(self) -> redis.Redis:
        if self._client is None:
            try:
                self._client = connect(
                    socket=self.socket, host=self.host, port=self.port, password=self.password,
                    password_file=self.password_file, socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout, db=self.db,
                    retry=Retry(NoBackoff(), 0),  # report failures at once; never re-send a write
                )
            except OSError as exc:
                raise Failure(f"cannot read the password file: {exc.strerror}",
                              EXIT_USAGE) from None
        return self._client


def _explain(exc: Exception, settings: Settings | None) -> Failure:
    """Turn a redis-py exception into the one line a user needs."""
    where = settings.where if settings else "the server"
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError):
        if "invalid username-password" in text or "WRONGPASS" in text:
            return Failure("wrong password", EXIT_SERVER)
        if "without any password configured" in text:
            return Failure("kvd has no password set; do not pass --password", EXIT_SERVER)
        return Failure("kvd requires a password: pass --password, --password-file or set "
                       "KVD_PASSWORD", EXIT_SERVER)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        if "No such file" in text:
            return Failure(f"cannot reach kvd: no socket at {where} (is it running here? "
                           "try `kvd status`)", EXIT_UNREACHABLE)
        if "Connection refused" in text:
            return Failure(f"cannot reach kvd at {where}: connection refused (not running?)",
                           EXIT_UNREACHABLE)
        if "Permission denied" in text:
            return Failure(f"cannot reach kvd at {where}: permission denied on the socket "
                           "(it is private to the user who started kvd)", EXIT_UNREACHABLE)
        if isinstance(exc, redis.TimeoutError) or "Timeout" in text:
            within = f" within {settings.timeout:g} s" if settings else ""
            return Failure(f"kvd at {where} did not answer{within}: {_why_silent(settings)}",
                           EXIT_UNREACHABLE)
        return Failure(f"lost the connection to kvd at {where}: {text}", EXIT_UNREACHABLE)
    if isinstance(exc, redis.ResponseError):
        return Failure(f"kvd: {text}", EXIT_SERVER)
    return Failure(f"{type(exc).__name__}: {text}", EXIT_SERVER)


def _why_silent(settings: Settings | None) -> str:
    """What the PID file says of a server that did not answer (stopped, busy or stuck)."""
    pid = None
    if settings is not None and not settings.tcp:
        try:
            state = inspect(settings.pidfile)
        except PidFileError:
            state = None
        if state is not None and state.state == "running":
            pid = state.pid
    return unresponsive(pid) + " (--timeout waits longer)"


class KvctlGroup(click.Group):
    """Runs a command and reports any failure as one line with its exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Failure as exc:
            click.echo(f"kvctl: {exc}", err=True)
            ctx.exit(exc.code)
        except redis.RedisError as exc:
            failure = _explain(exc, ctx.find_object(Settings))
            click.echo(f"kvctl: {failure}", err=True)
            ctx.exit(failure.code)
        except BrokenPipeError:  # `kvctl keys | head`: the reader has had enough
            sys.stderr.close()
            ctx.exit(0)


def _key(text: str) -> bytes:
    """A key as the bytes given on the command line (undecodable bytes included)."""
    return os.fsencode(text)


@click.group(cls=KvctlGroup, context_settings=CONTEXT)
@click.option("--dir", "directory", envvar="KVD_DIR", type=click.Path(file_okay=False),
              help="The server's directory: its kvd.sock and kvd.pid are found there "
                   "[env: KVD_DIR].")
@click.option("--socket", envvar="KVD_SOCKET", default=DEFAULT_SOCKET, show_default=True,
              help="Unix socket of the server [env: KVD_SOCKET].")
@click.option("--host", envvar="KVD_HOST", help="Connect over TCP to this host [env: KVD_HOST].")
@click.option("--port", envvar="KVD_PORT", type=click.IntRange(1, 65535),
              help="TCP port (default 7379 when --host is given) [env: KVD_PORT].")
@click.option("--pidfile", envvar="KVD_PIDFILE", default="kvd.pid", show_default=True,
              help="PID file of the daemon, for signals [env: KVD_PIDFILE].")
@click.option("--password", envvar="KVD_PASSWORD",
              help="Password, if kvd requires one [env: KVD_PASSWORD].")
@click.option("--password-file", envvar="KVD_PASSWORD_FILE", type=click.Path(dir_okay=False),
              help="File whose first line is the password [env: KVD_PASSWORD_FILE].")
@click.option("--timeout", envvar="KVD_TIMEOUT", default=10.0, show_default=True,
              type=click.FloatRange(0.1), metavar="SECONDS",
              help="Give up on a server that does not answer within SECONDS "
                   "[env: KVD_TIMEOUT].")
@click.option("-n", "--db", envvar="KVD_DB", default=0, show_default=True,
              type=click.IntRange(0), metavar="N",
              help="The database to work in, as redis-cli -n [env: KVD_DB].")
@click.version_option(package_name="kvd", message="kvctl (kvd) %(version)s")
@click.pass_context
def main(ctx: click.Context, directory, socket, host, port, pidfile, password,
         password_file, timeout, db) -> None:
    """kvctl: talk to a running kvd server.

    \b
    Examples:
      kvctl put greeting hello
      kvctl get greeting
      kvctl put photo - < photo.jpg           the value from stdin, byte for byte
      kvctl get photo > copy.jpg
      kvctl delete greeting photo
      kvctl keys 'user:*'
      kvctl stats
      kvctl compact --wait                    SIGUSR1 through kvd.pid, then follow it
      kvctl export backup.resp                every key with its TTL, as Redis commands
      kvctl import backup.resp                (redis-cli --pipe loads the same file)
      kvctl --host 10.0.0.5 --password-file pw ping
      kvctl --dir /srv/kvd get greeting       a server started in /srv/kvd (or KVD_DIR)
      kvctl --db 1 keys                       the keys of database 1 (or KVD_DB)

    \b
    Exit status: 0 ok, 1 not found, 2 usage, 3 cannot reach the server, 4 server error.
    """
    ctx.obj = Settings(socket, host, port, pidfile, password, password_file, directory,
                       timeout, db)


@main.command(context_settings=CONTEXT)
@click.argument("key")
@click.argument("value", required=False)
@click.option("--file", "path", type=click.File("rb"), help="Read the value from this file.")
@click.option("--ttl", type=click.IntRange(1), metavar="SECONDS",
              help="Expire the key after SECONDS (as SET ... EX).")
@click.pass_obj
def put(settings: Settings, key: str, value: str | None, path, ttl: int | None) -> None:
    """Set KEY to VALUE (VALUE '-' reads stdin; or --file PATH). Silent on success.

    Without --ttl the key never expires (a TTL it had is cleared, as SET does).

    \b
    Examples:
      kvctl put greeting hello
      kvctl put session:42 token --ttl 3600
      tar c dir | kvctl put backup -
      kvctl put config --file settings.json
    """
    if (value is None) == (path is None):
        raise Failure("give either VALUE (or - for stdin) or --file PATH", EXIT_USAGE)
    if path is not None:
        data = path.read()
    elif value == "-":
        data = sys.stdin.buffer.read()
    else:
        data = os.fsencode(value or "")
    settings.client().set(_key(key), data, ex=ttl)


@main.command(context_settings=CONTEXT)
@click.argument("key")
@click.pass_obj
def ttl(settings: Settings, key: str) -> None:
    """Print the seconds until KEY expires, or 'none' if it never does (exit 1 if there is
    no such key).

    \b
    Example:
      kvctl ttl session:42
    """
    seconds = settings.client().ttl(_key(key))
    if seconds == -2:
        raise Failure(f"no such key: {key}", EXIT_NOT_FOUND)
    click.echo("none" if seconds == -1 else seconds)


@main.command(context_settings=CONTEXT)
@click.argument("key")
@click.pass_obj
def get(settings: Settings, key: str) -> None:
    """Print the value of KEY, byte for byte (exit 1 if there is no such key).

    A newline is added only when stdout is a terminal.

    \b
    Example:
      kvctl get photo > photo.jpg
    """
    value = settings.client().get(_key(key))
    if value is None:
        raise Failure(f"no such key: {key}", EXIT_NOT_FOUND)
    out = sys.stdout.buffer
    out.write(value if isinstance(value, bytes) else value.encode())
    if sys.stdout.isatty():
        out.write(b"\n")
    out.flush()


@main.command(context_settings=CONTEXT)
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def delete(settings: Settings, keys: tuple[str, ...]) -> None:
    """Delete KEYS; print how many existed (exit 1 if none did).

    \b
    Example:
      kvctl delete session:1 session:2
    """
    deleted = settings.client().delete(*(_key(k) for k in keys))
    click.echo(deleted)
    if deleted == 0:
        raise Failure("none of the keys existed", EXIT_NOT_FOUND)


@main.command(context_settings=CONTEXT)
@click.argument("pattern", default="*")
@click.option("--count", default=1000, show_default=True, type=click.IntRange(1),
              help="Keys asked for per SCAN call.")
@click.option("-0", "--null", is_flag=True, help="End each key with NUL, not newline "
              "(for keys that contain newlines; pairs with xargs -0).")
@click.pass_obj
def keys(settings: Settings, pattern: str, count: int, null: bool) -> None:
    """List keys matching PATTERN (a Redis glob: * ? [abc]), streamed with SCAN.

    \b
    Examples:
      kvctl keys
      kvctl keys 'user:*' | wc -l
      kvctl keys -0 'tmp:*' | xargs -0 kvctl delete
    """
    end = b"\0" if null else b"\n"
    out = sys.stdout.buffer
    for key in settings.client().scan_iter(match=_key(pattern), count=count):
        out.write(key + end)
    out.flush()


@main.command(context_settings=CONTEXT)
@click.pass_obj
def ping(settings: Settings) -> None:
    """Check that the server answers (prints PONG)."""
    settings.client().ping()
    click.echo("PONG")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _uptime(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print all of INFO as JSON.")
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """Show the server's figures: keys, memory, live and dead bytes, compactions, clients.

    \b
    Examples:
      kvctl stats
      kvctl stats --json | jq .garbage_ratio
    """
    info = settings.client().info("everything")
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True, default=str))
        return
    last = ("never" if info["last_compaction_status"] == "none" else
            f"{info['last_compaction_status']}, {float(info['last_compaction_duration_s']):.2f} s, "
            f"{_human(info['last_compaction_reclaimed_bytes'])} reclaimed")
    running = ""
    if info["compaction_in_progress"]:
        total = info["compaction_bytes_total"] or 1
        running = f" (one running: {100 * info['compaction_bytes_done'] / total:.0f}%)"
    keyspace = info.get("db0", {})
    rows = [
        ("keys", f"{keyspace.get('keys', 0):,} ({keyspace.get('expires', 0):,} with a TTL, "
                 f"{info['expired_keys']:,} expired since start)"),
        ("memory (RSS)", _human(info["used_memory_rss"])),
        ("live data", _human(info["live_bytes"])),
        ("garbage", f"{_human(info['dead_bytes'])} ({float(info['garbage_ratio']) * 100:.1f}% of "
                    f"{_human(info['total_bytes'])})"),
        ("compactions", f"{info['compactions_completed']} done, {info['compactions_failed']} "
                        f"failed{running}"),
        ("last compaction", last),
        ("clients", f"{info['connected_clients']} connected"),
        ("uptime", _uptime(info["uptime_in_seconds"])),
        ("engine / fsync", f"{info['engine']} / {info['fsync']}"),
        ("server", f"kvd {info['kvd_version']}, PID {info['process_id']}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


@main.command(context_settings=CONTEXT)
@click.option("--wait", is_flag=True,
              help="Follow the compaction with a progress bar until it ends; exit 4 if it fails.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(0),
              help="With --wait: give up after this many seconds.")
@click.pass_obj
def compact(settings: Settings, wait: bool, timeout: float) -> None:
    """Compact the store in the background: SIGUSR1 through the PID file.

    Without a PID file (a remote server, or kvd started elsewhere) it sends
    the COMPACT command instead, and says so. A stale PID file is reported and
    nothing is signalled.

    \b
    Examples:
      kvctl compact
      kvctl compact --wait
      kvctl --host db1 --port 7379 compact --wait
    """
    client = settings.client()
    before = client.info("persistence") if wait else {}
    _request_compaction(settings, client)
    if wait:
        _follow(client, before, timeout)


def _request_compaction(settings: Settings, client: redis.Redis) -> None:
    """SIGUSR1 through the PID file when there is one and it names the server we talk
    to (over the socket or TCP); else the COMPACT command, saying why. A stale PID file
    is reported and nothing is signalled."""
    try:
        state = inspect(settings.pidfile)
    except PidFileError as exc:
        raise Failure(str(exc), EXIT_UNREACHABLE) from None
    if state.state == "stale":
        raise Failure(state.describe(), EXIT_UNREACHABLE)
    if state.state == "running":
        server_pid = _server_pid(client)
        if server_pid in (None, state.pid):  # unreachable: the PID file is all we have
            try:
                pid = send_signal(settings.pidfile, signal.SIGUSR1)
            except PidFileError as exc:
                raise Failure(str(exc), EXIT_UNREACHABLE) from None
            click.echo(f"compaction requested (SIGUSR1 to kvd PID {pid} through "
                       f"{settings.pidfile})", err=True)
            return
        why = (f"{settings.pidfile} names kvd PID {state.pid}, not the server at "
               f"{settings.where} (PID {server_pid})")
    else:
        why = f"no PID file at {settings.pidfile}"
    try:
        client.execute_command("COMPACT")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if settings.tcp:
            raise
        failure = _explain(exc, settings)
        raise Failure(f"kvd is not running ({why}); "
                      f"{str(failure).removeprefix('cannot reach kvd: ')}", failure.code) from None
    click.echo(f"{why}: compaction requested with the COMPACT command at {settings.where}",
               err=True)


def _server_pid(client: redis.Redis) -> int | None:
    """The PID of the server we talk to (INFO's process_id), or None if it cannot be
    reached."""
    try:
        return int(client.info("server")["process_id"])
    except (redis.ConnectionError, redis.TimeoutError):
        return None


# Data sets this large get a progress bar (on a terminal).
PROGRESS_KEYS, PROGRESS_BYTES = 10_000, 16 << 20


@main.command("export", context_settings=CONTEXT)
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--rdb", "as_rdb", is_flag=True,
              help="Write an RDB file (dump.rdb) that Redis 7.0 loads at start-up, not "
                   "commands.")
@click.option("--skip-corrupt", is_flag=True,
              help="Export what can be read when some keys cannot (damaged records), "
                   "naming them, instead of failing.")
@click.pass_obj
def export_(settings: Settings, path: str, as_rdb: bool, skip_corrupt: bool) -> None:
    """Write every key of every database, with its TTL, to PATH ("-" for stdout) as Redis
    commands: SELECT, then SET for a string, HSET, RPUSH, SADD or ZADD (in MULTI/EXEC) for
    a collection.

    The file is what `redis-cli --pipe` sends, so it loads into Redis as well as into
    kvd (kvctl import). With --rdb, PATH is an RDB file instead, with the function
    libraries: put it in Redis's directory as dump.rdb and start redis-server. A key that
    cannot be read (a damaged record) fails the export, naming it, and no file is left;
    with --skip-corrupt the rest is exported and the key named.

    \b
    Examples:
      kvctl export backup.resp
      kvctl export - | gzip > backup.resp.gz
      redis-cli --pipe < backup.resp            into a Redis server
      kvctl export --rdb /var/lib/redis/dump.rdb
    """
    client = settings.client()
    total = sum(db.get("keys", 0) for name, db in client.info("keyspace").items()
                if name.startswith("db"))
    out = sys.stdout.buffer if path == "-" else None
    target = path if out is None else "stdout"
    try:
        with (open(path + ".tmp", "wb") if out is None else _NoClose(out)) as f, \
                _progress(total if total >= PROGRESS_KEYS else 0, "exporting") as bar:
            if as_rdb:
                done = transfer.export_rdb(client, f, bar.update)
            else:
                done = transfer.export(client, f, bar.update)
        unreadable = "; ".join(f"{key!r}: {why}" for key, why in done.unreadable[:10])
        if len(done.unreadable) > 10:
            unreadable += f"; and {len(done.unreadable) - 10} more"
        if done.unreadable and not skip_corrupt:
            raise Failure(f"export failed: {len(done.unreadable)} keys could not be read "
                          f"({unreadable}); nothing was written. `kvctl export --skip-corrupt` "
                          "exports the rest", EXIT_SERVER)
        if out is None:
            os.replace(path + ".tmp", path)  # a failed export never leaves a half file
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror}", EXIT_USAGE) from None
    finally:
        if out is None and os.path.exists(path + ".tmp"):
            os.unlink(path + ".tmp")
    skipped = "".join(f"; left out {count} x {kind}"
                      for kind, count in sorted(done.skipped.items()))
    if done.unreadable:
        skipped += f"; SKIPPED {len(done.unreadable)} keys that could not be read ({unreadable})"
    databases = ", ".join(f"db{db}: {count}" for db, count in sorted(done.by_db.items()))
    click.echo(f"exported {done.keys} keys ({databases or 'none'}; {done.with_ttl} with a TTL) "
               f"to {target} in {done.seconds:.2f} s{skipped}", err=True)


@main.command("import", context_settings=CONTEXT)
@click.argument("path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--allow-any", is_flag=True,
              help="Run every command of the file, not only data commands.")
@click.pass_obj
def import_(settings: Settings, path: str, allow_any: bool) -> None:
    """Send every command of PATH ("-" for stdin) to the server: a file from kvctl export,
    or any file written for `redis-cli --pipe`, in the protocol or as inline lines
    (SET greeting "hello world"). Existing keys are overwritten.

    A Redis RDB file (dump.rdb, from SAVE or `redis-cli --rdb`) is imported key by key:
    every database, every type with its TTL, and the function libraries; keys already
    expired, module values and streams with consumer groups are left out and counted.
    Its checksum is checked, and the file read through, before anything is sent.

    Only data commands run: those that write keys (not FLUSHALL, FLUSHDB, SWAPDB or
    another Redis calls dangerous, nor blocking ones), RESTORE, SELECT, MULTI/EXEC/DISCARD
    and PING. Another command stops the import before it is sent (exit 2), unless
    --allow-any.

    \b
    Examples:
      kvctl import backup.resp
      gunzip -c backup.resp.gz | kvctl import -
      printf 'SET a 1\nSET b 2\n' | kvctl import -
      redis-cli -p 6379 --rdb dump.rdb && kvctl import dump.rdb
    """
    client = settings.client()
    if path != "-" and _is_rdb(path):
        _import_rdb(client, path)
        return
    try:
        source = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (with below)
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    with source:
        size = 0 if path == "-" else os.fstat(source.fileno()).st_size
        try:
            with _progress(size if size >= PROGRESS_BYTES else 0, "importing") as bar:
                done = transfer.load(client, source, bar.update, allow_any)
        except (transfer.MalformedFile, transfer.NotData) as exc:
            raise Failure(f"{path}: {exc}", EXIT_USAGE) from None
    click.echo(f"imported {done.commands - done.errors} of {done.commands} commands in "
               f"{done.seconds:.2f} s", err=True)
    if done.errors:
        for text in done.first_errors:
            click.echo(f"kvctl: refused: {text}", err=True)
        raise Failure(f"{done.errors} commands were refused", EXIT_SERVER)


def _is_rdb(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(5) == b"REDIS"
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None


def _import_rdb(client: redis.Redis, path: str) -> None:
    size = os.path.getsize(path)
    try:
        with _progress(size if size >= PROGRESS_BYTES else 0, "importing") as bar:
            done = rdbimport.load_rdb(client, path, bar.update)
    except rdbfile.RdbError as exc:
        raise Failure(str(exc), EXIT_USAGE) from None
    databases = ", ".join(f"db{db}: {count}" for db, count in sorted(done.by_db.items()))
    rate = done.keys / done.seconds if done.seconds else 0
    click.echo(f"imported {done.keys} keys ({databases or 'none'}) and {done.libraries} "
               f"function libraries in {done.seconds:.2f} s ({rate:,.0f} keys/s, "
               f"{size / 1e6 / max(done.seconds, 1e-9):.1f} MB/s)", err=True)
    left_out = [f"{done.expired} already expired"] if done.expired else []
    left_out += [f"{done.empty} empty"] if done.empty else []
    left_out += [f"{count} x {kind} (kvd has none yet)"
                 for kind, count in sorted(done.skipped.items())]
    if left_out:
        click.echo(f"left out: {', '.join(left_out)}", err=True)
    if done.errors:
        for text in done.first_errors:
            click.echo(f"kvctl: refused: {text}", err=True)
        raise Failure(f"{done.errors} keys were refused", EXIT_SERVER)


class _NoClose:
    """stdout in a `with`: written to, flushed, not closed."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc_info) -> None:
        self.stream.flush()


class _Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress(length: int, label: str):
    """A progress bar on stderr for `length` units, or nothing when length is 0."""
    if not length:
        return _Quiet()
    return click.progressbar(length=length, label=label, file=sys.stderr)


def _follow(client: redis.Redis, before: dict, timeout: float) -> None:
    """Wait for the compaction our request caused: the next one to start, or -- if one was
    already running when we asked -- the one after it (requests coalesce into that one)."""
    target = before["compactions_started"] + (2 if before["compaction_in_progress"] else 1)
    deadline = time.monotonic() + timeout
    with click.progressbar(length=1000, label="compacting", file=sys.stderr,
                           show_eta=False) as bar:
        shown = 0  # thousandths
        while True:
            info = client.info("persistence")
            if info["compactions_completed"] + info["compactions_failed"] >= target:
                bar.update(1000 - shown)
                break
            if info["compactions_started"] >= target and info["compaction_bytes_total"]:
                done = 1000 * info["compaction_bytes_done"] // info["compaction_bytes_total"]
                done = min(done, 999)
                if done > shown:
                    bar.update(done - shown)
                    shown = done
            if time.monotonic() > deadline:
                raise Failure(f"the compaction did not finish within {timeout:g} s", EXIT_SERVER)
            time.sleep(0.1)
    if info["last_compaction_status"] != "ok":
        raise Failure("the compaction failed; the data is unchanged (see the kvd log)", EXIT_SERVER)
    click.echo(f"compaction done in {float(info['last_compaction_duration_s']):.2f} s: "
               f"{_human(info['last_compaction_reclaimed_bytes'])} reclaimed "
               f"({info['last_compaction_reclaimed_bytes']} bytes)")
