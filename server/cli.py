"""The `kvd` command line: start, stop, status, check.

Every option has a KVD_* environment variable. Paths are resolved against the
directory `kvd` runs in before the daemon detaches (and changes to `/`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import NoReturn

import click

from storage import (
    ENGINES,
    FORMAT_VERSION,
    StorageError,
    engine_of,
    format_of,
    holds_data,
    open_store,
)

from .config import SETTINGS, Config, ConfigError, read_password_file
from .pidfile import (
    NotRunning,
    PidFileError,
    inspect,
    modified_ns,
    send_signal,
    unresponsive,
    wait_for_exit,
)
from .settings import (
    LONG_MAX,
    Choice,
    Integer,
    Number,
    Octal,
    OutputLimits,
    Refused,
    Setting,
    YesNo,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULTS = Config()


def _env(name: str) -> str:
    return "KVD_" + name.upper().replace("-", "_")


def _option(name: str, help: str, **kwargs):
    """A --name option with its KVD_NAME variable named in the help."""
    kwargs.setdefault("show_default", True)
    return click.option(f"--{name}", envvar=_env(name), help=f"{help} [env: {_env(name)}]",
                        **kwargs)


pidfile_option = _option("pidfile", "PID file of the daemon.", default=DEFAULTS.pidfile,
                         type=click.Path(dir_okay=False))
server_socket_option = _option("socket", "Unix socket of the server (for its figures).",
                               default=DEFAULTS.socket)
dir_option = _option("dir", "Directory the relative paths are in (kvd.pid, kvd.sock, "
                     "kvd-data, kvd.log by default); default: the current one.",
                     default=None, show_default=False, type=click.Path(file_okay=False))


def _enter(directory: str | None, create: bool = False) -> None:
    """--dir: work from that directory, so relative paths mean the same wherever kvd is
    run from."""
    if not directory:
        return
    try:
        if create:
            os.makedirs(directory, exist_ok=True)
        os.chdir(directory)
    except OSError as exc:
        _fail(f"cannot use --dir {directory}: {exc.strerror}", 2)


def _setting_option(row: Setting):
    """The `kvd start` option of a setting, from its row."""
    assert row.option is not None
    default = getattr(DEFAULTS, row.field)
    kind = row.kind
    if isinstance(kind, YesNo):
        env = _env(row.option)
        return click.option(f"--{row.option}/--no-{row.option}", envvar=env, default=default,
                            show_default=True, help=f"{row.help} [env: {env}]")
    extra: dict = {}
    if isinstance(kind, Integer):
        extra["type"] = click.IntRange(kind.low, kind.high if kind.high < LONG_MAX else None)
    elif isinstance(kind, Number):
        extra["type"] = click.FloatRange(kind.low)
    elif isinstance(kind, Choice):
        extra["type"] = click.Choice(kind.values)
    elif isinstance(kind, Octal):
        default = f"{default:o}"  # read as octal by _build_config
    elif isinstance(kind, OutputLimits):
        extra["callback"] = _limits_option
        default = kind.show(default)
    if row.field == "log_file":
        default = None  # stderr with --foreground, kvd.log otherwise: see _build_config
    return _option(row.option, row.help, default=default, show_default=default is not None,
                   **extra)


def _limits_option(context: click.Context, parameter: click.Parameter, text: str) -> tuple:
    """--client-output-buffer-limit's text, the classes not named keeping their defaults."""
    kind = OutputLimits()
    try:
        return kind.merge(DEFAULTS.client_output_buffer_limit, kind.parse(text.encode()))
    except Refused as refused:
        raise click.BadParameter(str(refused)) from None


def server_options(fn):
    """The options of `kvd start`: one per setting (config.py's rows) that has one, and
    --dir, --password-file."""
    options = [dir_option]
    for row in SETTINGS:
        if row.option is None:
            continue
        options.append(_setting_option(row))
        if row.field == "requirepass":
            options.append(_option("password-file", "File whose first line is the password "
                                   "(mode 600).", default=None, type=click.Path(dir_okay=False)))
    for option in reversed(options):
        fn = option(fn)
    return fn


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"kvd: {message}", err=True)
    sys.exit(code)


