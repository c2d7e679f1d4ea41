"""Configuration defaults: built-in < user file < project file < ``POOLPARTY_*`` environment < arguments.

Files are TOML with the option names at top level, the same names as the keyword arguments of
``Pool``/``Executor`` (and of the Snakemake and Prefect plugins)::

    # ~/.config/poolparty/config.toml  (or $XDG_CONFIG_HOME/poolparty/config.toml)
    queue = "slurm"
    max_running = 50
    memory = "4GB"
    [snakemake]      # tables are left to the plugins: config.load().table("snakemake")
    keep_logs_days = 3

    # ./poolparty.toml in the working directory: the project's values, over the user's

Environment variables are ``POOLPARTY_`` + the upper-case name (``POOLPARTY_MAX_RUNNING=50``,
``POOLPARTY_ARRAY=no``, ``POOLPARTY_EXTRA="--constraint=skylake --exclusive"``).
"""
from __future__ import annotations

import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from poolparty.errors import ConfigurationError
from poolparty.queues import DEFAULT_QUEUE, QUEUE_NAMES

ENV_PREFIX = "POOLPARTY_"
PROJECT_FILE = "poolparty.toml"


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError("not a yes/no value")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _size(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


@dataclass(frozen=True)
class Setting:
    """One configurable name: how to read it from text (environment) and what TOML types it takes."""

    name: str
    parse: Callable[[str], Any]
    toml_types: tuple[type, ...]
    default: str  # as documented (some defaults depend on the queue)
    help: str


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("queue", str, (str,), DEFAULT_QUEUE,
            f"where jobs run: {', '.join(QUEUE_NAMES[:-1])} or {QUEUE_NAMES[-1]}"),
    Setting("max_running", _positive_int, (int,), "local: CPU count; cluster: 100",
            "jobs (array elements) running at once"),
    Setting("work_root", str, (str,), "local: $TMPDIR/poolparty-$UID; cluster: ./.poolparty",
            "parent of each run's private work_dir (must be shared with the nodes on a cluster)"),
    Setting("keep_work_dir", _bool, (bool,), "false",
            "keep the work_dir after a run whose every task has an outcome"),
    Setting("python_path", str, (str,), "the driver's interpreter", "absolute interpreter path on the nodes"),
    Setting("polling_interval", _positive_float, (int, float), "local: 2; cluster: 30",
            "longest pause between two scheduler status queries (seconds)"),
    Setting("scheduler_timeout", _positive_float, (int, float), "60",
            "timeout of each scheduler command (seconds)"),
    Setting("scheduler_calls_per_second", _positive_float, (int, float), "5",
            "submissions and cancels per second, for all your poolparty processes on this host together"),
    Setting("max_resubmissions", int, (int,), "3", "resubmissions of a chunk for infrastructure failures"),
    Setting("array", _bool, (bool,), "true", "submit job arrays (false: one plain job per chunk)"),
    Setting("claim_chunks", _bool, (bool,), "true",
            "an array element that finished its chunk runs chunks whose own elements have not started"),
    Setting("linger", _non_negative_float, (int, float), "0",
            "seconds an array element that ran out of chunks waits for chunks of later maps with the same "
            "resources (a warm element); 0: it exits at once"),
    Setting("walltime_signal_lead", _non_negative_int, (int,), "a tenth of the walltime, 5 s to 5 min",
            "seconds before its walltime a job is warned: it stops claiming, a task's checkpoint is saved "
            "(0: no warning)"),
    Setting("verbose", _bool, (bool,), "false", "log progress to stderr (logger 'poolparty')"),
    Setting("progress", _bool, (bool,), "on when stderr is a terminal", "progress bar of Pool maps"),
    Setting("max_result_size", _size, (int, str), "unlimited",
            "largest pickled result of one task (bytes or '100MB'); larger ones fail the task"),
    Setting("cpus", _positive_int, (int,), "scheduler default", "CPUs per job"),
    Setting("memory", str, (str, int), "scheduler default", "memory per job ('4GB')"),
    Setting("walltime", str, (str, int), "scheduler default", "time limit per job ('1:00:00', '2h')"),
    Setting("partition", str, (str,), "scheduler default", "SLURM partition / SGE queue"),
    Setting("account", str, (str,), "scheduler default", "account to charge"),
    Setting("qos", str, (str,), "scheduler default", "SLURM QOS"),
    Setting("gpus", int, (int,), "none", "GPUs per job"),
    Setting("extra", shlex.split, (list,), "none", "extra scheduler arguments, one per item"),
)}


@dataclass
class Config:
    """The configured values (not the built-in defaults) and where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # files that were read, lowest precedence first
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # [snakemake], [prefect], ...

    def table(self, name: str) -> dict[str, Any]:
        """A plugin's own table (``[snakemake]``), merged over the files; empty if absent."""
        return dict(self.tables.get(name, {}))

    def merged(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``arguments`` over the configured values; an argument given as None counts as not given."""
        out = dict(self.values)
        out.update({k: v for k, v in arguments.items() if v is not None})
        return out


def user_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "poolparty" / "config.toml"


def load(cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the user file, the project file (``poolparty.toml`` in ``cwd``) and the environment."""
    env = os.environ if env is None else env
    config = Config()
    for label, path in (("user file", user_file(env)), ("project file", Path(cwd or os.getcwd()) / PROJECT_FILE)):
        if path.is_file():
            _read_file(config, path, label)
    for name, setting in SETTINGS.items():
        var = ENV_PREFIX + name.upper()
        text = env.get(var)
        if text is None or text == "":
            continue
        try:
            config.values[name] = setting.parse(text)
        except ValueError as e:
            raise ConfigurationError(f"environment variable {var}={text!r}: {e} ({setting.help})") from None
        config.sources[name] = f"environment {var}"
    return config


def _read_file(config: Config, path: Path, label: str) -> None:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"{path}: not valid TOML: {e}") from None
    config.files.append(path)
    for key, value in data.items():
        if isinstance(value, dict):
            config.tables.setdefault(key, {}).update(value)
            continue
        setting = SETTINGS.get(key)
        if setting is None:
            raise ConfigurationError(f"{path}: unknown option {key!r}; valid names are: {', '.join(SETTINGS)} "
                                     "(plugin settings go in a table, e.g. [snakemake])")
        wanted = " or ".join(t.__name__ for t in setting.toml_types)
        if not isinstance(value, setting.toml_types) or (isinstance(value, bool) and bool not in setting.toml_types):
            raise ConfigurationError(f"{path}: {key} = {value!r} must be a TOML {wanted} ({setting.help})")
        if isinstance(value, list):
            if not all(isinstance(x, str) for x in value):
                raise ConfigurationError(f"{path}: {key} must be a list of strings ({setting.help})")
        else:
            try:
                setting.parse(str(value).lower() if isinstance(value, bool) else str(value))
            except ValueError as e:
                raise ConfigurationError(f"{path}: {key} = {value!r}: {e} ({setting.help})") from None
        config.values[key] = value
        config.sources[key] = f"{label} {path}"


def describe(config: Config, arguments: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every setting with its effective value and source, for ``poolparty config``."""
    arguments = {k: v for k, v in (arguments or {}).items() if v is not None}
    rows = []
    for name, setting in SETTINGS.items():
        if name in arguments:
            rows.append({"name": name, "value": arguments[name], "source": "argument"})
        elif name in config.values:
            rows.append({"name": name, "value": config.values[name], "source": config.sources[name]})
        else:
            rows.append({"name": name, "value": None, "default": setting.default, "source": "default"})
    return rows
