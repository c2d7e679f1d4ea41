"""Every option named in the docs' option tables exists in the code, with the default the table gives.

The tables are read from the Markdown itself (docs/configuration.md, docs/prefect.md,
docs/snakemake.md): a row whose name the code does not know, or whose default differs from the code's,
fails with the file, the row and both values. Defaults that depend on the queue ("local 2; cluster 30")
are checked number by number against the queue adapters.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

from poolparty.api.options import ENGINE_KEYWORDS
from poolparty.engine import EngineOptions
from poolparty.queues.base import QueueAdapter
from poolparty.queues.local import LocalQueue
from poolparty.queues import DEFAULT_QUEUE
from poolparty.resources import Resources
from poolparty.retry import RetryPolicy

DOCS = Path(__file__).resolve().parent.parent / "docs"


def option_rows(page: str, first_header: str) -> list[tuple[list[str], list[str]]]:
    """(names, cells) of every row of the tables whose first header cell is ``first_header``: the names
    are the backticked words of the first cell (``a`` / ``b`` and ``a``, ``b`` name several)."""
    rows, in_table = [], False
    for line in (DOCS / page).read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] == first_header:
            in_table = True
        elif in_table and not set(cells[0]) <= {"-", ":"}:
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells))
    assert rows, f"no table headed {first_header!r} in docs/{page}"
    return rows


def plain(text: str) -> str:
    """A default as written, without Markdown, units or punctuation, lower case."""
    text = text.replace("`", "").lower()
    text = re.sub(r"\b(s|seconds)\b", "", text)
    return re.sub(r"[\s:,;\"']+", " ", text).strip()


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"(?<![\w.$-])\d+(?:\.\d+)?", text.replace("`", ""))]


def literal(value: Any) -> str:
    """How the docs write a literal default of the code."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


def engine_default_problem(name: str, documented: str) -> str | None:
    """Why ``documented`` is not the engine's default for option ``name`` (None: it is)."""
    doc = plain(documented)
    if name == "max_resubmissions":
        want = literal(RetryPolicy().max_resubmissions)
        return None if doc == want else f"code: {want}"
    if name == "retry":
        field = next(f for f in dataclasses.fields(EngineOptions) if f.name == "retry")
        return None if field.default_factory is RetryPolicy and doc.startswith("retrypolicy()") else \
            "code: RetryPolicy()"
    if name == "queue":
        return None if DEFAULT_QUEUE in doc.split() and doc.split()[-1] == DEFAULT_QUEUE else f"code: {DEFAULT_QUEUE}"
    if name == "max_running":  # local: the CPU count; a cluster queue: QueueAdapter.default_max_running
        cluster = QueueAdapter.default_max_running(LocalQueue.__new__(LocalQueue))
        ok = "cpu" in doc and numbers(documented) == [cluster] and LocalQueue().default_max_running() == os.cpu_count()
        return None if ok else f"code: local CPU count, cluster {cluster}"
    if name == "polling_interval":
        want = [LocalQueue.default_polling_interval, QueueAdapter.default_polling_interval]
        return None if numbers(documented) == want and "local" in doc else f"code: local {want[0]}, cluster {want[1]}"
    if name == "work_root":
        ok = "$tmpdir/poolparty-$uid" in doc and "./.poolparty" in doc
        return None if ok else "code: local $TMPDIR/poolparty-$UID, cluster ./.poolparty"
    defaults = {f.name: f.default for f in dataclasses.fields(EngineOptions)}
    if name not in defaults:
        return "not an EngineOptions field"
    value = defaults[name]
    if value is None:  # set by the engine or the queue when not given: the docs describe it in words
        return None if doc and not numbers(documented) else f"code: None (decided at run time), docs: {documented}"
    return None if doc == literal(value) else f"code: {literal(value)}"


