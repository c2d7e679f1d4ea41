"""The ``poolparty`` command: status, resume, logs, cancel, clean on the local queue and the fake SLURM;
doctor on the local queue, the fake SLURM and the real SLURM/SGE; a progress bar and the CLI in a real
terminal (tmux)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import poolparty
from conftest import wait_until
from real_wlm import require_or_skip, sge_available, slurm_available

from poolparty.store.inputs import BatchFiles
from poolparty.cli.main import main
from poolparty.store.layout import job_name
from poolparty.cli.node_probe import probe_nodes
from poolparty.queues.local import LocalQueue
from poolparty.store.inspect import stored_results

DRIVER = '''
import faulthandler, signal, sys, time
import poolparty

faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks a stuck driver where it is

def work(x, sleep, fail):
    print(f"working on {x}", flush=True)
    if x == fail:
        raise ValueError(f"bad input {x}")
    time.sleep(sleep)
    return x * x

if __name__ == "__main__":
    queue, work_dir, n, sleep, fail = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    with poolparty.Pool(2, queue=queue, work_dir=work_dir, polling_interval=1) as pool:
        print("RESULT", sum(pool.starmap(work, [(x, sleep, fail) for x in range(n)], chunksize=1)), flush=True)
'''


@pytest.fixture(autouse=True)
def no_user_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def start_driver(tmp_path: Path, queue: str, work_dir: Path, n: int, sleep: float, fail: int = -1,
                 script: str = DRIVER) -> subprocess.Popen:
    path = tmp_path / "driver.py"
    path.write_text(script)
    out = open(tmp_path / "driver.out", "ab")
    return subprocess.Popen([sys.executable, str(path), queue, str(work_dir), str(n), str(sleep), str(fail)],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stacks_of(driver: subprocess.Popen, tmp_path: Path) -> str:
    """A stuck driver's threads (faulthandler on SIGUSR1) and its output, for the failure message."""
    if driver.poll() is None:
        os.kill(driver.pid, signal.SIGUSR1)
        time.sleep(1)
    return "\n--- driver output and stacks:\n" + (tmp_path / "driver.out").read_text(errors="replace")


def stored(work_dir: Path) -> int:
    return len(stored_results(BatchFiles(work_dir / "batches" / "0001")))


def journaled(work_dir: Path) -> int:
    """Chunks whose submission the run's journal recorded."""
    from poolparty.store.inspect import read_run

    try:
        return sum(1 for b in read_run(work_dir).batches for c in b.chunks if c.attempts)
    except Exception:
        return 0


