"""Shared fixtures: one behavioural suite runs against the local queue, the fake schedulers (fault
injection) and, where present, the real SLURM and SGE daemons started by ``ci/start-*.sh``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

from real_wlm import require_or_skip, sge_available, slurm_available  # noqa: E402

import poolparty  # noqa: E402
from poolparty.queues.base import QueueAdapter  # noqa: E402
from poolparty.queues.cli import SchedulerCLI  # noqa: E402

SCHEDULER_COMMANDS = {
    "slurm": ("sbatch", "squeue", "scancel", "scontrol", "sacct"),
    "sge": ("qsub", "qstat", "qdel", "qconf", "qacct", "qalter"),
    "pbs": ("qsub", "qstat", "qdel", "qalter", "qselect"),
    "lsf": ("bsub", "bjobs", "bkill", "bmod", "bparams"),
}
#: per flavor: the submit command, the status command, the lowest array index
SUBMIT_COMMAND = {"slurm": "sbatch", "sge": "qsub", "pbs": "qsub", "lsf": "bsub"}
STATUS_COMMAND = {"slurm": "squeue", "sge": "qstat", "pbs": "qstat", "lsf": "bjobs"}
FIRST_INDEX = {"slurm": 0, "sge": 1, "pbs": 0, "lsf": 1}
#: fake schedulers with no real daemon on this machine: the tests read their state from the fake itself
FAKE_ONLY = ("pbs", "lsf")
CALL_SHIM = """#!{python}
import json, os, sys, time
real = {real!r}
with open({log!r}, "a") as f:
    f.write(json.dumps({{"t": time.time(), "cmd": os.path.basename(sys.argv[0]), "argv": sys.argv[1:]}}) + "\\n")
os.execv(real, [real] + sys.argv[1:])
"""


SHIM_DIRS: set[str] = set()


def probe(cmd: str) -> str:
    """The scheduler command on the current PATH (real or fake) with the call-counting shims skipped,
    so the tests' own probes are not counted as poolparty's calls."""
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep) if d not in SHIM_DIRS)
    return shutil.which(cmd, path=path) or cmd


def is_probe(call: dict[str, Any]) -> bool:
    """A fake-scheduler call made by a test probe rather than by poolparty (recognised by its argv)."""
    argv = call["argv"]
    return "--states=RUNNING" in argv or "--format=%i|%T" in argv or "-u" in argv


def is_dry_run(call: dict[str, Any]) -> bool:
    """poolparty asking the scheduler whether a request could run (``sbatch --test-only``,
    ``qsub -w v``): a scheduler call, but no submission."""
    argv = call["argv"]
    return "--test-only" in argv or any(a == "-w" and b == "v" for a, b in zip(argv, argv[1:]))


def install_call_counter(bin_dir: Path, flavor: str, log: Path) -> None:
    """A PATH shim that logs every scheduler call and then runs the real command."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    SHIM_DIRS.add(str(bin_dir))
    for cmd in SCHEDULER_COMMANDS[flavor]:
        real = probe(cmd)
        if not os.path.isabs(real):
            continue
        shim = bin_dir / cmd
        shim.write_text(CALL_SHIM.format(python=sys.executable, real=real, log=str(log)))
        shim.chmod(0o755)