def test_configuration_options_exist_with_their_defaults():
    problems = []
    for names, cells in option_rows("configuration.md", "option"):
        name = names[0]
        if name not in ENGINE_KEYWORDS:
            problems.append(f"{name}: not a pool option (ENGINE_KEYWORDS)")
            continue
        why = engine_default_problem(name, cells[1])
        if why:
            problems.append(f"{name}: docs say {cells[1]!r}; {why}")
        for alias in names[1:]:
            problems.append(f"{alias}: the table names one option per row")
    assert not problems, "docs/configuration.md option table:\n" + "\n".join(problems)


def test_configuration_resources_exist():
    documented = [names[0] for names, _ in option_rows("configuration.md", "resource")]
    assert sorted(documented) == sorted(Resources.names())


def test_prefect_runner_options_exist_with_their_defaults():
    from prefect_poolparty.runner import PoolPartyTaskRunner

    params = inspect.signature(PoolPartyTaskRunner.__init__).parameters
    session = inspect.getsource(PoolPartyTaskRunner._session)
    problems = []
    for names, cells in option_rows("prefect.md", "option"):
        for name in names:
            documented = cells[1]
            if name in params and params[name].kind is not inspect.Parameter.VAR_KEYWORD:
                default = params[name].default
                if default is None and name in ("coalesce_window", "relay_interval"):
                    # chosen per queue in _session: each documented number is a literal there
                    missing = [n for n in numbers(documented) if not re.search(rf"\b{n:g}\b", session)]
                    if missing or "local" not in documented:
                        problems.append(f"{name}: docs say {documented!r}; not in PoolPartyTaskRunner._session")
                elif default is None:
                    continue  # queue / max_running / tasks_per_job: decided at run time, described in words
                elif plain(documented) != literal(default):
                    problems.append(f"{name}: docs say {documented!r}; code: {default!r}")
            elif name in ENGINE_KEYWORDS:
                if documented and not documented.startswith("see") and (why := engine_default_problem(name, documented)):
                    problems.append(f"{name}: docs say {documented!r}; {why}")
            elif name not in Resources.names():
                problems.append(f"{name}: neither a PoolPartyTaskRunner argument, a pool option nor a resource")
    assert not problems, "docs/prefect.md option table:\n" + "\n".join(problems)


def test_snakemake_flags_exist_with_their_defaults():
    from snakemake_executor_plugin_poolparty.settings import ExecutorSettings

    fields = {f.name: f for f in dataclasses.fields(ExecutorSettings)}
    problems = []
    for names, cells in option_rows("snakemake.md", "flag"):
        flag = names[0].split()[0]
        name = flag.removeprefix("--poolparty-").replace("-", "_")
        if not flag.startswith("--poolparty-") or name not in fields:
            problems.append(f"{flag}: no ExecutorSettings field {name!r}")
            continue
        env = re.findall(r"`([^`]+)`", cells[1])
        if env != [f"SNAKEMAKE_POOLPARTY_{name.upper()}"] or not fields[name].metadata.get("env_var"):
            problems.append(f"{flag}: docs name the variable {env}, code: SNAKEMAKE_POOLPARTY_{name.upper()}")
        default, documented = fields[name].default, cells[2]
        if default is None:
            help_text = plain(fields[name].metadata["help"])
            missing = [n for n in numbers(documented) if f"{n:g}" not in help_text.split()]
            paths = [w for w in re.findall(r"`([^`]+)`", documented) if "/" in w]
            if missing or any(p.lower() not in help_text for p in paths):
                problems.append(f"{flag}: docs say {documented!r}; the field's help says {fields[name].metadata['help']!r}")
        elif isinstance(default, bool):
            if plain(documented) != ("yes" if default else "no"):
                problems.append(f"{flag}: docs say {documented!r}; code: {default!r}")
        elif plain(documented) != literal(default):
            problems.append(f"{flag}: docs say {documented!r}; code: {default!r}")
    assert not problems, "docs/snakemake.md flag table:\n" + "\n".join(problems)


@pytest.mark.parametrize("text, want", [("local 2; cluster 30", [2.0, 30.0]), ("0.05 s local, 0.5 s cluster", [0.05, 0.5]),
                                        ("`$TMPDIR/poolparty-$UID`", []), ("`-j`", [])])
def test_numbers_of_a_documented_default(text, want):
    assert numbers(text) == want
