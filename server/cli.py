"""The `kvd` command line.

The daemon itself (start/stop/status) arrives with the daemon issue; until
then `kvd` offers `check`, which opens a data directory the way the server
will at start-up and reports what it finds.
"""

from __future__ import annotations

import json
import logging
import sys

import click

from storage import ENGINES, StorageError, open_store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kvd: a persistent key-value server that speaks the Redis protocol.

    \b
    Examples:
      kvd check --data-dir kvd-data     open a data directory and report on it
    """


@main.command()
@click.option("--data-dir", default="kvd-data", show_default=True, envvar="KVD_DATA_DIR",
              type=click.Path(file_okay=False), help="Data directory [env: KVD_DATA_DIR].")
@click.option("--engine", default="log", show_default=True, envvar="KVD_ENGINE",
              type=click.Choice(ENGINES), help="Storage engine [env: KVD_ENGINE].")
def check(data_dir: str, engine: str) -> None:
    """Open a data directory (recovering as start-up would) and print its statistics.

    A torn record at the tail of the newest segment is truncated (and logged);
    corruption anywhere else is reported with its file and offset, exit 1.
    """
    logging.basicConfig(level=logging.INFO, format="kvd check: %(message)s", stream=sys.stderr)
    try:
        with open_store(data_dir, engine=engine) as store:
            click.echo(json.dumps(store.stats(), indent=2))
    except StorageError as exc:
        click.echo(f"kvd check: {exc}", err=True)
        sys.exit(1)
