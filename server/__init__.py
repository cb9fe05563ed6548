"""The kvd daemon: event loop, RESP codec, signal pipe, PID file, daemonizing, `kvd` CLI.

Depends on `storage`; never on `client`.
"""