@dataclass
class QueueUnderTest:
    """What a behavioural test needs from a queue, whichever kind it is."""

    kind: str  # local | fake-slurm | fake-sge | fake-pbs | fake-lsf | slurm | sge
    flavor: str  # local | slurm | sge | pbs | lsf
    tmp: Path
    cluster: Any = None  # the FakeCluster, for fault injection
    call_log: Path | None = None
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def fake(self) -> bool:
        return self.kind.startswith("fake")

    @property
    def real(self) -> bool:
        return self.kind in ("slurm", "sge")

    def adapter(self) -> QueueAdapter:
        """A fresh adapter with grace periods short enough for tests."""
        from poolparty.queues import make_queue

        q = make_queue(self.flavor, SchedulerCLI(timeout=30, backoff_base=0.2))
        for name, value in self.timing.items():
            setattr(q, name, value)
        return q

    def pool_options(self, **extra: Any) -> dict[str, Any]:
        opts: dict[str, Any] = dict(queue=self.adapter(), work_root=self.tmp / "runs",
                                    polling_interval=1.0 if not self.real else 2.0)
        opts.update(extra)
        return opts

    def calls(self, cmd: str | None = None, *, dry_runs: bool = False) -> list[dict[str, Any]]:
        """Scheduler calls poolparty made (of one command); the pre-submit dry runs only if asked."""
        if self.cluster is not None:
            rows = self.cluster.calls(cmd)
        elif self.call_log is None or not self.call_log.exists():
            return []
        else:
            rows = [json.loads(line) for line in self.call_log.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if cmd is None or r["cmd"] == cmd]
        return [r for r in rows if dry_runs or not is_dry_run(r)]

    def live_jobs(self, pool: Any) -> list[str]:
        """Jobs of this pool still in the scheduler (pending or running), by the scheduler's own view."""
        name = pool.engine.name
        if self.flavor == "local":
            return [str(p) for p in local_worker_pids(pool.engine.work_dir)]
        if self.flavor in FAKE_ONLY:
            return [j["id"] for j in self.cluster.jobs() if j["name"] == name
                    and j["state"] in ("PENDING", "RUNNING", "SUSPENDED")]
        if self.flavor == "slurm":
            out = subprocess.run([probe("squeue"), "--noheader", "--array", f"--name={name}", "--format=%i|%T"],
                                 capture_output=True, text=True, timeout=30).stdout
            return [l for l in out.splitlines() if l.strip() and "COMPLET" not in l]
        out = subprocess.run([probe("qstat"), "-xml", "-g", "d", "-u", _user()], capture_output=True, text=True,
                             timeout=30).stdout
        import xml.etree.ElementTree as ET
        return [j.findtext("JB_job_number", "") for j in ET.fromstring(out).iter("job_list")
                if j.findtext("JB_name") == name]

    def running_elements(self, pool: Any) -> list[str]:
        """Element ids of the pool running now, as the scheduler (or /proc, locally) reports them."""
        name = pool.engine.name
        if self.flavor in FAKE_ONLY:
            return [j["id"] for j in self.cluster.jobs() if j["name"] == name and j["state"] == "RUNNING"]
        if self.flavor == "slurm":
            out = subprocess.run([probe("squeue"), "--noheader", "--array", f"--name={name}", "--states=RUNNING",
                                  "--format=%i"], capture_output=True, text=True, timeout=30).stdout
            return [l.strip() for l in out.splitlines() if l.strip()]
        if self.flavor == "sge":
            out = subprocess.run([probe("qstat"), "-xml", "-g", "d", "-u", _user()], capture_output=True, text=True,
                             timeout=30).stdout
            import xml.etree.ElementTree as ET
            return [f"{j.findtext('JB_job_number')}.{j.findtext('tasks')}" if j.findtext("tasks")
                    else j.findtext("JB_job_number", "") for j in ET.fromstring(out).iter("job_list")
                    if j.findtext("JB_name") == name and _sge_running(j.findtext("state") or "")]
        return [str(p) for p in local_worker_pids(pool.engine.work_dir)]

    def kill_behind_back(self, element: str) -> None:
        """Cancel one running element the way an admin or a user in another shell would."""
        if self.cluster is not None:
            self.cluster.inject(element, "kill")
        elif self.flavor == "slurm":
            subprocess.run([probe("scancel"), element], check=True, timeout=30)
        elif self.flavor == "sge":
            subprocess.run([probe("qdel"), element], check=True, timeout=30, capture_output=True)
        else:
            os.kill(int(element), 9)

    def running_jobs(self, pool: Any) -> int:
        name = pool.engine.name
        if self.flavor in FAKE_ONLY:
            return len(self.running_elements(pool))
        if self.flavor == "slurm":
            out = subprocess.run([probe("squeue"), "--noheader", "--array", f"--name={name}", "--states=RUNNING",
                                  "--format=%i"], capture_output=True, text=True, timeout=30).stdout
            return len([l for l in out.splitlines() if l.strip()])
        if self.flavor == "sge":
            out = subprocess.run([probe("qstat"), "-xml", "-g", "d", "-u", _user()], capture_output=True, text=True,
                             timeout=30).stdout
            import xml.etree.ElementTree as ET
            return sum(1 for j in ET.fromstring(out).iter("job_list")
                       if j.findtext("JB_name") == name and _sge_running(j.findtext("state") or ""))
        return len(local_worker_pids(pool.engine.work_dir))


def _sge_running(state: str) -> bool:
    """Started on its node and not being deleted. A task still in transfer ("t") is left out: a qdel racing
    the transfer may be lost and the task then runs to completion (seen under load in CI)."""
    return "r" in state and "d" not in state


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def pool_status_calls(q: "QueueUnderTest") -> list[dict[str, Any]]:
    """The status queries poolparty itself made (the tests' own squeue/qstat calls differ in argv)."""
    if q.flavor == "slurm":
        return [c for c in q.calls("squeue") if "--states=all" in c["argv"]]
    if q.flavor == "pbs":
        return [c for c in q.calls("qstat") if "-f" in c["argv"] and "-B" not in c["argv"]]
    if q.flavor == "lsf":
        return [c for c in q.calls("bjobs") if "-a" in c["argv"]]
    return [c for c in q.calls("qstat") if c["argv"] == ["-xml", "-g", "d"]]