def worker_pids(run_dir: Path) -> list[str]:
    """Local-queue workers of one run (matched on their command line)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"poolparty.node.worker" in cmd and any(str(run_dir).encode() in c for c in cmd):
            pids.append(entry)
    return pids


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(timeout=30)


# -- local queue: an interrupted run is inspected, resumed, its logs read, then cleaned ---------------
def test_status_resume_logs_clean_on_the_local_queue(tmp_path):
    parent = tmp_path / "runs"
    wd = parent / "run-a"
    driver = start_driver(tmp_path, "local", wd, 12, 0.4, fail=1)
    try:
        wait_until(lambda: stored(wd) >= 4, 60, "4 stored results")
    finally:
        kill(driver)  # SIGKILL: the run is interrupted, its running workers are left to finish

    text = cli("status", wd).output
    assert f"job name {job_name(wd)}, queue local" in text
    assert "driver: none (interrupted); finish it with: poolparty resume" in text
    assert "task 1 (chunk 1) raised builtins.ValueError: bad input 1" in text
    assert "poolparty logs" in text and " 1 --batch 1" in text
    status = json.loads(cli("status", wd, "--json").stdout)
    summary = status["summary"]
    assert summary["tasks"] == 12 and summary["tasks_failed"] == 1 and status["driver"] is None
    assert sum(summary["chunks"].values()) == 12 and summary["chunks"]["done"] >= 4
    assert status["batches"][0]["chunks"][0]["elements"] == ["L1_0"]

    out = tmp_path / "results.json"
    result = CliRunner().invoke(main, ["resume", str(wd), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "1 task(s) failed; the first: ValueError: bad input 1" in result.output
    values = json.loads(out.read_text())
    assert values[1] == {"error": "ValueError: bad input 1"}
    assert [v for i, v in enumerate(values) if i != 1] == [x * x for x in range(12) if x != 1]

    done = json.loads(cli("status", wd, "--json").stdout)["summary"]
    assert done["chunks"] == {"done": 12, "failed": 0, "queued": 0, "waiting": 0, "cancelled": 0}
    assert done["tasks_done"] == 12
    log = cli("logs", wd, 1).output
    # the task's traceback (it used to be only in status), then its job's output
    assert "===== batch 0001 task 1 raised (remote traceback) =====" in log, log
    assert re.search(r'File ".*", line \d+, in work\n(.*\n)*ValueError: bad input 1\n', log), log
    assert log.index("raised (remote traceback)") < log.index("working on 1")
    assert "===== batch 0001 chunk 1 (task 1), job L1_1, attempt 1 =====" in log and "working on 1" in log
    assert "chunk 5 (task 5)" in cli("logs", wd, "--list").output

    again = CliRunner().invoke(main, ["resume", str(wd), "-o", str(tmp_path / "r.pkl")])  # all stored: at once
    assert again.exit_code == 1
    values = pickle.loads((tmp_path / "r.pkl").read_bytes())
    assert isinstance(values[1], ValueError) and values[11] == 121

    # the first driver's workers may have run the last chunks (claims): they exit just after publishing
    wait_until(lambda: not worker_pids(wd), 20, "the interrupted run's workers to exit")
    cleaned = _rel(cli("clean", "--older-than", "0", parent).output, tmp_path)
    assert "removed runs/run-a (idle 0.0 days)" in cleaned and "removed 1 run(s), kept 0 in use" in cleaned
    assert not wd.exists()


def test_bad_work_dir_and_task_are_explained(tmp_path):
    (tmp_path / "runs" / "run-x" / "batches").mkdir(parents=True)
    (tmp_path / "runs" / "run-x" / "run.json").write_text("{}")
    result = CliRunner().invoke(main, ["status", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "is not a poolparty work_dir (it holds run directories: pass one of them" in result.output
    result = CliRunner().invoke(main, ["logs", str(tmp_path / "runs" / "run-x"), "3"])
    assert result.exit_code == 1 and "no batch in" in result.output
    result = CliRunner().invoke(main, ["clean", "--older-than", "soon", str(tmp_path)])
    assert result.exit_code == 2 and "'soon' is not an age" in result.output
    result = CliRunner().invoke(main, ["cancel", str(tmp_path / "runs" / "run-x")])
    assert result.exit_code == 2 and "say which queue it used with --queue" in result.output


# -- a live driver: status says so, clean keeps the run, cancel warns, --stop-driver stops it ----------
def test_live_driver_status_clean_cancel(tmp_path):
    parent = tmp_path / "runs"
    wd = parent / "run-live"
    driver = start_driver(tmp_path, "local", wd, 6, 60.0)
    try:
        wait_until(lambda: len(worker_pids(wd)) == 2, 60, "two running workers")
        assert f"driver: alive (pid {driver.pid} on " in cli("status", wd).output
        assert "kept runs/run-live: its driver is alive" in _rel(cli("clean", "--older-than", "0", parent).output,
                                                                 tmp_path)
        result = CliRunner().invoke(main, ["cancel", str(wd)])
        assert result.exit_code == 0
        assert f"cancelled 2 job(s) named {job_name(wd)} on local" in result.output
        assert "the run's driver is alive" in result.output and "--stop-driver" in result.output
        result = CliRunner().invoke(main, ["cancel", "--stop-driver", str(wd)])
        assert result.exit_code == 0, result.output + stacks_of(driver, tmp_path)
        assert "stopping the driver" in result.output
        driver.wait(timeout=30)
        wait_until(lambda: not worker_pids(wd), 30, "no worker left")
    finally:
        if driver.poll() is None:
            kill(driver)


def _rel(text: str, base: Path) -> str:
    return text.replace(str(base) + "/", "")


# -- fake SLURM: jobs left in the queue by a dead driver are seen, kept by clean, cancelled ------------
def test_status_cancel_clean_resume_on_fake_slurm(tmp_path, make_queue_under_test):
    q = make_queue_under_test("fake-slurm")
    parent = tmp_path / "runs"
    wd = parent / "run-s"
    driver = start_driver(tmp_path, "slurm", wd, 6, 60.0)
    try:
        wait_until(lambda: len([j for j in q.cluster.jobs() if j["state"] == "RUNNING"]) == 2, 60,
                   "two running jobs")
        wait_until(lambda: journaled(wd) == 6, 30, "the submission in the journal")
    finally:
        kill(driver)
    text = cli("status", wd).output
    assert "queue slurm" in text and "(queued: 2 running, 4 pending)" in text
    info = json.loads(cli("status", wd, "--json").stdout)
    assert info["scheduler"]["queried"] and len(info["scheduler"]["jobs"]) == 6
    assert _rel(cli("clean", "--older-than", "0", parent).output, tmp_path).startswith(
        "kept runs/run-s: 6 job(s) still queued")
    text = cli("cancel", wd).output
    assert f"cancelled 6 job(s) named {job_name(wd)} on slurm" in text
    assert any(c["cmd"] == "scancel" and f"--name={job_name(wd)}" in c["argv"] for c in q.calls())
    wait_until(lambda: all(j["state"] in ("CANCELLED", "COMPLETED") for j in q.cluster.jobs()), 30, "cancelled")
    assert "(queued: 6 not in the queue)" in cli("status", wd).output

    # a second run on the fake SLURM, interrupted while its jobs run: resume adopts them
    wd2 = parent / "run-t"
    driver = start_driver(tmp_path, "slurm", wd2, 4, 2.0)
    try:
        wait_until(lambda: journaled(wd2) == 4, 60, "the submission in the journal")
    finally:
        kill(driver)
    out = tmp_path / "t.json"
    result = CliRunner().invoke(main, ["resume", str(wd2), "-o", str(out), "--remove"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == [0, 1, 4, 9]
    assert not wd2.exists()  # --remove: a clean finish removes the work_dir
    assert sum(1 for c in q.calls("sbatch")) == 2  # nothing resubmitted: one array per run

    text = _rel(cli("clean", "--older-than", "0", parent).output, tmp_path)
    assert "removed runs/run-s" in text
    assert list(parent.iterdir()) == []


# -- doctor ----------------------------------------------------------------------------------------
def test_doctor_python_on_the_nodes_without_poolparty(tmp_path, monkeypatch):
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import poolparty"], capture_output=True,
                                        env={"PATH": "/usr/bin:/bin"}).returncode == 0:
        pytest.skip("needs a system python3 without poolparty")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    result = CliRunner().invoke(main, ["doctor", "--queue", "local", "--python", python,
                                       "--work-root", str(tmp_path / "wr"), "--timeout", "60"])
    assert result.exit_code == 1
    # the local queue has no nodes and shares nothing: its line speaks of this machine
    assert (f"[FAIL] local queue (jobs on this machine): a test job on this machine wrote to {tmp_path / 'wr'}, but "
            f"Python ({python}) cannot import poolparty: ModuleNotFoundError: No module named 'poolparty'"
            ) in result.output
    assert "nodes" not in result.output.split("[FAIL] local")[1] and "shared" not in result.output.split("[FAIL] local")[1]
    good = CliRunner().invoke(main, ["doctor", "--queue", "local", "--work-root", str(tmp_path / "wr"), "--json"])
    assert good.exit_code == 0, good.output
    node = json.loads(good.stdout)["nodes"][0]
    assert node["verdict"] == "ok" and node["shared"] and node["imports_poolparty"]
    assert not (tmp_path / "wr").exists()  # the probe cleans up after itself


class NodeLocalQueue(LocalQueue):
    """A local queue whose jobs see their own copy of the filesystem under ``node_root`` (node-local
    scratch): what a work_root that is not shared with the compute nodes looks like."""

    def __init__(self, node_root: Path):
        super().__init__()
        self.node_root = node_root

    def _on_node(self, p: Path) -> Path:
        mirrored = self.node_root / Path(p).relative_to("/")
        mirrored.mkdir(parents=True, exist_ok=True)
        return mirrored

    def submit(self, request, *, array=True):
        workdir = self._on_node(request.workdir)
        argv = tuple(str(workdir / Path(a).name) if a.startswith(str(request.workdir)) else a
                     for a in request.worker_argv)
        return super().submit(replace(request, workdir=workdir, log_dir=workdir, worker_argv=argv), array=array)


def test_doctor_work_root_not_shared_with_the_nodes(tmp_path):
    queue = NodeLocalQueue(tmp_path / "node")
    try:
        result = probe_nodes(queue, tmp_path / "wr", sys.executable, timeout=30, grace=0.5, poll=0.2)
    finally:
        queue.close()
    assert result.verdict == "fail" and result.shared is False
    assert result.message.startswith(f"the work_root {tmp_path / 'wr'} is not shared with the compute nodes: "
                                     "the probe job L1_0 ended (failed) but nothing it wrote (report or log) "
                                     "is visible here.")
    assert list((tmp_path / "node").rglob("jL1_0.log"))  # the job did run, on its own copy


def test_doctor_missing_scheduler_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no scheduler command at all
    expected = ("queue='slurm' needs the `sbatch` command, which is not on PATH. Run on a login node of a SLURM "
                "cluster, load its module, or use queue='local'.")
    result = CliRunner().invoke(main, ["doctor", "--queue", "slurm", "--no-job"])
    assert result.exit_code == 1
    assert f"[FAIL] slurm: {expected}" in result.output
    assert "[ -- ] sge: queue='sge' needs the `qsub` command" in result.output  # not asked for: not a failure
    with pytest.raises(poolparty.ConfigurationError) as info:
        poolparty.Pool(queue="slurm", work_root=tmp_path / "runs")
    assert str(info.value) == expected


def test_doctor_on_fake_slurm(tmp_path, make_queue_under_test):
    make_queue_under_test("fake-slurm", max_array_size=501)
    result = CliRunner().invoke(main, ["doctor", "--queue", "slurm", "--work-root", str(tmp_path / "wr"),
                                       "--json", "--timeout", "60"])
    report = json.loads(result.stdout)
    assert report["schedulers"]["slurm"]["reachable"]
    assert report["schedulers"]["slurm"]["limits"]["MaxArraySize"] == "501"
    node = report["nodes"][0]
    assert node["verdict"] == "ok", node
    assert node["shared"] and node["imports_poolparty"] and node["node"]["python"] == sys.executable
    assert result.exit_code == 0


@pytest.mark.parametrize("kind, limit", [("pbs", "max_array_size"), ("lsf", "MAX_JOB_ARRAY_SIZE")])
def test_doctor_on_fake_pbs_and_lsf(kind, limit, tmp_path, make_queue_under_test):
    """The commands answer with their version and array limit; a one-element array job runs, the status
    query sees it, its result comes back; all of it printed."""
    make_queue_under_test(f"fake-{kind}", max_array_size=77)
    result = CliRunner().invoke(main, ["doctor", "--queue", kind, "--work-root", str(tmp_path / "wr"), "--timeout", "60"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"\[ ok \] {kind} answers: .*{limit}=77", result.output), result.output
    assert re.search(r"(pbs_version=2022\.1\.1|version=IBM Spectrum LSF)", result.output), result.output
    assert re.search(rf"\[ ok \] {kind} nodes: a job on \S+ wrote to .* \(shared\)", result.output)
    assert re.search(r"probe job \S+: seen by the status query as .*completed", result.output), result.output
    report = json.loads(CliRunner().invoke(main, ["doctor", "--queue", kind, "--work-root", str(tmp_path / "wr"),
                                                  "--json", "--timeout", "60"]).stdout)
    node = report["nodes"][0]
    assert node["verdict"] == "ok" and node["seen"][-1] == "completed"
    # PBS refuses an array of one subjob: its adapter runs that one chunk as a plain job
    assert re.fullmatch(r"\d+\.server" if kind == "pbs" else r"\d+\[1\]", node["job"]), node["job"]


@pytest.mark.slurm
def test_doctor_on_real_slurm(tmp_path):
    require_or_skip(slurm_available(), "real SLURM")
    result = CliRunner().invoke(main, ["doctor", "--queue", "slurm", "--work-root", str(tmp_path / "wr"),
                                       "--timeout", "150"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\[ ok \] slurm answers: SLURM_VERSION=\S+, .*MaxArraySize=\d+, MaxJobCount=\d+", result.output)
    assert "your limits:" in result.output
    assert re.search(r"\[ ok \] slurm nodes: a job on \S+ wrote to .* \(shared\); Python .* imports poolparty",
                     result.output), result.output


@pytest.mark.sge
def test_doctor_on_real_sge(tmp_path):
    require_or_skip(sge_available(), "real SGE")
    result = CliRunner().invoke(main, ["doctor", "--queue", "sge", "--work-root", str(tmp_path / "wr"),
                                       "--timeout", "150"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\[ ok \] sge answers: max_aj_tasks=\d+, max_aj_instances=\d+", result.output)
    assert re.search(r"\[ ok \] sge nodes: a job on \S+ wrote to .* \(shared\); Python .* imports poolparty",
                     result.output), result.output


# -- a real terminal: the progress bar and the CLI under tmux -------------------------------------------
BAR_DRIVER = '''
import sys, time
import poolparty

def slow(x):
    time.sleep(0.4)
    return x

if __name__ == "__main__":  # bar.py WORK_DIR N [executor | CHUNKSIZE]
    work_dir, n = sys.argv[1], int(sys.argv[2])
    if sys.argv[3:] == ["executor"]:  # progress=True: a bar although stderr is a pipe
        with poolparty.Executor(2, queue="local", work_dir=work_dir, keep_work_dir=True, progress=True) as ex:
            print("RESULT", sum(ex.map(slow, range(n))), flush=True)
    else:
        chunksize = int(sys.argv[3]) if sys.argv[3:] else 1
        with poolparty.Pool(2, queue="local", work_dir=work_dir, keep_work_dir=True) as pool:
            print("RESULT", sum(pool.map(slow, range(n), chunksize=chunksize)), flush=True)
'''


def poolparty_command() -> str:
    script = Path(sys.executable).parent / "poolparty"
    return str(script) if script.exists() else f"{sys.executable} -m poolparty.cli"


class Tmux:
    """A private tmux server; one detached session per terminal width."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=20).stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)


