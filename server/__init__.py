"""The kvd daemon: event loop, RESP codec, signal pipe, PID file, daemonizing, `kvd` CLI.

Depends on `storage`; never on `client`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kvd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
