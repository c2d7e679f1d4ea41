"""Renders a cluster benchmark (the .json that bench_cluster.py writes) as a markdown table, a PNG plot
and a short stdout summary. ``bench_cluster.py --report-only results/cluster.json`` re-renders."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable

TARGET_RATIO = 1.25
TARGET_FILES = 50
ORDER = ["poolparty", "floor", "floor+imports", "floor+lean", "pypoolparty", "submitit", "dask-jobqueue"]
COLORS = {"poolparty": "#d62728", "floor": "#222222", "floor+imports": "#888888", "floor+lean": "#bbbbbb", "pypoolparty": "#1f77b4", "submitit": "#2ca02c",
          "dask-jobqueue": "#9467bd"}
CALL_COLUMNS = {"slurm": ("sbatch", "squeue", "sacct", "scancel", "scontrol", "srun"),
                "sge": ("qsub", "qstat", "qdel", "qconf", "qacct", "qalter")}
SYSTEM_LABEL = {
    "poolparty": "poolparty `Pool`",
    "floor": "floor (`sbatch --array`)",
    "floor+imports": "floor + `import poolparty.node.worker` (diagnosis)",
    "floor+lean": "floor + `import json, struct, zlib, fcntl, pickle` (diagnosis)",
    "pypoolparty": "pypoolparty `slurm.array.Pool`",
    "submitit": "submitit `map_array`",
    "dask-jobqueue": "dask-jobqueue `SLURMCluster`",
}
SGE_LABEL = {"poolparty": "poolparty `Pool`", "floor": "floor (`qsub -t`)", "pypoolparty": "pypoolparty SGE `Pool`"}


def ok(r: dict) -> bool:
    return bool(r["complete"] and r["correct"])


def med(xs: Iterable[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _idle(x: float | None) -> str:
    """sacct's Elapsed is whole seconds per job: sub-second jobs can sum below the tasks' own time."""
    return "–" if x is None else ("~0" if x < 0.5 else f"{x:.0f}")


def f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


class Data:
    def __init__(self, data: dict):
        self.extra = {k: data[k] for k in ("startup", "py_spy") if k in data}
        self.env = data["env"]
        self.args = data["args"]
        self.cases = data["cases"]
        self.rows = data["rows"]

    def runs(self, case: str, system: str) -> list[dict]:
        return [r for r in self.rows if r["case"] == case and r["system"] == system]

    def systems(self, case: str) -> list[str]:
        present = {r["system"] for r in self.rows if r["case"] == case}
        return [s for s in ORDER if s in present]

    def wall(self, case: str, system: str, only_ok: bool = True) -> float | None:
        rs = self.runs(case, system)
        if only_ok and not all(ok(r) for r in rs):
            return None
        return med(r["wall"] for r in rs)

    def case_keys(self, workload: str, queue: str) -> list[str]:
        keys = [c["key"] for c in self.cases if c["workload"] == workload and c["queue"] == queue]
        return [k for k in keys if any(r["case"] == k for r in self.rows)]

    def case(self, key: str) -> dict:
        return next(c for c in self.cases if c["key"] == key)


# -- markdown ---------------------------------------------------------------------------------------
def outcome_cell(rs: list[dict]) -> str:
    good = sum(ok(r) for r in rs)
    cell = f"{good}/{len(rs)}"
    bad = [r for r in rs if not ok(r)]
    if bad:
        r = bad[0]
        why = r["outcome"] if r["outcome"] != "finished" else (r["error"] or "wrong results")
        if r["outcome"] == "error" and r["error"]:
            why = r["error"]
        cell += f" — {why[:90]} ({r['n_results']:,}/{r['n']:,} results)"
    return cell


def case_table(d: Data, key: str, label: dict[str, str], fault_col: bool = False) -> list[str]:
    c = d.case(key)
    queue = c["queue"]
    calls = CALL_COLUMNS[queue]
    floor = d.wall(key, "floor")
    head = ("| system | wall s (median) | runs s | tasks/s | x floor | " + " | ".join(calls) +
            " | files peak / end | idle core-s | driver RSS MiB | driver CPU s | " + ("cancelled | " if fault_col else "") +
            "complete & correct |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in d.systems(key):
        rs = d.runs(key, s)
        w = med(r["wall"] for r in rs)
        all_ok = all(ok(r) for r in rs)
        ratio = w / floor if (w is not None and floor and all_ok) else None
        tps = c["n"] / w if (w and all_ok) else None
        n_note = f" (n={len(rs)})" if len(rs) < c["reps"] else ""
        cells = [
            label.get(s, s) + n_note,
            ("**" + f(w, ".2f") + "**") if all_ok else f"{f(w, '.1f')} (not a result)",
            ", ".join(f(r["wall"], ".1f") for r in rs),
            f(tps, ",.0f"),
            f(ratio, ".2f") + "x" if ratio else "–",
            *[f(med(r["calls"].get(k, 0) for r in rs), ".0f") for k in calls],
            f"{f(med(r['files_peak'] for r in rs), '.0f')} / {f(med(r['files_end'] for r in rs), '.0f')}",
            _idle(med(r["idle_core_s"] for r in rs)),
            f(med((r["maxrss_kb"] or 0) / 1024 for r in rs if r["maxrss_kb"]), ".0f"),
            f(med(r.get("driver_cpu_s") for r in rs), ".1f"),
        ]
        if fault_col:
            cells.append(", ".join(str(r["faults_cancelled"]) for r in rs))
        cells.append(outcome_cell(rs))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(d: Data) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    small = d.case_keys("small", "slurm")
    # 1. <= 1.25x the floor for N >= 1,000
    for key in small:
        n = d.case(key)["n"]
        if n < 1000:
            continue
        pp, fl = d.wall(key, "poolparty"), d.wall(key, "floor")
        if pp is None or fl is None:
            out.append((f"W1 N={n:,}: poolparty <= {TARGET_RATIO}x floor", False if pp is None else None,
                        "poolparty incomplete" if pp is None else "no floor"))
            continue
        pairs = [p["wall"] / q["wall"] for p, q in zip(d.runs(key, "poolparty"), d.runs(key, "floor"))]
        out.append((f"W1 N={n:,}: poolparty <= {TARGET_RATIO}x floor", pp / fl <= TARGET_RATIO,
                    f"{pp:.2f} s / {fl:.2f} s = **{pp / fl:.2f}x** (pairs {', '.join(f'{x:.2f}' for x in pairs)})"))
    # 2. faster than every peer on workloads 1 and 2
    for key in small + d.case_keys("long", "slurm"):
        c = d.case(key)
        pp = d.wall(key, "poolparty")
        peers = [s for s in d.systems(key) if s not in ("poolparty", "floor")]
        if pp is None or not peers:
            continue
        worse = []
        for s in peers:
            w = d.wall(key, s)
            if w is not None and w <= pp:
                worse.append(f"{s} {w:.2f} s")
        best = min(((d.wall(key, s), s) for s in peers if d.wall(key, s) is not None), default=(None, "-"))
        detail = f"poolparty {pp:.2f} s; fastest peer {best[1]} {f(best[0], '.2f')} s"
        if worse:
            detail += f" — beaten by {', '.join(worse)}"
        out.append((f"W{1 if c['workload'] == 'small' else 2} N={c['n']:,}: poolparty faster than every peer",
                    not worse, detail))
    # 3. submissions independent of N; one status query per poll
    subs = {d.case(k)["n"]: med(r["calls"].get("sbatch", 0) for r in d.runs(k, "poolparty")) for k in small}
    subs = {n: s for n, s in subs.items() if s is not None}
    if subs:
        polls = []
        for k in small:
            for r in d.runs(k, "poolparty"):
                if r.get("stats"):
                    polls.append((r["calls"].get("squeue", 0), r["stats"].get("polls", 0)))
        same = len(set(subs.values())) == 1
        out.append(("W1: poolparty submissions independent of N", same,
                    "sbatch calls by N: " + ", ".join(f"{n:,}: {s:.0f}" for n, s in sorted(subs.items())) +
                    (f"; squeue calls = dispatcher polls in {sum(a == b for a, b in polls)}/{len(polls)} runs"
                     if polls else "")))
    # 4. files under 50 at the largest N
    if small:
        key = max(small, key=lambda k: d.case(k)["n"])
        rs = d.runs(key, "poolparty")
        if rs:
            peak = max(r["files_peak"] for r in rs)
            out.append((f"W1 N={d.case(key)['n']:,}: poolparty files < {TARGET_FILES}", peak < TARGET_FILES,
                        f"peak {peak}, left at the end {max(r['files_end'] for r in rs)}"))
    # 5. workload 3: complete and correct in every run
    for key in d.case_keys("faulty", "slurm"):
        rs = d.runs(key, "poolparty")
        if rs:
            out.append(("W3: poolparty complete and correct in every run", all(ok(r) for r in rs),
                        f"{sum(ok(r) for r in rs)}/{len(rs)} runs; elements cancelled per run: "
                        f"{', '.join(str(r['faults_cancelled']) for r in rs)}; walls "
                        f"{', '.join(f(r['wall'], '.1f') for r in rs)} s"))
    return out


def markdown(d: Data, png: Path) -> str:
    e, a = d.env, d.args
    v = e["versions"]
    quick = " (quick smoke run)" if a.get("quick") else ""
    hold = "burn CPU" if a.get("cpu") else "sleep"
    lines = [
        f"# poolparty vs its peers on the test cluster{quick}",
        "",
        f"{e['date']}, {e['host']}, {e['cores']} real core(s), Python {e['python']}, {e['slurm']}, MaxArraySize "
        f"{e['max_array_size']}, SGE 8.1.9 (16 slots). poolparty {v['poolparty']} from this checkout at "
        f"{e['git']}; pypoolparty {v['pypoolparty']}, submitit {v['submitit']}, dask-jobqueue {v['dask-jobqueue']} "
        f"(distributed {v['distributed']}), cloudpickle {v['cloudpickle']}; venv `{e['venv']}`. Load average "
        f"{e['load_start'][0]:.1f} at start, {e.get('load_end', [0])[0]:.1f} at the end; total bench time "
        f"**{e.get('total_s', 0) / 60:.1f} min**, of which {e.get('quiet_wait_s', 0):.0f} s waiting for other users' "
        f"jobs to leave the cluster. Command: `{e.get('command', 'benchmarks/bench_cluster.py')}`.",
        "",
        f"![plot]({png.name})",
        "",
        "## How to read this",
        "",
        f"* Every system runs the same chunks: ceil(N / 64) tasks per chunk (poolparty's default at "
        f"max_running={a['max_running']}), at most {a['max_running']} running at once (the node's 16 CPUs). "
        "poolparty: `chunksize`, one array of one element per chunk, whose elements go on with the chunks of "
        "elements not started yet (`claim_chunks`, its default: fewer Python start-ups; the left-over elements "
        "are cancelled when all is stored); floor: one array element per chunk, each its own process; submitit `map_array` and pypoolparty's array "
        "pool (which **ignores** `chunksize`) map a `run_chunk` function over the list of chunks; dask-jobqueue: "
        "`client.map(run_chunk, chunks)` (one dask task per chunk) on 1-core workers, `adapt(maximum_jobs=16)`. "
        "pypoolparty's SGE pool honours `chunksize` (one plain `qsub` per chunk, no concurrency cap); it is given a "
        "two-line `python_path` wrapper that execs the venv's interpreter by full path, because with the venv's "
        "python itself every SGE job dies with `ModuleNotFoundError: pypoolparty` and `map()` returns `None` for "
        "every task without raising. Everything else is each system's default (polling intervals included).",
        "* Repetitions: poolparty and the floor run 3 times per case (the ratio targets); each peer once per case "
        "(marked n=1), except that a peer whose first run's time above the ideal (waves of 16 chunks x one chunk's "
        "duration) is within 1.25x of poolparty's first run's (or less) "
        "is run 3 times too (a close call decides \"faster than every peer\"); at N = 50,000 only poolparty and "
        "the floor, at N = 100 and in workload 2 the floor once (no ratio target there), SGE once per system: the workloads alone hold "
        "the 16 slots for ~15 min per 3 runs of 5 systems, so the full matrix (`--complete`) takes about twice "
        "the 15-minute budget. In workload 3 a system that fails or hangs is not run again.",
        f"* Tasks {hold} for their duration (10 ms, 5 s, 50 ms): the node advertises 16 CPUs on "
        f"{e['cores']} real cores, so CPU-bound tasks would measure the cores, not the systems "
        "(`--cpu` switches to CPU-burning tasks). Results are checked: task i returns i*i+7.",
        "* **wall**: from creating the pool/executor/cluster (imports done) to having every result; each run is a "
        "fresh interpreter; systems run in turn, the order rotating every repetition (A B C, B C A, ...). "
        "**x floor**: median over median of the same case. Runs of a case that did not return every result "
        "correctly show their time as \"not a result\".",
        "* **calls**: scheduler commands counted by a PATH shim, medians per run (srun counts calls from inside jobs). "
        "**files**: regular files under the system's own work/log directory, peak (sampled every 0.2 s) and left "
        "at the end. **idle core-s**: from `sacct` (SGE: the accounting file), sum of AllocCPUS x Elapsed over "
        "the run's jobs minus the time the tasks held their slot (N x duration; with `--cpu`, minus TotalCPU as "
        "sacct reports it) — start-up, polling lag and idle pilots; 1-s resolution per job. **driver RSS**: "
        "`ru_maxrss` of the driver process.",
        f"* Other engineers share this cluster: each run waits up to {a['quiet_wait']:.0f} s for the queue to empty "
        "first (`foreign_jobs_at_start` in the JSON records what remained). Medians of interleaved runs absorb "
        "some of the noise, not all of it.",
        "",
    ]
    found = targets(d)
    if found:
        lines += ["## Targets", "", "| target | met | measured |", "|---|---|---|"]
    for name, met, detail in found:
        lines.append(f"| {name} | {'yes' if met else ('**no**' if met is False else '?')} | {detail} |")
    for workload, title in (("profile", "Diagnosis: the floor plus poolparty's worker imports, or a lean worker's "
                                        "({ms:g} ms tasks)"),
                            ("small", "Workload 1: many small tasks ({ms:g} ms each)"),
                            ("long", "Workload 2: few long tasks"),
                            ("faulty", "Workload 3: faulty cluster (5% of running array elements cancelled)")):
        for queue, label in (("slurm", SYSTEM_LABEL), ("sge", SGE_LABEL)):
            keys = d.case_keys(workload, queue)
            if not keys:
                continue
            lines += ["", f"## {title.format(ms=a['task_ms'])} — {queue.upper()}", ""]
            for key in keys:
                c = d.case(key)
                cs = d.runs(key, d.systems(key)[0])[0]
                lines += [f"**N = {c['n']:,}** tasks of {c['seconds'] * 1000:g} ms, chunksize {cs['chunksize']} "
                          f"({cs['chunks']} chunks), {c['reps']} run(s) per system", ""]
                lines += case_table(d, key, label, fault_col=c["faults"])
                lines.append("")
    if "startup" in d.extra:
        lines += ["## Start-up cost of one process (what every chunk pays)", "",
                  "Median of 15 interleaved runs, CPU = user + system time from `wait4`, same environment as the "
                  "jobs (pycache prefix warm). On this node 16 slots share the real cores, so a chunk's start-up CPU "
                  "is paid in wall time by the whole wave.", "",
                  "| process | CPU ms | wall ms |", "|---|---:|---:|"]
        for x in d.extra["startup"]:
            lines.append(f"| {x['kind']} | {x['cpu_ms']:.0f} | {x['wall_ms']:.0f} |")
        lines.append("")
    for spy in d.extra.get("py_spy", []):
        rate = spy["rate"]
        lines += [f"## py-spy on the poolparty driver, N = {spy['n']:,} (wall {f(spy['wall'], '.1f')} s, driver CPU "
                  f"{f(spy['driver_cpu_s'], '.2f')} s)", "",
                  f"{spy['samples']} samples at {rate} Hz of non-idle stacks; by thread: " +
                  ", ".join(f"{k} {v / rate:.2f} s" for k, v in spy["threads"].items()) +
                  ". Inclusive time of poolparty's own functions:", "",
                  "| function | s |", "|---|---:|"]
        for label, k in spy["top"]:
            lines.append(f"| `{label}` | {k / rate:.2f} |")
        lines.append("")
    small = d.case_keys("small", "slurm")
    if small:
        lines += ["## poolparty scaling (workload 1, SLURM)", "",
                  "| N | wall s | tasks/s | sbatch | squeue | polls (dispatcher) | files peak / end | driver RSS MiB |",
                  "|---:|---:|---:|---:|---:|---:|---|---:|"]
        for key in small:
            rs = d.runs(key, "poolparty")
            if not rs:
                continue
            n = d.case(key)["n"]
            w = med(r["wall"] for r in rs)
            lines.append(
                f"| {n:,} | {f(w, '.2f')} | {f(n / w if w else None, ',.0f')} "
                f"| {f(med(r['calls'].get('sbatch', 0) for r in rs), '.0f')} "
                f"| {f(med(r['calls'].get('squeue', 0) for r in rs), '.0f')} "
                f"| {f(med((r.get('stats') or {}).get('polls') for r in rs), '.0f')} "
                f"| {f(med(r['files_peak'] for r in rs), '.0f')} / {f(med(r['files_end'] for r in rs), '.0f')} "
                f"| {f(med(r['maxrss_kb'] / 1024 for r in rs if r['maxrss_kb']), '.0f')} |")
    lines += ["", "Raw per-run figures (timings, calls, accounting, errors): the `.json` next to this file.", ""]
    return "\n".join(lines)


# -- plot -------------------------------------------------------------------------------------------
def _legend(ax: Any, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=size)
    else:
        ax.text(0.5, 0.5, "not in this run", ha="center", va="center", transform=ax.transAxes, color="gray")

def plot(d: Data, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    small = d.case_keys("small", "slurm") or d.case_keys("profile", "slurm")
    ns = [d.case(k)["n"] for k in small]

    def series(key_fn, system: str, only_ok: bool = True):
        xs, ys, lo, hi = [], [], [], []
        for k, n in zip(small, ns):
            rs = d.runs(k, system)
            if not rs or (only_ok and not all(ok(r) for r in rs)):
                continue
            vals = [key_fn(r) for r in rs if key_fn(r) is not None]
            if not vals:
                continue
            m = statistics.median(vals)
            xs.append(n)
            ys.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        return xs, ys, [lo, hi]

    systems = [s for s in ORDER if any(r["system"] == s for r in d.rows if r["case"] in small)]
    ax = axes[0][0]
    for s in systems:
        xs, ys, err = series(lambda r: r["wall"], s)
        if xs:
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=COLORS[s], label=s,
                        linewidth=2.5 if s == "poolparty" else 1.2)
    ax.set(xscale="log", yscale="log", xlabel="tasks (10 ms each)", ylabel="wall time s (median, min-max)",
           title="W1 many small tasks: wall time (SLURM)")
    _legend(ax, 8)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[0][1]
    floor = {n: d.wall(k, "floor") for k, n in zip(small, ns)}
    for s in systems:
        if s == "floor":
            continue
        xs, ys = [], []
        for k, n in zip(small, ns):
            w = d.wall(k, s)
            if w is not None and floor.get(n):
                xs.append(n)
                ys.append(w / floor[n])
        if xs:
            ax.plot(xs, ys, marker="o", color=COLORS[s], label=s, linewidth=2.5 if s == "poolparty" else 1.2)
    ax.axhline(TARGET_RATIO, color="red", linestyle="--", linewidth=1, label=f"target {TARGET_RATIO}x")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set(xscale="log", xlabel="tasks", ylabel="wall / floor wall", title="W1: ratio to the hand-written floor")
    _legend(ax, 8)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[0][2]
    groups = [(k, "W2 40x5 s") for k in d.case_keys("long", "slurm")] + \
             [(k, "W3 faulty 2000x50 ms") for k in d.case_keys("faulty", "slurm")]
    present = [s for s in ORDER if any(d.runs(k, s) for k, _ in groups)]
    width = 0.8 / max(1, len(present))
    for gi, (key, label) in enumerate(groups):
        for si, s in enumerate(present):
            rs = d.runs(key, s)
            if not rs:
                continue
            w = med(r["wall"] for r in rs)
            good = all(ok(r) for r in rs)
            x = gi + (si - len(present) / 2 + 0.5) * width
            ax.bar(x, w, width, color=COLORS[s], hatch="" if good else "xx", alpha=1 if good else 0.45,
                   label=s if gi == 0 else None, edgecolor="black" if not good else None)
            ax.text(x, w, "ok" if good else ("hung" if any("hung" in r["outcome"] or "limit" in r["outcome"]
                                                         for r in rs) else "failed"),
                    ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(range(len(groups)), [g[1] for g in groups])
    ax.set(ylabel="wall time s (median)", title="W2 and W3 (hatched: incomplete or wrong)")
    _legend(ax, 8)
    ax.grid(True, axis="y", alpha=0.3)

    ax = axes[1][0]
    for kind, style in (("sbatch", "o-"), ("squeue", "s-"), ("scontrol", "^-"), ("scancel", "v-")):
        xs, ys, _ = series(lambda r, k=kind: r["calls"].get(k, 0), "poolparty", only_ok=False)
        if xs and any(ys):
            ax.plot(xs, ys, style, label=f"poolparty {kind}", color=COLORS["poolparty"],
                    alpha=1 if kind in ("sbatch", "squeue") else 0.5)
    for s in systems:
        if s == "poolparty":
            continue
        xs, ys, _ = series(lambda r: sum(r["calls"].values()), s, only_ok=False)
        if xs:
            ax.plot(xs, ys, ":", marker=".", color=COLORS[s], label=f"{s} (all calls)")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set(xscale="log", xlabel="tasks", ylabel="calls per run (median)", title="Scheduler calls per run")
    _legend(ax, 7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1][1]
    for s in systems:
        xs, ys, _ = series(lambda r: r["files_peak"], s, only_ok=False)
        if xs:
            ax.plot(xs, ys, marker="o", color=COLORS[s], label=f"{s} peak",
                    linewidth=2.5 if s == "poolparty" else 1.2)
    xs, ys, _ = series(lambda r: r["files_end"], "poolparty", only_ok=False)
    if xs:
        ax.plot(xs, ys, "--", marker="x", color=COLORS["poolparty"], label="poolparty left at the end")
    ax.axhline(TARGET_FILES, color="red", linestyle="--", linewidth=1, label=f"target < {TARGET_FILES}")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set(xscale="log", xlabel="tasks", ylabel="files in the work/log directory",
           title="Files in shared directories (poolparty: peak and left at the end)")
    _legend(ax, 7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1][2]
    for s in systems:
        xs, ys, _ = series(lambda r: (r["maxrss_kb"] or 0) / 1024 or None, s, only_ok=False)
        if xs:
            ax.plot(xs, ys, marker="o", color=COLORS[s], label=s, linewidth=2.5 if s == "poolparty" else 1.2)
    ax.set(xscale="log", xlabel="tasks", ylabel="driver peak RSS MiB", title="Driver memory (ru_maxrss)")
    _legend(ax, 8)
    ax.grid(True, which="both", alpha=0.3)

    e = d.env
    fig.suptitle(f"poolparty vs peers, single-node SLURM ({e['date']}, {e['cores']} real cores, "
                 f"16 slots){' — quick run' if d.args.get('quick') else ''}", fontsize=13)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# -- entry ------------------------------------------------------------------------------------------
def write(data: dict[str, Any], prefix: Path) -> str:
    d = Data(data)
    png, md = prefix.with_suffix(".png"), prefix.with_suffix(".md")
    plot(d, png)
    md.write_text(markdown(d, png))
    lines = [f"poolparty vs peers: {md} and {png} ({d.env.get('total_s', 0) / 60:.1f} min)"]
    for key in [c["key"] for c in d.cases]:
        if not any(r["case"] == key for r in d.rows):
            continue
        parts = []
        for s in d.systems(key):
            rs = d.runs(key, s)
            w = med(r["wall"] for r in rs)
            parts.append(f"{s} {f(w, '.1f')}s" + ("" if all(ok(r) for r in rs) else f" ({outcome_cell(rs)[:40]})"))
        lines.append(f"  {key}: " + ", ".join(parts))
    for name, met, detail in targets(d):
        lines.append(f"  [{'met' if met else ('MISSED' if met is False else '?')}] {name}: {detail}")
    return "\n".join(lines)
