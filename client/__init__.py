"""The user's side of kvd: Python client helpers and the `kvctl` CLI.

Depends on `server` (protocol constants, PID file reader); never the reverse.
"""