#: the progress line: the count and the ETA whole, whatever else the width left out
PROGRESS_LINE = re.compile(r"^.*\b(\d+)/24 tasks\b.*\| eta (\d:\d\d:\d\d|-:--:--)$", re.M)


def test_progress_line_stays_whole_and_moves_per_task_in_real_terminals(tmp_path):
    """60, 80 and 120 columns: the line is never cut (it used to lose the count and the ETA below ~120
    columns, and the bar at 80), and it counts tasks inside a running job (it used to jump by a chunk)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    (tmp_path / "bar.py").write_text(BAR_DRIVER)
    tmux, widths = Tmux(f"pp-test-{os.getpid()}-{tmp_path.name}"), (60, 80, 120)
    seen: dict[int, set[int]] = {w: set() for w in widths}
    try:
        for w in widths:  # 24 tasks in 2 jobs of 12: a job takes ~5 s
            tmux("new-session", "-d", "-s", f"w{w}", "-x", str(w), "-y", "20", "bash --norc --noprofile")
            tmux("send-keys", "-t", f"w{w}:0", f"clear; cd {tmp_path} && XDG_CONFIG_HOME={tmp_path} "
                 f"{sys.executable} bar.py {tmp_path / f'wd{w}'} 24 12; echo ENDED", "Enter")

        def watch() -> bool:
            for w in widths:
                for m in PROGRESS_LINE.finditer(tmux.screen(f"w{w}:0")):
                    assert len(m.group(0)) < w and "\u2026" not in m.group(0), m.group(0)
                    seen[w].add(int(m.group(1)))
            return all(re.search(r"RESULT 276\n(.*\n)*ENDED", tmux.screen(f"w{w}:0")) for w in widths)

        wait_until(watch, 90, "the three maps", interval=0.1)
        screens = {w: tmux.screen(f"w{w}:0") for w in widths}
    finally:
        tmux("kill-server")
    for w in widths:
        assert seen[w] - {0, 12, 24}, (w, seen[w], screens[w])  # a count inside a job
        last = PROGRESS_LINE.findall(screens[w])
        assert last and last[-1] == ("24", "0:00:00"), screens[w]
    assert re.search(r"poolparty pp-\w+ \S+ 100% 24/24 tasks \| jobs: 0 running, 0 pending \| \d:\d\d:\d\d elapsed "
                     r"\| eta 0:00:00", screens[120]), screens[120]
    assert re.search(r"^pp-\w{4} \S+ +100% 24/24 tasks \| jobs: 0 running, 0 pending \| eta 0:00:00", screens[80], re.M), screens[80]


def test_progress_bar_and_cli_in_a_real_terminal(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install -y tmux)")
    (tmp_path / "bar.py").write_text(BAR_DRIVER)
    wd = tmp_path / "wd"
    tmux = Tmux(f"pp-test-{os.getpid()}-{tmp_path.name}")
    tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "30", "bash --norc --noprofile")
    try:
        tmux("send-keys", "-t", "t:0", f"cd {tmp_path} && XDG_CONFIG_HOME={tmp_path} {sys.executable} bar.py {wd} 16",
             "Enter")
        bar = re.compile(r"poolparty pp-\w+ .* (\d+)/16 tasks \| jobs: (\d) running, (\d+) pending, 0 failed, "
                         r"0 resubmitted \|")
        m = wait_until(lambda: bar.search(tmux.screen("t:0")), 30, "the progress bar")
        assert int(m.group(1)) < 16 and int(m.group(2)) <= 2
        tmux("new-window", "-t", "t", "bash --norc --noprofile")
        tmux("send-keys", "-t", "t:1", f"{poolparty_command()} status {wd}", "Enter")
        status = wait_until(lambda: "total:" in tmux.screen("t:1") and tmux.screen("t:1"), 30, "poolparty status")
        assert "driver: alive" in status and "batch 0001 (map" in status
        final = re.compile(r"RESULT 120\n.*16/16 tasks \| jobs: 0 running, 0 pending, 0 failed, 0 resubmitted \| "
                           r"\d:\d\d:\d\d elapsed \| eta 0:00:00")  # what the program prints goes above the line
        wait_until(lambda: final.search(tmux.screen("t:0")), 60, "the end of the map")
    finally:
        tmux("kill-server")


def test_no_progress_bar_without_a_terminal(tmp_path):
    (tmp_path / "bar.py").write_text(BAR_DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "bar.py"), str(tmp_path / "wd"), "8"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode == 0 and "RESULT 28" in proc.stdout
    assert "tasks" not in proc.stderr and "\x1b[" not in proc.stderr


def test_progress_option():
    from poolparty.api.progress import job_counts, wanted

    class Tty:
        def isatty(self) -> bool:
            return True

    assert wanted(None, Tty()) and not wanted(False, Tty()) and wanted(True, open(os.devnull))
    assert not wanted(None, open(os.devnull))
    snap = {"chunks_waiting": 3, "chunks_queued": 5, "chunks_running": 2, "chunks_failed": 1, "resubmissions": 4}
    assert job_counts(snap) == {"running": 2, "pending": 6, "failed": 1, "resubmitted": 4}


def test_progress_line_layout_and_eta_on_literal_input():
    """The less important fields go first as the width shrinks; the count and the ETA never; the ETA
    comes from the measured rate of finished tasks (it used to follow chunk steps: 2 s said, 15 s left)."""
    from poolparty.api.progress import TaskRate, render

    jobs = {"running": 2, "pending": 1, "failed": 3, "resubmitted": 0}
    lines = {w: render(w, "poolparty pp-3487abcdef12", 3750, 6000, jobs, 10.2, 6.1) for w in (30, 60, 80, 120, 200)}
    assert lines[200] == ("poolparty pp-3487abcdef12 " + "█" * 25 + "░" * 15 + "  62% 3750/6000 tasks | jobs: 2 running, "
                          "1 pending, 3 failed, 0 resubmitted | 0:00:10 elapsed | eta 0:00:06")
    assert lines[120].startswith("pp-3487 ") and lines[120].endswith(
        "  62% 3750/6000 tasks | jobs: 2 running, 1 pending, 3 failed | 0:00:10 elapsed | eta 0:00:06")
    assert lines[80].endswith(" 3750/6000 tasks | jobs: 2 running, 3 failed | eta 0:00:06")  # failures outlast
    assert lines[60].endswith(" 3750/6000 tasks | jobs: 3 failed | eta 0:00:06")
    assert lines[30] == "3750/6000 | eta 0:00:06"
    assert all(len(line) < w for w, line in lines.items())
    assert render(100, "p", 0, 10, {}, 0, None, fancy=False) == "p " + "-" * 40 + "   0% 0/10 tasks | 0:00:00 elapsed | eta -:--:--"

    rate = TaskRate(window=60)
    rate.add(0.0, 0)  # the wait in the queue is not a rate
    rate.add(30.0, 0)
    assert rate.eta(30.0, 0, 100) is None
    rate.add(31.0, 10)
    assert rate.eta(31.0, 10, 100) is None  # one completion: no rate yet
    rate.add(33.0, 30)  # 20 tasks in 2 s
    assert rate.eta(33.0, 30, 100) == pytest.approx(7.0)
    assert rate.eta(35.0, 30, 100) == pytest.approx(14.0)  # nothing finished since: the rate falls
    rate.add(200.0, 90)  # the window keeps the last minute
    assert rate.eta(200.0, 90, 100) == pytest.approx(10 / (60 / 167))
    assert rate.eta(201.0, 100, 100) == 0.0


def test_executor_map_has_a_progress_bar_too(tmp_path):
    """16 tasks of 0.4 s on 2 jobs: well past the 1 s before a line is shown (8 tasks were too close to it)."""
    (tmp_path / "bar.py").write_text(BAR_DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "bar.py"), str(tmp_path / "wd"), "16", "executor"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "200"})
    assert proc.returncode == 0 and "RESULT 120" in proc.stdout, proc.stderr
    assert re.search(r"poolparty pp-\w+ .*16/16 tasks \| jobs: 0 running, 0 pending, 0 failed, 0 resubmitted \|",
                     proc.stderr), proc.stderr


def square(x):
    return x * x


@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b'{"chunk_tasks": 5}'])
def test_a_damaged_meta_json_is_a_clear_error_in_status_resume_and_a_rerun(tmp_path, damage):
    """It used to end status and resume in a raw JSONDecodeError (or KeyError) traceback."""
    wd = tmp_path / "wd"
    with poolparty.Pool(2, queue="local", work_dir=wd, keep_work_dir=True) as pool:
        assert pool.map(square, range(6)) == [x * x for x in range(6)]
    meta = next(wd.glob("batches/*/meta.json"))
    meta.write_bytes(damage)
    for command in ("status", "resume"):
        result = CliRunner().invoke(main, [command, str(wd)])
        assert result.exit_code == 1, result.output
        assert f"{meta} is damaged" in result.output and "fresh work_dir" in result.output
        assert "Traceback" not in result.output
    with poolparty.Pool(2, queue="local", work_dir=wd) as pool:
        with pytest.raises(poolparty.CorruptWorkDirError, match="is damaged"):
            pool.map(square, range(6))


def square_slowly_while_flagged(x, flag):
    while os.path.exists(flag):
        time.sleep(0.05)
    return x * x


def test_a_rerun_makes_a_deleted_incoming_directory_again(tmp_path):
    """A rerun with the same work_dir used to submit jobs whose output directory was gone."""
    wd, flag = tmp_path / "wd", tmp_path / "flag"
    flag.touch()
    args = [(x, str(flag)) for x in range(4)]
    pool = poolparty.Pool(2, queue="local", work_dir=wd)
    pool.starmap_async(square_slowly_while_flagged, args)
    wait_until(lambda: list(wd.glob("batches/*/incoming/*.part")), 60, "a running task")
    pool.terminate()  # interrupted: the work_dir stays for a rerun
    flag.unlink()
    [incoming] = wd.glob("batches/*/incoming")
    shutil.rmtree(incoming)
    with poolparty.Pool(2, queue="local", work_dir=wd) as pool:
        assert pool.starmap(square_slowly_while_flagged, args) == [0, 1, 4, 9]


def test_resume_after_ctrl_c_resubmits_nothing_and_status_says_cancelled(tmp_path):
    """Jobs the driver cancelled itself on Ctrl-C used to be adopted by the resume, found gone and each
    "vanished from the queue -> resubmitting" (a warning per chunk), counted as resubmissions."""
    wd = tmp_path / "wd"
    driver = start_driver(tmp_path, "local", wd, 6, 2.0, fail=-1)
    try:
        wait_until(lambda: journaled(wd) == 6, 60, "6 chunks submitted")
        time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGINT)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            kill(driver)
    text = cli("status", wd, "--no-query").output
    assert re.search(r"chunks: \d done, 0 failed, 0 queued, [1-6] cancelled \(by the driver", text), text
    assert "0 chunk(s) resubmitted" in text and "driver: none (interrupted)" in text, text
    result = CliRunner().invoke(main, ["resume", str(wd), "-o", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    assert "vanished" not in result.output and "resubmitting" not in result.output, result.output
    assert json.loads((tmp_path / "out.json").read_text()) == [x * x for x in range(6)]
    summary = json.loads(cli("status", wd, "--json").stdout)["summary"]
    assert summary["resubmitted_chunks"] == 0 and summary["chunks"]["done"] == 6, summary
