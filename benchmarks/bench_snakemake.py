"""``snakemake --executor poolparty`` against snakemake-executor-plugin-slurm on the test SLURM.

    python benchmarks/bench_snakemake.py                 # 200 jobs -> benchmarks/results/snakemake-200.md
    python benchmarks/bench_snakemake.py --jobs 1000     # 1,000    -> benchmarks/results/snakemake-1000.md
    python benchmarks/bench_snakemake.py --queue local --jobs 60 -j 4   # -> snakemake-local-60.md

``--queue local`` compares, on this machine, Snakemake's own local executor with ``--executor poolparty
--poolparty-queue local`` (warm elements, the default; ``--poolparty-linger 0``: forked jobs without warm
elements; ``--poolparty-fork-jobs no``), same ``-j``, ``--rounds N`` times interleaved; target of issue
18: at most 1.5x the local executor's wall time.

The same workflow (``--jobs`` remote jobs: half of them ``a``, each ``b`` copying one ``a`` output, plus
a local ``all``) runs, each in a fresh directory and one after the other in one run, with

1. ``--executor poolparty --poolparty-queue slurm`` (jobs in children forked from elements that linger
   for later scheduling rounds, the default),
1b. the same with ``--poolparty-linger 0`` (forked jobs, elements exit after their own round: the
   behaviour before the warm elements),
2. the same with ``--poolparty-fork-jobs no`` (one ``python -m snakemake`` per job: the behaviour
   before issue 18, for the before/after ratio),
3. ``--executor slurm`` (snakemake-executor-plugin-slurm, its defaults),
4. ``--executor slurm --slurm-array-jobs all`` (its array mode),

all with ``-j 100`` and the same Snakemake and Python. A PATH shim records every SLURM command each run
makes (``sbatch squeue sacct scancel scontrol sinfo sacctmgr sshare srun``, also those run inside the
jobs). After each run, ``sacct`` gives the run's allocated core-seconds (elapsed x CPUs of every job it
submitted, found by the job names in its ``sbatch`` calls) and the CPU time used in them; idle
core-seconds are the difference. Targets of issue 18: poolparty at most 0.3x its own wall time before
(variant 2) and 0.1x the official plugin's, with no more submissions.

Needs a real SLURM (``sudo ci/start-slurm.sh``) and poolparty's plugin installed
(``pip install -e . -e distributions/snakemake-executor-plugin-poolparty snakemake``). The official plugin is not installed next to poolparty
(Snakemake imports every installed plugin at every start, in the jobs too, and this one runs
``scontrol`` when imported: that would be charged to poolparty): it is installed once with
``pip install --target DIR`` (``--official-path``, default a directory in the system temp dir) and put on
``PYTHONPATH`` for its runs only, so both use the same interpreter and Snakemake.
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
    "poolparty --poolparty-linger 0": ["--executor", "poolparty", "--poolparty-queue", "slurm",
                                       "--poolparty-linger", "0"],
    "poolparty --poolparty-fork-jobs no": ["--executor", "poolparty", "--poolparty-queue", "slurm",
                                           "--poolparty-fork-jobs", "no"],
    "slurm": ["--executor", "slurm"],
    "slurm --slurm-array-jobs all": ["--executor", "slurm", "--slurm-array-jobs", "all"],
}
LOCAL_VARIANTS = {
    "snakemake local executor": [],
    "poolparty": ["--executor", "poolparty", "--poolparty-queue", "local"],
    "poolparty --poolparty-linger 0": ["--executor", "poolparty", "--poolparty-queue", "local",
                                       "--poolparty-linger", "0"],
    "poolparty --poolparty-fork-jobs no": ["--executor", "poolparty", "--poolparty-queue", "local",
                                           "--poolparty-fork-jobs", "no"],
}
OFFICIAL = ("snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep")


def ensure_official(path: Path) -> str:
    """The official plugin (and its dependencies missing here) in a ``--target`` directory; its version."""
    def version() -> str:
        probe = subprocess.run([sys.executable, "-c", "from importlib.metadata import version; "
                                f"print(version({OFFICIAL[0]!r}))"], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=str(path)))
        return probe.stdout.strip() if probe.returncode == 0 else ""

    if not version():
        print(f"installing {', '.join(OFFICIAL)} into {path} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(path), *OFFICIAL],
                       check=True)
    return version()


def install_shims(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for cmd in COMMANDS:
        real = shutil.which(cmd)
        if real:
            shim = bin_dir / cmd
            shim.write_text(SHIM.format(python=sys.executable, log=str(log), cmd=cmd, real=real))
            shim.chmod(0o755)


def job_names(calls: list[dict]) -> set[str]:
    """The SLURM job names a run submitted (``--job-name X`` / ``--job-name=X`` / ``-J X``)."""
    names = set()
    for c in calls:
        if c["cmd"] != "sbatch":
            continue
        argv = c["argv"]
        for i, a in enumerate(argv):
            if a.startswith("--job-name="):
                names.add(a.split("=", 1)[1])
            elif a in ("--job-name", "-J") and i + 1 < len(argv):
                names.add(argv[i + 1])
    return names


def _seconds(text: str) -> float:
    """sacct's ``[D-]HH:MM:SS[.mmm]`` or ``MM:SS.mmm``."""
    days, _, rest = text.rpartition("-")
    parts = [float(x) for x in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return (int(days) if days else 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def core_seconds(names: set[str], since: str) -> tuple[float, float]:
    """(allocated core-seconds, CPU-seconds used) of the jobs with these names, from sacct."""
    if not names:
        return 0.0, 0.0
    sacct = shutil.which("sacct") or "sacct"
    out = subprocess.run([sacct, "--parsable2", "--noheader", "-S", since, "--name", ",".join(sorted(names)),
                          "--format=JobIDRaw,CPUTimeRAW,TotalCPU"], capture_output=True, text=True).stdout
    allocated = used = 0.0
    for line in out.splitlines():
        jobid, cputime, total = (line.split("|") + ["", "", ""])[:3]
        if "." not in jobid and cputime.isdigit():
            allocated += int(cputime)  # the allocation: elapsed x CPUs
        elif "." in jobid and total:
            used += _seconds(total)  # steps (batch, srun): CPU time used
    return allocated, used


def run_variant(name: str, args: list[str], n: int, root: Path, timeout: float, official: Path,
                jobs: int = 100) -> dict:
    wd = root / name.replace(" ", "_").replace("-", "")
    wd.mkdir(parents=True)
    (wd / "Snakefile").write_text(textwrap.dedent(SNAKEFILE.format(n=n // 2)))
    log = wd / "calls.jsonl"
    install_shims(wd / "shim", log)
    env = dict(os.environ, PATH=f"{wd / 'shim'}{os.pathsep}{os.environ['PATH']}")
    if name.startswith("slurm"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(official), env.get("PYTHONPATH")]))
    snakemake = Path(sys.executable).parent / "snakemake"
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run([str(snakemake), *args, "-j", str(jobs)], cwd=wd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    (wd / "snakemake.out").write_text(proc.stdout + proc.stderr)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    counts = {cmd: sum(1 for c in calls if c["cmd"] == cmd) for cmd in COMMANDS}
    done = len(list((wd / "b").glob("*.txt"))) if (wd / "b").exists() else 0
    output = (proc.stdout + proc.stderr).splitlines()
    errors = [line.strip() for line in output if line.strip().startswith("message:")]
    first_error = f"{len(errors)} job error(s), first: {errors[0][:200]}" if errors else ""
    time.sleep(2)  # let slurmdbd record the last jobs
    allocated, used = core_seconds(job_names(calls), since)
    return {"name": name, "rc": proc.returncode, "wall": wall, "counts": counts, "complete": done == n // 2,
            "dir": str(wd), "first_error": first_error, "allocated": allocated, "idle": max(0.0, allocated - used),
            "load": load}


def report(results: list[dict], n: int, started: str, load: tuple[float, float], official_version: str) -> str:
    lines = [f"# snakemake --executor poolparty vs snakemake-executor-plugin-slurm, {n} jobs", "",
             f"{started}, {platform.node()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
             f"single-node test SLURM (ci/start-slurm.sh), `-j 100`, snakemake-executor-plugin-slurm "
             f"{official_version or '?'}. Load average {load[0]:.2f} at start, {load[1]:.2f} at end. Workflow: "
             f"{n // 2} `a` jobs, {n // 2} `b` jobs (each copies one `a` output), a local `all`. Counts include "
             "the commands run inside the jobs (`srun`). Status calls: `squeue` + `sacct` (+ `scontrol` for "
             "the official plugin's job checks). Core-s: allocated (sacct elapsed x CPUs) and idle "
             "(allocated minus the CPU time the jobs used).", "",
             "| executor | rc | complete | wall s | load | sbatch | squeue | sacct | scancel | scontrol | other "
             "| core-s allocated | core-s idle |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        c = r["counts"]
        other = sum(v for k, v in c.items() if k not in ("sbatch", "squeue", "sacct", "scancel", "scontrol"))
        lines.append(f"| {r['name']} | {r['rc']} | {'yes' if r['complete'] else 'NO'} | {r['wall']:.1f} | "
                     f"{r.get('load', 0):.1f} | {c['sbatch']} | {c['squeue']} | {c['sacct']} | {c['scancel']} | {c['scontrol']} | {other} "
                     f"| {r['allocated']:.0f} | {r['idle']:.0f} |")
    pp = next((r for r in results if r["name"] == "poolparty"), None)
    if pp:
        lines.append("")
        for r in results:
            if r is pp:
                continue
            if r["rc"] != 0 or not r["complete"]:
                lines.append(f"* `{r['name']}` did not complete (rc {r['rc']}): {r['first_error'] or '?'}")
                continue
            target = "0.30" if r["name"].startswith("poolparty") else "0.10"
            ratio = pp["counts"]["sbatch"] / max(1, r["counts"]["sbatch"])
            lines.append(f"* poolparty vs `{r['name']}`: {pp['wall'] / r['wall']:.2f}x the wall time (target "
                         f"<= {target}), {ratio:.2f}x the submissions, "
                         f"{pp['idle'] / max(1.0, r['idle']):.2f}x the idle core-seconds.")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200, help="remote jobs of the workflow (even; default 200)")
    p.add_argument("--official-path", type=Path,
                   default=Path(tempfile.gettempdir()) / "poolparty-bench-snakemake-official",
                   help="pip --target directory of the official SLURM plugin (created on first use)")
    p.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS)
                   + " (--queue local: of " + ", ".join(LOCAL_VARIANTS) + ")")
    p.add_argument("--rounds", type=int, default=1, help="--queue local: run the variants this many times, "
                   "interleaved (the load of other work changes); the median wall time counts")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--out", default=None, help="results file name under benchmarks/results/ (default "
                   "snakemake-<jobs>.md, or snakemake-local-<jobs>.md)")
    p.add_argument("--keep", action="store_true", help="keep the run directories (printed)")
    p.add_argument("--queue", choices=("slurm", "local"), default="slurm")
    p.add_argument("-j", type=int, default=4, help="--queue local: Snakemake's -j (default 4)")
    a = p.parse_args()
    if a.queue == "local":
        return main_local(a)
    why = slurm_available()
    if why:
        print(f"needs a real SLURM: {why} (sudo ci/start-slurm.sh)", file=sys.stderr)
        return 2
    probe = subprocess.run([sys.executable, "-c", "import snakemake_executor_plugin_slurm"], capture_output=True)
    if probe.returncode == 0:
        print("the official SLURM plugin is installed next to poolparty: its import-time scheduler calls would "
              "be charged to poolparty; uninstall it here (this script puts it on PYTHONPATH for its own "
              "runs, --official-path)", file=sys.stderr)
        return 2
    names = [v.strip() for v in (a.variants or ",".join(VARIANTS)).split(",") if v.strip()]
    official_version = ensure_official(a.official_path) if any(v.startswith("slurm") for v in names) else ""
    root = Path(tempfile.mkdtemp(prefix="bench-snakemake-"))
    started = time.strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()[0]
    results = []
    for name in names:
        print(f"{name}: {a.jobs} jobs ...", flush=True)
        r = run_variant(name, VARIANTS[name], a.jobs, root, a.timeout, a.official_path)
        print(f"  rc {r['rc']}, {r['wall']:.1f} s, {r['counts']}, core-s {r['allocated']:.0f} "
              f"(idle {r['idle']:.0f})", flush=True)
        results.append(r)
    text = report(results, a.jobs, started, (load0, os.getloadavg()[0]), official_version)
    out = HERE / "results" / (a.out or f"snakemake-{a.jobs}.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    if a.keep:
        print(f"run directories kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["rc"] == 0 and r["complete"] for r in results) else 1


def main_local(a: argparse.Namespace) -> int:
    """Snakemake's own local executor against poolparty's local queue, same -j, one after the other."""
    root = Path(tempfile.mkdtemp(prefix="bench-snakemake-local-"))
    started, load0 = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    names = [v.strip() for v in (a.variants or ",".join(LOCAL_VARIANTS)).split(",") if v.strip()]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for i in range(a.rounds):
        for name in names:
            print(f"{name}: {a.jobs} jobs, -j {a.j} (round {i + 1}) ...", flush=True)
            r = run_variant(name, LOCAL_VARIANTS[name], a.jobs, root / f"round{i}", a.timeout, a.official_path,
                            jobs=a.j)
            print(f"  rc {r['rc']}, {r['wall']:.1f} s, load {r['load']:.1f}", flush=True)
            runs[name].append(r)
    results = [median_run(runs[name]) for name in names]
    own = results[0]
    lines = [f"# snakemake --executor poolparty --poolparty-queue local vs Snakemake's local executor, "
             f"{a.jobs} jobs, -j {a.j}", "",
             f"{started}, {platform.node()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}. Load "
             f"average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end (other work on the machine). "
             f"Workflow: {a.jobs // 2} `a` jobs (echo), {a.jobs // 2} `b` jobs (copy), a local `all`.", "",
             f"Each variant ran {a.rounds} time(s), interleaved (round by round: the load of other work changes "
             "from one minute to the next, so the ratio that counts is the one within a round). Per run: wall "
             "time, load average when it started, and the ratio to the local executor's run of the same round; "
             "the last column is the median of those ratios.", "",
             "| executor | runs: wall s (load) ratio | median ratio |", "|---|---|---:|"]
    for name in names:
        ratios = [x["wall"] / o["wall"] for x, o in zip(runs[name], runs[own["name"]])]
        every = "; ".join(f"{x['wall']:.1f} s ({x['load']:.1f}) {q:.2f}x"
                          + ("" if x["rc"] == 0 and x["complete"] else " FAILED") for x, q in zip(runs[name], ratios))
        lines.append(f"| {name} | {every} | {sorted(ratios)[(len(ratios) - 1) // 2]:.2f}x |")
    lines += ["", "Target of issue 18: poolparty at most 1.50x the local executor's wall time."]
    text = "\n".join(lines) + "\n"
    out = HERE / "results" / (a.out or f"snakemake-local-{a.jobs}.md")
    out.write_text(text)
    print(text)
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["rc"] == 0 and r["complete"] for r in results) else 1


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (a failed run counts as the slowest)."""
    ranked = sorted(runs, key=lambda r: (r["rc"] != 0 or not r["complete"], r["wall"]))
    return ranked[(len(ranked) - 1) // 2]


if __name__ == "__main__":
    sys.exit(main())
