"""``poolparty config``: every setting's effective value and where it came from (built-in default,
user file, project file, ``POOLPARTY_*`` variable)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from poolparty import config as cfg
from poolparty.cli.common import echo_json


@click.command(name="config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_command(as_json: bool) -> None:
    """Show the effective configuration and the source of each value."""
    loaded = cfg.load()
    rows = cfg.describe(loaded)
    files = {"user": str(cfg.user_file()), "project": str(Path.cwd() / cfg.PROJECT_FILE)}
    ignored = sorted(k for k in os.environ if k.startswith(cfg.ENV_PREFIX)
                     and k[len(cfg.ENV_PREFIX):].lower() not in cfg.SETTINGS)
    if as_json:
        echo_json({"settings": rows, "files": files, "files_read": [str(f) for f in loaded.files],
                   "tables": loaded.tables, "ignored_environment": ignored})
        return
    for label, path in files.items():
        state = "read" if Path(path) in loaded.files else "absent"
        click.echo(f"{label} file: {path} ({state})")
    click.echo()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if r["source"] == "default":
            click.echo(f"{r['name']:<{width}}  {r['default']}  (default)")
        else:
            click.echo(f"{r['name']:<{width}}  {r['value']!r}  ({r['source']})")
    for name, table in loaded.tables.items():
        click.echo(f"[{name}] table: {', '.join(sorted(table))} (read by that plugin)")
    for k in ignored:
        click.echo(f"note: {k} is not a setting and is ignored (settings: POOLPARTY_ + "
                   f"{', '.join(n.upper() for n in list(cfg.SETTINGS)[:4])}, ...)", err=True)
    click.echo("\nprecedence: default < user file < project file < environment < arguments of Pool(...)")