def _build_config(foreground: bool, **opts) -> Config:
    password = opts.pop("requirepass")
    password_file = opts.pop("password_file")
    if password_file:
        if password:
            _fail("give --requirepass or --password-file, not both", 2)
        password = read_password_file(password_file)
    try:
        mode = int(opts.pop("socket_mode"), 8)
    except ValueError:
        _fail("--socket-mode must be octal, like 600", 2)
    if opts["log_file"] is None:
        opts["log_file"] = "-" if foreground else "kvd.log"
    config = Config(requirepass=password or None, socket_mode=mode, **opts).resolved()
    config.check()
    return config


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="kvd", message="kvd %(version)s")
def main() -> None:
    """kvd: a persistent key-value server that speaks the Redis protocol.

    \b
    Examples:
      kvd start                      start in the background (kvd.pid, kvd.sock, kvd-data/ here)
      kvd start --foreground         stay attached, log to stderr (systemd, containers)
      kvd status                     running? with a few figures
      kvd stop                       graceful shutdown (SIGTERM through the PID file)
      kvd reload                     reopen the log file (SIGHUP through the PID file)
      kill -USR1 $(cat kvd.pid)      compact in the background
      kvd check --data-dir kvd-data  open a data directory and report on it
    """


@main.command(context_settings=CONTEXT)
@click.option("--foreground", is_flag=True, envvar="KVD_FOREGROUND",
              help="Run attached, logging to stderr, instead of daemonizing [env: KVD_FOREGROUND].")
@server_options
def start(foreground: bool, **opts) -> None:
    """Start the server; return once it serves, or print why it could not.

    \b
    Signals: SIGTERM/SIGINT graceful shutdown (a second one cuts the drain short),
             SIGUSR1 compact, SIGHUP reopen the log file.
    Exit status: 0 serving (or, with --foreground, shut down cleanly), 1 failed.
    """
    from . import daemon

    _enter(opts.pop("dir"), create=True)
    try:
        config = _build_config(foreground, **opts)
    except ConfigError as exc:
        _fail(str(exc), 2)
    if foreground:
        sys.exit(daemon.run_foreground(config))
    try:
        info = daemon.start_detached(config)
    except daemon.StartFailed as exc:
        _fail(str(exc))
    listening = [info["socket"]] if info["socket"] else []
    if info["port"]:
        listening.append(f"{info['host']}:{info['port']}")
    click.echo(f"kvd started: PID {info['pid']}, listening on {' and '.join(listening)}, "
               f"data in {info['data_dir']}, log {info['log_file']}")


@main.command(context_settings=CONTEXT)
@dir_option
@pidfile_option
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait for the daemon to exit.")
@click.option("--force", is_flag=True,
              help="If it has not exited after --timeout, kill it (SIGKILL). Every acknowledged "
                   "write is already on disk; the next start recovers as after a crash.")
def stop(dir: str | None, pidfile: str, timeout: float, force: bool) -> None:
    """Shut the server down gracefully (SIGTERM through the PID file) and wait for it to exit.

    A daemon that did not even begin its shutdown within --timeout is reported as not
    responding (its log has the watchdog's stack of what it is stuck in).

    Exit status: 0 stopped (or was not running), 1 still running after --timeout, or it
    exited but its shutdown failed (the reason is printed).
    """
    _enter(dir)
    touched = modified_ns(pidfile)
    try:
        pid = send_signal(pidfile, signal.SIGTERM, resume=True)  # (a stopped one too)
    except NotRunning as exc:
        click.echo(str(exc), err=True)
        return
    except PidFileError as exc:
        _fail(str(exc))
    click.echo(f"kvd (PID {pid}) is shutting down...", err=True)
    if wait_for_exit(pid, timeout):
        _report_exit(pidfile, pid)
        return
    responded = modified_ns(pidfile) != touched
    if force:
        _kill(pidfile, pid, timeout, responded)
        return
    if responded:
        _fail(f"PID {pid} is still running after {timeout:g} s: it is draining, waiting for "
              "slow clients (see --drain-timeout); run kvd stop again to cut the drain short, "
              "or kvd stop --force to kill it")
    _fail(f"PID {pid} is not responding: it did not begin shutting down within {timeout:g} s "
          "(its log has the watchdog's stack of where it is stuck); kvd stop --force kills it "
          "(SIGKILL), losing no acknowledged write")


