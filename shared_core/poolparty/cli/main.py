"""The ``poolparty`` console script: a click group of the subcommands in this package."""
from __future__ import annotations

import logging
from typing import Any

import click

from poolparty import __version__
from poolparty.errors import PoolPartyError
from poolparty.cli.cancel import cancel
from poolparty.cli.clean import clean
from poolparty.cli.config import config_command
from poolparty.cli.doctor import doctor
from poolparty.cli.logs import logs
from poolparty.cli.report import report
from poolparty.cli.resume import resume
from poolparty.cli.status import status


class _Group(click.Group):
    """poolparty's own errors become ``Error: <message>`` and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PoolPartyError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poolparty")
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does (logger 'poolparty').")
def main(verbose: bool) -> None:
    """Inspect, resume, cancel, report on and clean poolparty runs; check the cluster set-up."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


for command in (status, resume, cancel, logs, report, clean, doctor, config_command):
    main.add_command(command)
