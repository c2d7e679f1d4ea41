"""Configuration: user and project TOML files and POOLPARTY_* variables under the arguments; the
max_result_size option end to end (the worker records a clear error instead of a huge pickle)."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import poolparty
from poolparty import config
from poolparty.api.options import build_engine_options
from poolparty.cli.main import main
from poolparty.store.result_limit import ResultTooLargeError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real user file, no project file, no POOLPARTY_* setting from the outer environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    for name in config.SETTINGS:
        monkeypatch.delenv(config.ENV_PREFIX + name.upper(), raising=False)
    return project


def user_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg" / "poolparty" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_default_user_project_environment_argument(tmp_path, isolated, monkeypatch):
    user = user_file(tmp_path, 'queue = "sge"\nmax_running = 5\nmemory = "1GB"\nwalltime = "1:00:00"\n')
    (isolated / "poolparty.toml").write_text('max_running = 6\nmemory = "2GB"\narray = false\n')
    monkeypatch.setenv("POOLPARTY_MEMORY", "3GB")
    monkeypatch.setenv("POOLPARTY_EXTRA", "--constraint=skylake --exclusive")
    loaded = config.load()
    assert loaded.values == {"queue": "sge", "max_running": 6, "memory": "3GB", "walltime": "1:00:00",
                             "array": False, "extra": ["--constraint=skylake", "--exclusive"]}
    assert loaded.sources["queue"] == f"user file {user}"
    assert loaded.sources["max_running"] == f"project file {isolated / 'poolparty.toml'}"
    assert loaded.sources["memory"] == "environment POOLPARTY_MEMORY"
    rows = {r["name"]: r for r in config.describe(loaded, {"memory": "4GB"})}
    assert rows["memory"] == {"name": "memory", "value": "4GB", "source": "argument"}
    assert rows["cpus"]["source"] == "default"

    result = CliRunner().invoke(main, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = {r["name"]: r for r in json.loads(result.stdout)["settings"]}
    assert shown["max_running"]["value"] == 6 and "project file" in shown["max_running"]["source"]
    text = CliRunner().invoke(main, ["config"]).stdout
    assert "memory" in text and "'3GB'  (environment POOLPARTY_MEMORY)" in text
    assert f"user file: {user} (read)" in text


def test_engine_options_take_configured_values_under_arguments(tmp_path, isolated, monkeypatch):
    (isolated / "poolparty.toml").write_text('max_running = 7\nmemory = "2GB"\narray = false\n'
                                             'max_resubmissions = 9\nmax_result_size = "1MB"\n')
    monkeypatch.setenv("POOLPARTY_POLLING_INTERVAL", "4.5")
    opts = build_engine_options(None, {})
    assert (opts.queue, opts.max_running, opts.array, opts.polling_interval) == ("local", 7, False, 4.5)
    assert opts.resources.memory == 2 * 1024**3 and opts.retry.max_resubmissions == 9
    assert opts.max_result_size == 1024**2
    opts = build_engine_options(3, {"memory": "1GB", "array": True, "queue": None})
    assert (opts.max_running, opts.resources.memory, opts.array, opts.queue) == (3, 1024**3, True, "local")
    explicit = build_engine_options(None, {"retry": poolparty.RetryPolicy(max_resubmissions=1)})
    assert explicit.retry.max_resubmissions == 1  # an explicit policy is an argument: it wins


def test_plugin_tables_are_left_to_the_plugins(isolated):
    (isolated / "poolparty.toml").write_text('queue = "local"\n[snakemake]\nkeep_logs_days = 3\n')
    assert config.load().table("snakemake") == {"keep_logs_days": 3}
    assert config.load().table("prefect") == {}


@pytest.mark.parametrize("text,expected", [
    ('memroy = "1GB"\n', "unknown option 'memroy'; valid names are: queue, max_running"),
    ('max_running = "many"\n', "max_running = 'many' must be a TOML int"),
    ("max_running = 0\n", "max_running = 0: must be a positive integer"),
    ("array = 1\n", "array = 1 must be a TOML bool"),
    ('extra = "--exclusive"\n', "extra = '--exclusive' must be a TOML list"),
    ("queue = slurm\n", "not valid TOML"),
])
def test_bad_config_file_is_named_in_the_error(isolated, tmp_path, text, expected):
    (isolated / "poolparty.toml").write_text(text)
    with pytest.raises(poolparty.ConfigurationError) as info:
        poolparty.Pool(queue="local", work_root=tmp_path / "runs")
    assert expected in str(info.value)
    assert str(isolated / "poolparty.toml") in str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing created
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1 and expected in result.output


def test_bad_environment_value_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("POOLPARTY_MAX_RUNNING", "lots")
    with pytest.raises(poolparty.ConfigurationError, match=r"POOLPARTY_MAX_RUNNING='lots'"):
        poolparty.Executor(queue="local", work_root=tmp_path)
    monkeypatch.setenv("POOLPARTY_MAX_RUNNING", "4")
    monkeypatch.setenv("POOLPARTY_ARRAY", "maybe")
    with pytest.raises(poolparty.ConfigurationError, match=r"POOLPARTY_ARRAY='maybe': not a yes/no value"):
        poolparty.Pool(queue="local", work_root=tmp_path)


# -- max_result_size ---------------------------------------------------------------------------------
def sized(n: int) -> bytes:
    return b"x" * n


def test_result_too_large_is_a_clear_error_not_a_huge_pickle(tmp_path):
    with poolparty.Pool(2, queue="local", work_root=tmp_path, max_result_size="10KB") as pool:
        assert pool.map(sized, [10, 100]) == [b"x" * 10, b"x" * 100]
        with pytest.raises(ResultTooLargeError) as info:
            pool.map(sized, [10, 200_000], chunksize=1)
        work_dir = pool.work_dir
    message = str(info.value)
    assert "return value (bytes) is 195.3 KiB pickled, above max_result_size=10.0 KiB" in message
    assert "return its path, or raise max_result_size" in message
    assert isinstance(info.value, poolparty.PoolPartyError)
    stored = sum(p.stat().st_size for p in Path(work_dir).glob("batches/*/results.rec"))
    assert stored < 20_000  # the big value never reached the work_dir


def test_result_size_limit_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POOLPARTY_MAX_RESULT_SIZE", "2000")
    with poolparty.Executor(1, queue="local", work_root=tmp_path) as ex:
        assert ex.submit(sized, 100).result(timeout=60) == b"x" * 100
        with pytest.raises(ResultTooLargeError, match="above max_result_size=2.0 KiB"):
            ex.submit(sized, 5000).result(timeout=60)


def test_bad_max_result_size(tmp_path):
    with pytest.raises(poolparty.ConfigurationError, match=r"max_result_size='huge' is not a size"):
        poolparty.Pool(queue="local", work_root=tmp_path / "runs", max_result_size="huge")
    assert not (tmp_path / "runs").exists()


def test_config_shows_what_the_defaults_come_to_on_this_machine(isolated, monkeypatch):
    """It used to print descriptions ("local: CPU count", "$TMPDIR/poolparty-$UID") instead of values."""
    import tempfile

    monkeypatch.delenv("POOLPARTY_WORK_ROOT", raising=False)
    monkeypatch.setenv("POOLPARTY_QUEUE", "local")
    text = CliRunner().invoke(main, ["config"]).stdout
    assert re.search(rf"^max_running +{os.cpu_count()}  \(default here; ", text, re.M), text
    assert re.search(rf"^work_root +{re.escape(tempfile.gettempdir())}/poolparty-{os.getuid()}  \(default here; ",
                     text, re.M), text
    assert re.search(rf"^python_path +{re.escape(sys.executable)}  \(default here; ", text, re.M), text
    assert re.search(r"^polling_interval +2\.0  \(default here; ", text, re.M), text
    assert re.search(r"^queue +'local'  \(environment POOLPARTY_QUEUE\)", text, re.M), text
    shown = {r["name"]: r for r in json.loads(CliRunner().invoke(main, ["config", "--json"]).stdout)["settings"]}
    assert shown["max_running"]["value"] == os.cpu_count() and shown["max_running"]["source"] == "default"


def test_the_docs_list_every_option():
    """docs/troubleshooting.md quotes the messages that list the options (it lacked claim_chunks)."""
    from poolparty.api.options import ENGINE_KEYWORDS

    docs = Path(__file__).resolve().parent.parent / "docs"
    quoted = (docs / "troubleshooting.md").read_text()
    settings = re.search(r"unknown option 'memroy'; valid names are: ([\w, ]+) \(plugin", quoted)
    assert settings and settings.group(1).split(", ") == list(config.SETTINGS), settings
    pool = re.search(r"pool options are: ([\w, ]+);", quoted)
    assert pool and pool.group(1).split(", ") == list(ENGINE_KEYWORDS), pool
    table = (docs / "configuration.md").read_text()
    assert all(f"| `{name}` |" in table for name in config.SETTINGS), [n for n in config.SETTINGS
                                                                       if f"| `{n}` |" not in table]