def _report_exit(pidfile: str, pid: int) -> None:
    """The daemon is gone: "kvd stopped" if it removed its PID file, as a clean shutdown
    does; otherwise why its shutdown failed (exit 1)."""
    try:
        state = inspect(pidfile)
    except PidFileError:
        state = None
    if state is None or state.state != "stale" or state.pid != pid:
        click.echo("kvd stopped")
        return
    if state.failure:
        _fail(f"PID {pid} exited, but its shutdown failed: {state.failure}")
    _fail(f"PID {pid} exited without finishing its shutdown (it left its PID file "
          "behind: it was killed or crashed); see its log. The next kvd start recovers the "
          "data as after a crash.")


@main.command(context_settings=CONTEXT)
@dir_option
@pidfile_option
def reload(dir: str | None, pidfile: str) -> None:
    """Reopen the log file (SIGHUP through the PID file): logrotate's postrotate step.

    Exit status: 0 signalled, 1 not running (stale or missing PID file) or not allowed.
    """
    _enter(dir)
    try:
        pid = send_signal(pidfile, signal.SIGHUP)
    except (NotRunning, PidFileError) as exc:
        _fail(str(exc))
    click.echo(f"kvd (PID {pid}) reopens its log file")


def _kill(pidfile: str, pid: int, timeout: float, responded: bool) -> None:
    why = "still draining" if responded else "not responding"
    try:
        send_signal(pidfile, signal.SIGKILL)
    except NotRunning:
        click.echo("kvd stopped")
        return
    except PidFileError as exc:
        _fail(str(exc))
    if not wait_for_exit(pid, 10):
        _fail(f"PID {pid} survived SIGKILL for 10 s (stuck in the kernel? see /proc/{pid}/stack)")
    click.echo(f"kvd (PID {pid}) was {why} after {timeout:g} s and was killed (SIGKILL). "
               "Every acknowledged write is on disk; the next kvd start recovers the log and "
               "replaces the stale PID file.", err=True)
    click.echo("kvd stopped")


@main.command(context_settings=CONTEXT)
@dir_option
@pidfile_option
@server_socket_option
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds to wait for the server's figures.")
def status(dir: str | None, pidfile: str, socket: str, timeout: float) -> None:
    """Say whether the server runs, with a few figures from INFO and the paths to reach it
    from anywhere.

    Exit status (LSB): 0 running, 1 not running but a stale PID file exists, 3 not running,
    4 running but not answering within --timeout (stopped by SIGSTOP, or stuck).
    """
    _enter(dir)
    try:
        state = inspect(pidfile)
    except PidFileError as exc:
        _fail(str(exc), 4)
    click.echo(state.describe())
    if state.state == "stale":
        sys.exit(1)
    if state.state == "stopped":
        sys.exit(3)
    figures, info = _info_figures(socket, timeout)
    if figures is None:
        _fail(f"kvd (PID {state.pid}) did not answer within {timeout:g} s: "
              f"{unresponsive(state.pid)}", 4)
    if figures:
        click.echo(figures)
    pidfile, socket = os.path.abspath(pidfile), os.path.abspath(socket) if socket else ""
    click.echo(f"PID file {pidfile}" + (f", socket {socket}" if socket else "")
               + (f", data {info['data_dir']}, log {info['log_file']}" if info else ""))
    home = os.path.dirname(pidfile)
    if socket and os.path.dirname(socket) == home and os.path.basename(socket) == "kvd.sock" \
            and os.path.basename(pidfile) == "kvd.pid":
        click.echo(f"from anywhere: kvctl --dir {home} ... / kvd stop --dir {home} "
                   f"(or export KVD_DIR={home})")


