#!/usr/bin/env python
"""``snakemake --executor poolparty`` against snakemake-executor-plugin-slurm on the test SLURM.

    python benchmarks/bench_snakemake.py                 # 200 jobs -> benchmarks/results/snakemake-200.md
    python benchmarks/bench_snakemake.py --jobs 40       # quicker  -> benchmarks/results/snakemake-40.md

The same workflow (``--jobs`` remote jobs: half of them ``a``, each ``b`` copying one ``a`` output, plus
a local ``all``) runs, each in a fresh directory, with

1. ``--executor poolparty --poolparty-queue slurm``,
2. ``--executor slurm`` (snakemake-executor-plugin-slurm, its defaults),
3. ``--executor slurm --slurm-array-jobs all`` (its array mode),

all with ``-j 100`` and the same Snakemake version. A PATH shim records every SLURM command each run
makes (``sbatch squeue sacct scancel scontrol sinfo sacctmgr sshare srun``, also those run inside the
jobs); the table shows wall time and the counts. Target of issue 4: poolparty makes at most a tenth of
the official plugin's submissions and is not slower.

Needs a real SLURM (``sudo ci/start-slurm.sh``). poolparty runs with the ``snakemake`` of the interpreter
running this script (the project's virtualenv: ``pip install -e . -e distributions/snakemake-executor-plugin-poolparty snakemake``). The official plugin
runs from its own virtualenv, ``--venv DIR`` (default: a cached one in the system temp dir, created on
first use with ``pip install snakemake==<same version> snakemake-executor-plugin-slurm``): it must not be
installed next to poolparty, since Snakemake imports every installed plugin at every start, in the
jobs too, and this one runs ``scontrol``/``sacct`` when imported (that would be charged to poolparty).
Not part of the test suite or CI.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from real_wlm import slurm_available  # noqa: E402

COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sacctmgr", "sshare", "srun")
SHIM = """#!{python}
import json, os, sys, time
with open({log!r}, "a") as f:
    f.write(json.dumps({{"t": time.time(), "cmd": {cmd!r}, "argv": sys.argv[1:]}}) + "\\n")
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""
SNAKEFILE = """
    N = {n}

    localrules: all

    rule all:
        input: expand("b/{{i}}.txt", i=range(N))

    rule a:
        output: "a/{{i}}.txt"
        shell: "echo {{wildcards.i}} > {{output}}"

    rule b:
        input: "a/{{i}}.txt"
        output: "b/{{i}}.txt"
        shell: "cp {{input}} {{output}}"
"""
VARIANTS = {
    "poolparty": ["--executor", "poolparty", "--poolparty-queue", "slurm"],
    "slurm": ["--executor", "slurm"],
    "slurm --slurm-array-jobs all": ["--executor", "slurm", "--slurm-array-jobs", "all"],
}


