"""Running the server: detached (`kvd start`) or attached (`kvd start --foreground`).

`kvd start` must return only once the daemon serves, or with the daemon's
own error. python-daemon's `DaemonContext.open()` detaches by forking and
exiting the parent, so the command forks first: the original process keeps
the read end of a readiness pipe and waits; the child calls `open()` (fork,
setsid, fork, chdir /, umask, stdio to /dev/null, other fds closed) and the
daemon it leaves behind writes one line to the pipe -- `ready {...}` once it
listens, or `error <message>` -- then closes it. EOF without a line means the
daemon died before it could say why (the log file says more).

DaemonContext is used for detaching only: kvd installs its own signal
handlers afterwards and writes its own PID file (server.pidfile).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback

import daemon

from . import logs
from .config import Config
from .errors import StartupError
from .loop import start

log = logging.getLogger("kvd.server")


class StartFailed(Exception):
    """`kvd start` failed; the message is the daemon's own explanation."""


def start_detached(config: Config) -> dict:
    """Start the daemon and wait until it is ready; return what it reported.

    Raises StartFailed with the daemon's error message.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the daemon (via DaemonContext's own forks)
        os.close(read_fd)
        code = 1
        try:
            code = _daemon_main(config, write_fd)
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    os.waitpid(pid, 0)  # the intermediate process exits as soon as DaemonContext forks
    if message.startswith("ready "):
        return json.loads(message[len("ready "):])
    if message.startswith("error "):
        raise StartFailed(message[len("error "):])
    where = f"; see {config.log_file}" if config.log_file != "-" else ""
    raise StartFailed(f"the daemon exited before it was ready{where}")


def _daemon_main(config: Config, ready_fd: int) -> int:
    umask = os.umask(0o077)  # (read it: the only way; the daemon keeps the caller's)
    os.umask(umask)
    context = daemon.DaemonContext(
        working_directory="/",
        umask=umask,
        files_preserve=[ready_fd],
        detach_process=True,
        # Only job-control stops are ignored here; kvd's own handlers come after.
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
    )
    context.open()
    try:
        logs.setup(config.log_file, config.log_level)
    except OSError as exc:
        _report(ready_fd, f"error cannot open the log file {config.log_file}: {exc.strerror}")
        return 1
    try:
        return run_server(config, lambda info: _report(ready_fd, "ready " + json.dumps(info)))
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        _report(ready_fd, f"error {exc}")
        return 1
    except BaseException as exc:
        log.critical("crashed:\n%s", traceback.format_exc())
        _report(ready_fd, f"error unexpected {type(exc).__name__}: {exc}")
        return 1


def _report(fd: int, line: str) -> None:
    """Write the one readiness line (once) and close the pipe."""
    try:
        os.write(fd, line.encode() + b"\n")
        os.close(fd)
    except OSError:
        pass  # already reported, or `kvd start` was interrupted


def run_server(config: Config, on_ready) -> int:
    """Start the server, call `on_ready(info)` once it serves, serve until shutdown."""
    from . import __version__

    log.info("kvd %s starting (PID %d, Python %s)", __version__, os.getpid(),
             sys.version.split()[0])
    server = start(config)
    on_ready({
        "pid": os.getpid(),
        "socket": config.socket,
        "host": config.bind if server.tcp_port else None,
        "port": server.tcp_port,
        "pidfile": config.pidfile,
        "data_dir": config.data_dir,
        "log_file": config.log_file,
    })
    try:
        return server.serve()
    except BaseException as exc:
        server.abort(f"{type(exc).__name__}: {exc}")
        raise


def run_foreground(config: Config) -> int:
    """`kvd start --foreground`: attached, logging to stderr unless --log-file says otherwise."""
    logs.setup(config.log_file, config.log_level)
    try:
        return run_server(config, lambda info: None)
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        print(f"kvd: {exc}", file=sys.stderr)
        return 1
