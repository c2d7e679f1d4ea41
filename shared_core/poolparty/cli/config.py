"""``poolparty config``: every setting's effective value on this machine and where it came from
(built-in default, user file, project file, ``POOLPARTY_*`` variable). A default that depends on the
queue (``max_running``, ``work_root``, ``polling_interval``) or the machine is shown as resolved here."""
from __future__ import annotations

import os
from pathlib import Path

import click

from poolparty import config as cfg
from poolparty.cli.common import echo_json


def resolved_defaults(queue: str) -> dict[str, object]:
    """What the queue-dependent and machine-dependent defaults come to here, for ``queue``."""
    import sys

    from poolparty.api.progress import wanted
    from poolparty.engine.engine import default_work_root
    from poolparty.payload import default_python
    from poolparty.queues import make_queue
    from poolparty.queues.cli import SchedulerCLI

    out: dict[str, object] = {"python_path": default_python(), "progress": wanted(None, sys.stderr)}
    try:
        adapter = make_queue(queue, SchedulerCLI())
    except Exception:  # an unknown queue name: load() said so already
        return out
    try:
        out.update(max_running=adapter.default_max_running(), work_root=str(default_work_root(adapter)),
                   polling_interval=adapter.default_polling_interval)
    finally:
        adapter.close()
    return out


@click.command(name="config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_command(as_json: bool) -> None:
    """Show the effective configuration and the source of each value."""
    loaded = cfg.load()
    rows = cfg.describe(loaded)
    queue = next((r["value"] for r in rows if r["name"] == "queue" and r["source"] != "default"), cfg.DEFAULT_QUEUE)
    here = resolved_defaults(str(queue))
    for r in rows:
        if r["source"] == "default" and r["name"] in here:
            r["value"] = here[r["name"]]
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
        if r["source"] == "default" and r["name"] in here:
            click.echo(f"{r['name']:<{width}}  {r['value']}  (default here; {r['default']})")
        elif r["source"] == "default":
            click.echo(f"{r['name']:<{width}}  {r['default']}  (default)")
        else:
            click.echo(f"{r['name']:<{width}}  {r['value']!r}  ({r['source']})")
    for name, table in loaded.tables.items():
        click.echo(f"[{name}] table: {', '.join(sorted(table))} (read by that plugin)")
    for k in ignored:
        click.echo(f"note: {k} is not a setting and is ignored (settings: POOLPARTY_ + "
                   f"{', '.join(n.upper() for n in list(cfg.SETTINGS)[:4])}, ...)", err=True)
    click.echo("\nprecedence: default < user file < project file < environment < arguments of Pool(...)")