def ensure_venv(path: Path, version: str) -> Path:
    """A virtualenv with snakemake==version and the official SLURM plugin (and not poolparty's)."""
    python = path / "bin" / "python"
    snakemake = path / "bin" / "snakemake"
    if snakemake.exists():
        probe = subprocess.run([str(python), "-c", "import snakemake, snakemake_executor_plugin_slurm; "
                                "print(snakemake.__version__)"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return snakemake
    print(f"creating {path} (snakemake=={version}, snakemake-executor-plugin-slurm) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"snakemake=={version}",
                    "snakemake-executor-plugin-slurm"], check=True)
    return snakemake


def install_shims(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        real = shutil.which(cmd)
        if real:
            shim = bin_dir / cmd
            shim.write_text(SHIM.format(python=sys.executable, log=str(log), cmd=cmd, real=real))
            shim.chmod(0o755)


def run_variant(name: str, args: list[str], snakemake: Path, n: int, root: Path, timeout: float) -> dict:
    wd = root / name.split()[0].replace("-", "") / ("arrays" if "array" in name else "plain")
    wd.mkdir(parents=True)
    (wd / "Snakefile").write_text(textwrap.dedent(SNAKEFILE.format(n=n // 2)))
    log = wd / "calls.jsonl"
    install_shims(wd / "shim", log)
    env = dict(os.environ, PATH=f"{wd / 'shim'}{os.pathsep}{os.environ['PATH']}")
    t0 = time.monotonic()
    proc = subprocess.run([str(snakemake), *args, "-j", "100"], cwd=wd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    (wd / "snakemake.out").write_text(proc.stdout + proc.stderr)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts = {cmd: sum(1 for c in calls if c["cmd"] == cmd) for cmd in COMMANDS}
    done = len(list((wd / "b").glob("*.txt"))) if (wd / "b").exists() else 0
    output = (proc.stdout + proc.stderr).splitlines()
    errors = [line.strip() for line in output if line.strip().startswith("message:")]
    first_error = f"{len(errors)} job error(s), first: {errors[0][:200]}" if errors else ""
    return {"name": name, "rc": proc.returncode, "wall": wall, "counts": counts, "complete": done == n // 2,
            "dir": str(wd), "first_error": first_error}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200, help="remote jobs of the workflow (even; default 200)")
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "poolparty-bench-snakemake-venv")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: "
                   + ", ".join(VARIANTS))
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--keep", action="store_true", help="keep the run directories (printed)")
    a = p.parse_args()
    why = slurm_available()
    if why:
        print(f"needs a real SLURM: {why} (sudo ci/start-slurm.sh)", file=sys.stderr)
        return 2
    import snakemake as own_snakemake

    ours = Path(sys.executable).parent / "snakemake"
    probe = subprocess.run([sys.executable, "-c", "import snakemake_executor_plugin_slurm"], capture_output=True)
    if probe.returncode == 0:
        print("the official SLURM plugin is installed next to poolparty: uninstall it here and let this "
              "script create its own virtualenv (--venv)", file=sys.stderr)
        return 2
    theirs = ensure_venv(a.venv, own_snakemake.__version__)
    root = Path(tempfile.mkdtemp(prefix="bench-snakemake-"))
    started = time.strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()[0]
    results = []
    for name in [v.strip() for v in a.variants.split(",") if v.strip()]:
        print(f"{name}: {a.jobs} jobs ...", flush=True)
        snakemake = ours if name == "poolparty" else theirs
        r = run_variant(name, VARIANTS[name], snakemake, a.jobs, root, a.timeout)
        print(f"  rc {r['rc']}, {r['wall']:.1f} s, {r['counts']}", flush=True)
        results.append(r)
    load1 = os.getloadavg()[0]
    lines = [f"# snakemake --executor poolparty vs snakemake-executor-plugin-slurm, {a.jobs} jobs", "",
             f"{started}, {platform.node()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
             f"single-node test SLURM (ci/start-slurm.sh), `-j 100`. Load average {load0:.2f} at start, "
             f"{load1:.2f} at end. Workflow: {a.jobs // 2} `a` jobs, {a.jobs // 2} `b` jobs (each copies one "
             "`a` output), a local `all`. Counts include the commands run inside the jobs (`srun`).", "",
             "| executor | rc | complete | wall s | sbatch | squeue | sacct | scancel | scontrol | other |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r["counts"]
        other = sum(v for k, v in c.items() if k not in ("sbatch", "squeue", "sacct", "scancel", "scontrol"))
        lines.append(f"| {r['name']} | {r['rc']} | {'yes' if r['complete'] else 'NO'} | {r['wall']:.1f} | "
                     f"{c['sbatch']} | {c['squeue']} | {c['sacct']} | {c['scancel']} | {c['scontrol']} | {other} |")
    pp = next((r for r in results if r["name"] == "poolparty"), None)
    official = [r for r in results if r["name"] != "poolparty"]
    if pp and official:
        lines.append("")
        for r in official:
            if r["rc"] != 0 or not r["complete"]:
                lines.append(f"* `{r['name']}` did not complete (rc {r['rc']}): {r['first_error'] or '?'}")
                continue
            ratio = pp["counts"]["sbatch"] / max(1, r["counts"]["sbatch"])
            lines.append(f"* vs `{r['name']}`: {ratio:.2f}x the submissions (target <= 0.10), "
                         f"{pp['wall'] / r['wall']:.2f}x the wall time (target <= 1.00).")
    text = "\n".join(lines) + "\n"
    out = HERE / "results" / f"snakemake-{a.jobs}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    if a.keep:
        print(f"run directories kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["rc"] == 0 and r["complete"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