def _info_figures(socket_path: str, timeout: float) -> tuple[str | None, dict | None]:
    """A line of figures from INFO, and INFO itself (None when it cannot be asked); the
    line is None when the server did not answer within `timeout` seconds."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not socket_path:
        return "", None
    try:
        client = redis.Redis(unix_socket_path=socket_path, socket_timeout=timeout,
                             socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        info = client.info()
        client.close()
    except redis.AuthenticationError:
        return "(INFO needs the password; use kvctl stats)", None
    except redis.TimeoutError:
        return None, None
    except redis.RedisError as exc:
        return f"(cannot query {socket_path}: {exc})", None
    figures = (f"uptime {info['uptime_in_seconds']} s, {info.get('db0', {}).get('keys', 0)} "
               f"keys, {info['connected_clients']} client(s), engine {info['engine']}, "
               f"fsync {info['fsync']}, compactions {info['compactions_completed']}")
    return figures, info


@main.command(context_settings=CONTEXT)
@dir_option
@click.option("--data-dir", default="kvd-data", show_default=True, envvar="KVD_DATA_DIR",
              type=click.Path(file_okay=False), help="Data directory [env: KVD_DATA_DIR].")
@click.option("--engine", default=None, envvar="KVD_ENGINE", type=click.Choice(ENGINES),
              help="Storage engine; default: the directory's own [env: KVD_ENGINE].")
@click.option("--repair", is_flag=True,
              help="Log engine: rewrite damaged segments with their intact records (the "
                   "originals are kept under corrupt/), then check again.")
def check(dir: str | None, data_dir: str, engine: str, repair: bool) -> None:
    """Open a data directory (recovering as start-up would) and print its statistics.

    A torn record at the tail of the newest segment is truncated (and logged);
    corruption anywhere else is reported with its file and offset, exit 1.
    --repair salvages every intact record around the damage; keys whose newest
    record was damaged read their previous value again. The directory must not
    be in use by a running server.

    \b
    Examples:
      kvd check --data-dir kvd-data
      kvd check --data-dir kvd-data --repair
    """
    _enter(dir)
    logging.basicConfig(level=logging.INFO, format="kvd check: %(message)s", stream=sys.stderr)
    try:
        _check(data_dir, engine, repair)
    except OSError as exc:  # a directory it may not read or write: no traceback
        where = exc.filename or data_dir
        _fail(f"check: cannot use {where}: {exc.strerror} (check recovers as start-up does, "
              "so it needs to read and write the data directory)")


def _check(data_dir: str, engine: str | None, repair: bool) -> None:
    if not os.path.isdir(data_dir):
        _fail(f"check: no data directory at {data_dir}")
    if not holds_data(data_dir):
        _fail(f"check: {data_dir} is not a kvd data directory (no META, segments or "
              "database in it); nothing was created there")
    if repair:
        try:
            engine = engine or engine_of(data_dir) or "log"
        except StorageError as exc:
            _fail(f"check: {exc}")
        if engine != "log":
            _fail("--repair works on the log engine; for sqlite use sqlite3's .recover", 2)
        from storage.repair import ListRepair
        from storage.repair import repair as repair_directory

        try:
            repairs = repair_directory(data_dir)
        except StorageError as exc:
            _fail(f"check: {exc}")
        for r in repairs:
            if isinstance(r, ListRepair):
                for name in r.missing:
                    click.echo(f"unlisted {name}: it was missing; the keys whose newest "
                               "record it held are lost (older values may show again)",
                               err=True)
                for name, where in r.moved_aside:
                    click.echo(f"moved {name} aside to {where}: it was not this "
                               "directory's", err=True)
                continue
            ranges = ", ".join(f"{start}-{end}" for start, end in r.damaged) or "none"
            click.echo(f"repaired {r.segment}: kept {r.records_kept} records, dropped "
                       f"{r.bytes_dropped} bytes (damaged byte ranges: {ranges}); original "
                       f"kept as {r.original}", err=True)
        if not repairs:
            click.echo("nothing to repair", err=True)
    found = format_of(data_dir)
    try:
        with open_store(data_dir, engine=engine) as store:
            figures = store.stats().as_dict()
            figures["format"] = FORMAT_VERSION
            figures["keys_by_database"] = {db: store.count(db)
                                           for db in range(store.databases()) if store.count(db)}
            click.echo(json.dumps(figures, indent=2))
    except StorageError as exc:
        _fail(f"check: {exc}")
    if found is not None and found != FORMAT_VERSION:
        click.echo(f"format {found} upgraded to {FORMAT_VERSION} in place (nothing rewritten); "
                   "an older kvd no longer opens this directory", err=True)