def local_worker_pids(run_dir: Any) -> list[int]:
    """Live local-queue workers of one run directory (matched on the worker's command line)."""
    needle = str(run_dir).encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"poolparty.node.worker" in cmd and needle in cmd:
            pids.append(int(entry))
    return pids


FAKE_TIMING = dict(vanish_grace=2.0, result_grace=1.0, min_poll_interval=0.3)
REAL_TIMING = dict(vanish_grace=10.0, result_grace=5.0, min_poll_interval=1.0)


def _make(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **cluster_kw: Any):
    if kind == "local":
        return QueueUnderTest("local", "local", tmp_path), None
    if kind.startswith("fake-"):
        from fake_wlm import FakeCluster

        flavor = kind.split("-", 1)[1]
        cluster = FakeCluster(tmp_path / "wlm", flavor=flavor, **{"slots": 8, **cluster_kw})
        cluster.__enter__()
        monkeypatch.setenv("PATH", f"{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}")
        return QueueUnderTest(kind, flavor, tmp_path, cluster=cluster, timing=dict(FAKE_TIMING)), cluster
    require_or_skip(slurm_available() if kind == "slurm" else sge_available(), f"real {kind.upper()}")
    log = tmp_path / "calls.jsonl"
    install_call_counter(tmp_path / "shim", kind, log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'shim'}{os.pathsep}{os.environ['PATH']}")
    return QueueUnderTest(kind, kind, tmp_path, call_log=log, timing=dict(REAL_TIMING)), None


@pytest.fixture
def make_queue_under_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: ``make_queue_under_test("fake-slurm", max_array_size=101)``."""
    clusters: list[Any] = []

    def make(kind: str, **cluster_kw: Any) -> QueueUnderTest:
        q, cluster = _make(kind, tmp_path, monkeypatch, **cluster_kw)
        if cluster is not None:
            clusters.append(cluster)
        return q

    yield make
    for c in clusters:
        c.__exit__(None, None, None)


ALL_KINDS = ["local", "fake-slurm", "fake-sge", "fake-pbs", "fake-lsf", "slurm", "sge"]
FAKE_KINDS = ["fake-slurm", "fake-sge", "fake-pbs", "fake-lsf"]
CLUSTER_KINDS = ["fake-slurm", "fake-sge", "fake-pbs", "fake-lsf", "slurm", "sge"]


SCENARIOS: list[dict[str, Any]] = []


@pytest.fixture
def scenario(request):
    """Record a scenario's measured outcome; printed at the end of the run (and appended to
    $POOLPARTY_SCENARIO_LOG if set) for the issue's closing note."""
    row: dict[str, Any] = {"test": request.node.name}
    start = time.monotonic()
    yield row
    row["wall_s"] = round(time.monotonic() - start, 1)
    SCENARIOS.append(row)
    if os.environ.get("POOLPARTY_SCENARIO_LOG"):
        with open(os.environ["POOLPARTY_SCENARIO_LOG"], "a") as f:
            f.write(json.dumps(row) + "\n")


def pytest_terminal_summary(terminalreporter):
    if SCENARIOS:
        terminalreporter.section("scheduler scenarios (measured)")
        for row in SCENARIOS:
            terminalreporter.write_line(json.dumps(row))


def measure(row: dict[str, Any], q: "QueueUnderTest", pool_or_engine: Any) -> None:
    """Jobs submitted, resubmissions and scheduler calls of a finished run, into a scenario row."""
    engine = getattr(pool_or_engine, "engine", pool_or_engine)
    row.update(queue=q.kind, **{k: v for k, v in engine.stats.items()})
    if q.flavor != "local":
        by_cmd: dict[str, int] = {}
        for c in q.calls():
            if is_probe(c):
                continue
            by_cmd[c["cmd"]] = by_cmd.get(c["cmd"], 0) + 1
        row["calls"] = by_cmd
        row["pool_status_queries"] = len(pool_status_calls(q))


def poll_until(predicate: Callable[[], Any], timeout: float = 8.0, interval: float = 0.02) -> Any:
    """The predicate's first true value within ``timeout``, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    value = poll_until(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


# -- a local Pool / Executor for the semantics tests, ended whatever the test did ------------------------
@pytest.fixture
def pool(tmp_path):
    p = poolparty.Pool(2, queue="local", work_root=tmp_path)
    yield p
    p.terminate()


@pytest.fixture
def ex(tmp_path):
    e = poolparty.Executor(2, queue="local", work_root=tmp_path)
    yield e
    e.shutdown(wait=False, cancel_futures=True)
