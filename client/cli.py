"""The `kvctl` command line (its commands arrive with the kvctl issue)."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kvctl: talk to a running kvd server (get, put, delete, keys, stats, compact).

    The commands arrive with the kvctl issue; this is the entry point they hang on.
    """
