"""The three distributions built from this repository share one version, set in one place.

``shared_core/poolparty/_version.py`` is the only place the version is written: the core's build reads
it (hatch's version source), the plugins' builds read it (distributions/core_version.py) and pin the
core to it, and ``poolparty --version`` prints it. Where the distributions are installed (the README's
test command installs all three from this tree), their metadata is checked too.
"""
from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

import poolparty
from poolparty.cli.main import main

REPO = Path(__file__).resolve().parent.parent
PLUGINS = {"prefect-poolparty": "prefect_poolparty",
           "snakemake-executor-plugin-poolparty": "snakemake_executor_plugin_poolparty"}
CORE = "poolparty-hpc"


def written_version() -> str:
    text = (REPO / "shared_core" / "poolparty" / "_version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE).group(1)


def test_poolparty_version_is_the_one_written_in_version_py():
    assert poolparty.__version__ == written_version()
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"poolparty, version {written_version()}"


def test_no_other_file_sets_a_version():
    core = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert core["project"]["name"] == CORE
    assert "version" not in core["project"] and core["project"]["dynamic"] == ["version"]
    assert core["tool"]["hatch"]["version"]["path"] == "shared_core/poolparty/_version.py"
    for dist, package in PLUGINS.items():  # the code stays in executors/: a wheel copies it, editable links it
        meta = tomllib.loads((REPO / "distributions" / dist / "pyproject.toml").read_text())
        assert meta["project"]["name"] == dist
        assert "version" not in meta["project"] and set(meta["project"]["dynamic"]) == {"version", "dependencies"}
        assert meta["tool"]["hatch"]["metadata"]["hooks"]["custom"]["path"] == "../core_version.py"
        wheel = meta["tool"]["hatch"]["build"]["targets"]["wheel"]
        assert wheel["hooks"]["custom"] == {"path": "../plugin_code.py", "package": package}
        assert wheel["dev-mode-dirs"] == ["../../executors"]
        assert (REPO / "executors" / package / "__init__.py").is_file()


@pytest.mark.parametrize("dist", [CORE, *PLUGINS])
def test_installed_distributions_carry_the_version_and_pin_the_core(dist):
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed (the README's test command installs it)")
    assert version == written_version()
    if dist != CORE:
        assert f"{CORE}=={version}" in [r.replace(" ", "") for r in metadata.requires(dist) or []]


@pytest.mark.parametrize("dist", list(PLUGINS))
def test_an_editable_plugin_runs_the_code_of_the_tree(dist):
    """An editable install must not copy the plugin's files (then edits in executors/ would not count)."""
    import importlib

    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed (the README's test command installs it)")
    if not any(str(f).endswith(".pth") for f in files):
        pytest.skip(f"{dist} is installed from a wheel, not editable")
    module = importlib.import_module(PLUGINS[dist])
    assert Path(module.__file__).resolve() == (REPO / "executors" / PLUGINS[dist] / "__init__.py").resolve()
