#!/usr/bin/env python
"""What shipping the user's modules by value costs, for a task reaching a chain of two modules
(script -> a -> b), against the same task with a and b by reference (importable on the node, not
registered). The script's own function travels by value either way (cloudpickle pickles ``__main__``
by value), so the node imports cloudpickle in both.

    python benchmarks/bench_by_value.py      # ~20 s -> benchmarks/results/by-value.md

Measured side by side in one run, each number the median of fresh interpreters (``--repeat``):
- bytes: the pickled shared function of a map (once per map) and one pickled call (``Executor.submit``:
  the function travels with every call);
- driver ms: finding and registering the modules (``register_local_modules``: the first call walks, the
  next ones hit the per-function cache) and pickling;
- node ms: unpickling the shared function in a fresh interpreter that has imported the worker (what one
  job pays once; cloudpickle, which both import, imported before: by reference this is importing a and b
  from disk).
It measures the poolparty of this checkout (``../shared_core``). Creates nothing outside the system temp
dir and ``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "shared_core"

MODULES = {
    "a.py": "import b\n\n\ndef run_chain(x):\n    return b.scale(x) + 1\n",
    "b.py": "FACTOR = 100\n\n\ndef scale(x):\n    return x * FACTOR\n\n\nclass Thing:\n    def __init__(self, v):\n        self.v = v\n",
}

DRIVER = textwrap.dedent('''
    import json, pickle, sys, time
    mode, out = sys.argv[1], sys.argv[2]
    from a import run_chain
    from poolparty.engine import by_value
    from poolparty.payload import Call, SharedFunction

    def task(x):
        return run_chain(x)

    t0 = time.perf_counter()
    if mode == "value":
        by_value.register_local_modules([task])
    t1 = time.perf_counter()
    if mode == "value":
        by_value.register_local_modules([task])
    t2 = time.perf_counter()
    shared = by_value.dumps(SharedFunction(task))
    t3 = time.perf_counter()
    call = by_value.dumps([Call(task, (1,))])
    open(out, "wb").write(shared)
    print(json.dumps({"walk_ms": (t1 - t0) * 1e3, "walk_cached_ms": (t2 - t1) * 1e3,
                      "dumps_ms": (t3 - t2) * 1e3, "shared_bytes": len(shared), "call_bytes": len(call)}))
''')

NODE = textwrap.dedent('''
    import json, pickle, sys, time
    import poolparty.node.worker  # what a job has imported before it reads the function
    import cloudpickle  # imported by both (the script's function travels by value): not measured
    data = open(sys.argv[1], "rb").read()
    t0 = time.perf_counter()
    shared = pickle.loads(data)
    t1 = time.perf_counter()
    assert shared.fn(2) == 201
    print(json.dumps({"node_loads_ms": (t1 - t0) * 1e3}))
''')


def run(argv: list[str], cwd: Path, path: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def measure(mode: str, tmp: Path, repeat: int) -> dict[str, float]:
    """Medians over ``repeat`` fresh drivers and nodes. By value the node cannot import a and b (another
    directory, not on its path); by reference it imports them."""
    proj, node_dir = tmp / "proj", tmp / "node"
    rows = []
    for i in range(repeat):
        blob = tmp / f"{mode}-{i}.pkl"
        row = run(["driver.py", mode, str(blob)], proj, [str(SRC), str(proj)])
        row.update(run([str(tmp / "node.py"), str(blob)], node_dir,
                       [str(SRC)] + ([str(proj)] if mode == "reference" else [])))
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "proj").mkdir()
        (tmp / "node").mkdir()
        for name, text in MODULES.items():
            (tmp / "proj" / name).write_text(text)
        (tmp / "proj" / "driver.py").write_text(DRIVER)
        (tmp / "node.py").write_text(NODE)
        results = {mode: measure(mode, tmp, a.repeat) for mode in ("value", "reference")}
    keys = [("shared_bytes", "shared function of a map (bytes, once per map)"),
            ("call_bytes", "one call as Executor.submit pickles it (bytes, per call)"),
            ("walk_ms", "driver: find and register the modules, first call (ms)"),
            ("walk_cached_ms", "driver: the same, next calls (ms)"),
            ("dumps_ms", "driver: pickle the shared function (ms)"),
            ("node_loads_ms", "node: unpickle the shared function in a fresh worker (ms, once per job)")]
    lines = ["# Modules by value: a task reaching script -> a -> b", "",
             f"Python {sys.version.split()[0]}, medians of {a.repeat} fresh interpreters "
             "(`python benchmarks/bench_by_value.py`).", "",
             "| measure | by value | by reference | ratio |", "|---|---|---|---|"]
    for key, label in keys:
        v, r = results["value"][key], results["reference"][key]
        ratio = f"{v / r:.2f}" if r else "-"
        fmt = "{:.0f}" if key.endswith("bytes") else "{:.3f}"
        lines.append(f"| {label} | {fmt.format(v)} | {fmt.format(r)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    out = HERE / "results" / "by-value.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
