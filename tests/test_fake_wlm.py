"""Behaviour of the fake SLURM/SGE schedulers (tests/fake_wlm) used for fault injection."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_wlm  # noqa: E402
from fake_wlm import FakeCluster  # noqa: E402

PY = sys.executable
SQUEUE_FMT = "%i|%A|%F|%K|%T|%t|%r|%j|%M|%l|%N"


def script(tmp_path: Path, name: str, body: str, shell: str = "/bin/sh") -> str:
    path = tmp_path / name
    path.write_text(f"#!{shell}\n{body}\n")
    path.chmod(0o755)
    return str(path)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def intervals_from(directory: Path, prefix: str) -> list[tuple[float, float]]:
    out = []
    for path in directory.glob(f"span_{prefix}_*"):
        start, end = path.read_text().split()
        out.append((float(start), float(end)))
    return out


SPAN = f'k=$1$SLURM_ARRAY_TASK_ID; {PY} -c "import time;print(time.time())" > {{d}}/t_$k; sleep 0.3; ' \
       f'echo $(cat {{d}}/t_$k) $({PY} -c "import time;print(time.time())") > {{d}}/span_$1_$k'


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # default job output files land in the submit directory


@pytest.fixture
def slurm(tmp_path: Path):
    with FakeCluster(tmp_path / "wlm", flavor="slurm", slots=8, kill_wait=0.5) as cluster:
        yield cluster


@pytest.fixture
def sge(tmp_path: Path):
    with FakeCluster(tmp_path / "wlm", flavor="sge", slots=8, kill_wait=0.5) as cluster:
        yield cluster


# ------------------------------------------------------------------------------------ SLURM
def test_slurm_submit_squeue_sacct_formats(slurm: FakeCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"  # jobs block until the test opens the gate: stable snapshots
    job = script(tmp_path, "arr.sh", 'echo "$SLURM_JOB_ID $SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID '
                                     '$SLURM_ARRAY_TASK_COUNT ${SLURM_RESTART_COUNT-unset} $FAKE_MARK"; '
                                     f'while [ ! -e {gate} ]; do sleep 0.05; done')
    env_mark = dict(slurm.env(), FAKE_MARK="exported")
    out = subprocess.run([str(slurm.bin_dir / "sbatch"), "--parsable", "-a", "0-5%2", "--job-name=arr",
                          "-o", f"{tmp_path}/o_%A_%a.txt", job], env=env_mark, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "1"
    # the elements take their raw ids when they start: let them start before the next job takes an id
    slurm.wait_for(lambda js: sum(j["state"] == "RUNNING" for j in js) == 2)
    plain = slurm.run("sbatch", "-J", "plain", "--time", "5:00", job, cwd=tmp_path)
    assert re.fullmatch(r"Submitted batch job (\d+)\n", plain.stdout)
    plain_id = plain.stdout.split()[-1]  # ids 2 and 3 went to the started elements (raw ids)
    slurm.wait_for(lambda js: sum(j["state"] == "RUNNING" for j in js) == 3)
    default = slurm.run("squeue").stdout.splitlines()
    assert default[0] == "             JOBID PARTITION     NAME     USER ST       TIME  NODES NODELIST(REASON)"
    assert re.match(r"^ {9}1_\[2-5%2\]     debug      arr +\S+ PD       0:00      1 \(JobArrayTaskLimit\)$",
                    default[1]), default
    rows = [line.split("|") for line in slurm.run("squeue", "-h", "-o", SQUEUE_FMT).stdout.splitlines()]
    assert ["1_[2-5%2]", "1", "1", "2-5%2", "PENDING", "PD", "JobArrayTaskLimit", "arr", "0:00", "UNLIMITED", ""] in rows
    running = {r[0]: r for r in rows if r[4] == "RUNNING"}
    assert set(running) == {"1_0", "1_1", plain_id} and running[plain_id][9] == "5:00"
    assert running["1_0"][10] == "vm" and running["1_0"][1] == "2"  # the element got its own raw id
    expanded = slurm.run("squeue", "-h", "--array", "-o", "%i", "-t", "PD").stdout.split()
    assert expanded == ["1_2", "1_3", "1_4", "1_5"]
    gate.touch()
    slurm.wait_idle(20)
    assert slurm.run("squeue", "-h").stdout == ""
    finished = slurm.run("squeue", "-h", "-t", "all", "-o", "%i|%T|%r").stdout.split()
    assert sorted(finished) == sorted([f"1_{i}|COMPLETED|None" for i in range(6)] + [f"{plain_id}|COMPLETED|None"])
    acct = slurm.run("sacct", "-X", "-P", "-n", "-j", f"1,{plain_id}", "-o",
                     "JobID,JobIDRaw,JobName,State,ExitCode").stdout
    lines = acct.splitlines()
    assert len(lines) == 7 and "1_5|1|arr|COMPLETED|0:0" in lines and f"{plain_id}|{plain_id}|plain|COMPLETED|0:0" in lines
    raw, array_id, task, count, restart, mark = (tmp_path / "o_1_3.txt").read_text().split()
    assert (array_id, task, count, restart, mark) == ("1", "3", "6", "unset", "exported")
    assert (tmp_path / f"slurm-{plain_id}.out").exists()


def test_slurm_array_throttle_is_never_exceeded(slurm: FakeCluster, tmp_path: Path) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    job = script(tmp_path, "span.sh", SPAN.format(d=spans))
    slurm.run("sbatch", "--array=0-9%3", job, "a", cwd=tmp_path)
    out = slurm.run("sbatch", "--array=0-9%3", "--wrap", f"sh {job} b", cwd=tmp_path)
    assert out.returncode == 0
    seen = 0
    deadline = time.monotonic() + 30
    while any(j["state"] in ("PENDING", "RUNNING", "COMPLETING") for j in slurm.jobs()):
        for job_id in (1, 2):
            running = [j for j in slurm.jobs() if j["job_id"] == job_id and j["state"] == "RUNNING"]
            assert len(running) <= 3
            seen = max(seen, len(running))
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen == 3
    for prefix in ("a", "b"):
        spans_of_array = intervals_from(spans, prefix)
        assert len(spans_of_array) == 10 and max_overlap(spans_of_array) <= 3


@pytest.mark.parametrize("action,state,reason", [
    ("kill", "CANCELLED", "None"), ("node_fail", "NODE_FAIL", "NodeDown"),
    ("oom", "OUT_OF_MEMORY", "OutOfMemory"), ("timeout", "TIMEOUT", "TimeLimit"),
    ("preempt", "PREEMPTED", "None"), ("boot_fail", "BOOT_FAIL", "None"),
])
def test_slurm_fault_actions_end_in_documented_state(slurm: FakeCluster, tmp_path: Path, action: str,
                                                      state: str, reason: str) -> None:
    job = script(tmp_path, "long.sh", "sleep 30")
    slurm.run("sbatch", job, cwd=tmp_path)
    slurm.wait_state("1", "RUNNING")
    assert slurm.inject("1", action) == 1
    rec = slurm.wait_state("1", state, timeout=10)
    assert rec["reason"] == reason and not alive(rec["pid"] or 0)
    line = slurm.run("squeue", "-h", "-t", "all", "-o", "%i|%T|%r").stdout.strip()
    assert line == f"1|{state}|{reason}"


def test_slurm_preempt_with_requeue_and_scontrol_requeue_restart(tmp_path: Path) -> None:
    with FakeCluster(tmp_path / "wlm", requeue_delay=1.0, kill_wait=0.5) as slurm:
        _preempt_and_requeue(slurm, tmp_path)


def _preempt_and_requeue(slurm: FakeCluster, tmp_path: Path) -> None:
    job = script(tmp_path, "rq.sh", 'echo "restart=${SLURM_RESTART_COUNT-0}"; sleep 30')
    slurm.run("sbatch", "--requeue", "-o", f"{tmp_path}/rq_%j.out", job)
    slurm.wait_state("1", "RUNNING")
    slurm.inject("1", "preempt")
    assert slurm.wait_state("1", "PENDING")["reason"] == "BeginTime"
    assert slurm.wait_state("1", "RUNNING")["restarts"] == 1
    assert slurm.run("scontrol", "requeue", "1").returncode == 0
    rec = slurm.wait_for(lambda js: js[0]["state"] == "RUNNING" and js[0]["restarts"] == 2)[0]
    time.sleep(0.2)
    assert "restart=2" in Path(rec["stdout_path"]).read_text()
    pending = slurm.run("sbatch", "-H", job).stdout.split()[-1]
    bad = slurm.run("scontrol", "requeue", pending)
    assert bad.returncode == 1 and "Job is pending execution" in bad.stderr


def test_slurm_vanish_and_requeue_and_hold_injections(slurm: FakeCluster, tmp_path: Path) -> None:
    job = script(tmp_path, "v.sh", "sleep 30")
    slurm.run("sbatch", job)
    slurm.run("sbatch", job)
    slurm.wait_state("2", "RUNNING")
    slurm.inject("1", "vanish")
    slurm.wait_for(lambda js: all(j["id"] != "1" for j in js))
    gone = slurm.run("squeue", "-j", "1")
    assert gone.returncode == 1 and gone.stderr.strip() == "slurm_load_jobs error: Invalid job id specified"
    assert slurm.run("sacct", "-X", "-P", "-n", "-j", "1").stdout == ""
    slurm.inject("2", "requeue")
    assert slurm.wait_for(lambda js: js[0]["restarts"] == 1 and js[0]["state"] == "RUNNING")
    slurm.run("sbatch", "--hold", job)
    assert slurm.run("squeue", "-h", "-j", "3", "-o", "%T|%r").stdout.strip() == "PENDING|JobHeldUser"
    slurm.inject("3", "release")
    slurm.wait_state("3", "RUNNING")
    slurm.inject("3", "hold")  # a running job keeps running, only the reason changes
    expected = "JobHeldAdmin" if os.geteuid() == 0 else "JobHeldUser"
    assert slurm.run("squeue", "-h", "-j", "3", "-o", "%T|%r").stdout.strip() == f"RUNNING|{expected}"


def test_slurm_holds_release_and_scancel_forms(slurm: FakeCluster, tmp_path: Path) -> None:
    job = script(tmp_path, "h.sh", "sleep 30")
    slurm.run("sbatch", "-H", "-a", "0-3", "-J", "held", job)
    assert slurm.run("squeue", "-h", "-o", "%i|%r").stdout.strip() == "1_[0-3]|JobHeldUser"
    assert slurm.run("scontrol", "release", "1").returncode == 0
    slurm.wait_for(lambda js: all(j["state"] == "RUNNING" for j in js))
    other = slurm.run("sbatch", "--parsable", "-J", "other", "-c", "8", job).stdout.strip()  # waits: no slots
    assert slurm.run("scontrol", "hold", other).returncode == 0
    held = "JobHeldAdmin" if os.geteuid() == 0 else "JobHeldUser"
    assert slurm.run("squeue", "-h", "-j", other, "-o", "%T|%r").stdout.strip() == f"PENDING|{held}"
    assert slurm.run("scancel", "1_[0-1]").returncode == 0
    assert slurm.run("scancel", "-n", "other").returncode == 0
    quiet = slurm.run("scancel", "99999")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    slurm.wait_for(lambda js: {j["id"]: j["state"] for j in js} == {
        "1_0": "CANCELLED", "1_1": "CANCELLED", "1_2": "RUNNING", "1_3": "RUNNING", other: "CANCELLED"})
    assert "CANCELLED by" in slurm.run("sacct", "-X", "-P", "-n", "-j", other, "-o", "State").stdout
    slurm.run("scancel", "--me")
    slurm.wait_idle(10)


def test_slurm_memory_and_walltime_limits(slurm: FakeCluster, tmp_path: Path) -> None:
    hog = script(tmp_path, "hog.sh", f'{PY} -c "b = b\'x\' * (300 << 20); import time; time.sleep(20)"')
    sleeper = script(tmp_path, "sleep.sh", "sleep 30")
    slurm.run("sbatch", "--mem=100M", hog)
    slurm.run("sbatch", "--time=0:2", sleeper)
    assert slurm.wait_state("1", "OUT_OF_MEMORY", timeout=15)["reason"] == "OutOfMemory"
    rec = slurm.wait_state("2", "TIMEOUT", timeout=15)
    assert rec["reason"] == "TimeLimit" and 2.0 <= rec["end_t"] - rec["start_t"] < 6
    acct = slurm.run("sacct", "-X", "-P", "-n", "-j", "1,2", "-o", "JobID,State,ExitCode").stdout.split()
    assert acct == ["1|OUT_OF_MEMORY|0:125", "2|TIMEOUT|0:0"]


def test_slurm_launch_failure_and_submission_errors(tmp_path: Path) -> None:
    with FakeCluster(tmp_path / "wlm", max_array_size=11) as cluster:
        job = script(tmp_path, "ok.sh", "true")
        cluster.run("sbatch", "-o", "/nonexistent/dir/out.txt", job)
        rec = cluster.wait_state("1", "FAILED")
        assert rec["reason"] == "JobLaunchFailure"
        assert cluster.run("sacct", "-X", "-P", "-n", "-j", "1", "-o", "ExitCode").stdout.strip() == "0:53"
        too_big = cluster.run("sbatch", "--array=0-11", job)
        assert too_big.returncode == 1
        assert too_big.stderr.strip() == "sbatch: error: Batch job submission failed: Invalid job array specification"
        bad = cluster.run("sbatch", "--bogus", job)
        assert bad.returncode == 1 and bad.stderr.startswith("sbatch: unrecognized option '--bogus'")
        config = cluster.run("scontrol", "show", "config").stdout
        assert "MaxArraySize            = 11" in config and "SLURM_VERSION           = 22.05.8" in config
        assert "MinJobAge               = 300 sec" in config
        calls = cluster.calls("sbatch")
        assert [c["rc"] for c in calls] == [0, 1, 1] and calls[2]["argv"] == ["--bogus", job]


def test_slurm_rules_fire_on_start(tmp_path: Path) -> None:
    with FakeCluster(tmp_path / "wlm", slots=8, kill_wait=0.3) as cluster:
        job = script(tmp_path, "r.sh", "sleep 0.6")
        cluster.add_rule(action="oom", index=3, after=0.2)
        cluster.add_rule(action="node_fail", nth_start=2)
        cluster.run("sbatch", "--array=0-4", job)
        cluster.wait_idle(15)
        states = {j["id"]: j["state"] for j in cluster.jobs()}
        assert states.pop("1_3") == "OUT_OF_MEMORY"
        assert sorted(states.values()).count("NODE_FAIL") == 1 and sorted(states.values()).count("COMPLETED") == 3
        assert [r["times"] for r in cluster.rules()] == [0, 0]
        cluster.add_rule(action="kill", probability=0.5, seed=7, times=100)
        array_id = int(cluster.run("sbatch", "--parsable", "--array=0-9", job).stdout)
        cluster.wait_idle(15)
        killed = [j["id"] for j in cluster.jobs() if j["job_id"] == array_id and j["state"] == "CANCELLED"]
        assert 0 < len(killed) < 10


def test_slurm_cli_failures_delays_and_call_log(slurm: FakeCluster, tmp_path: Path) -> None:
    job = script(tmp_path, "f.sh", "sleep 0.2")
    slurm.set_cli_failures(squeue=2, sbatch=1)
    failed = slurm.run("sbatch", job)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
    assert slurm.jobs() == []
    assert [slurm.run("squeue").returncode for _ in range(3)] == [1, 1, 0]
    slurm.set_cli_failures(sbatch=1, lost_reply=True)
    assert slurm.run("sbatch", job).returncode == 1 and len(slurm.jobs()) == 1  # submitted anyway
    slurm.set_cli_delay(squeue=0.6)
    started = time.monotonic()
    assert slurm.run("squeue").returncode == 0 and time.monotonic() - started >= 0.6
    calls = slurm.calls()
    assert [c["cmd"] for c in calls] == ["sbatch", "squeue", "squeue", "squeue", "sbatch", "squeue"]
    assert [c["rc"] for c in calls] == [1, 1, 1, 0, 1, 0] and calls[-1]["dur"] >= 0.6
    assert all(isinstance(c["t"], float) and isinstance(c["argv"], list) for c in calls)


def test_slurm_min_job_age_purges_but_sacct_remembers(tmp_path: Path) -> None:
    with FakeCluster(tmp_path / "wlm", min_job_age=1.0) as cluster:
        job = script(tmp_path, "q.sh", "exit 3")
        cluster.run("sbatch", job)
        assert cluster.wait_state("1", "FAILED")["reason"] == "NonZeroExitCode"
        cluster.wait_for(lambda js: not js, timeout=5)
        assert cluster.run("squeue", "-j", "1").returncode == 1
        assert cluster.run("sacct", "-X", "-P", "-n", "-j", "1", "-o", "JobID,State,ExitCode").stdout.strip() == "1|FAILED|3:0"


def test_daemon_survives_submitter_death_and_stop_kills_jobs(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    cluster = FakeCluster(tmp_path / "wlm", kill_wait=0.5).start()
    try:
        finisher = script(tmp_path, "fin.sh", f"sleep 1; touch {marks}/done")
        stubborn = script(tmp_path, "stub.sh", f"trap '' TERM; echo $$ > {marks}/pid_$SLURM_ARRAY_TASK_ID; sleep 60")
        driver = subprocess.Popen(
            [PY, "-c", "import subprocess,sys,time; "
             f"print(subprocess.run(['sbatch','--parsable','{finisher}'],capture_output=True,text=True).stdout,"
             "flush=True); time.sleep(60)"],
            env=cluster.env(), stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert driver.stdout.readline().strip() == "1"
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        cluster.wait_state("1", "COMPLETED", timeout=10)
        assert (marks / "done").exists()
        cluster.run("sbatch", "-a", "0-2", stubborn)
        cluster.wait_for(lambda js: len(list(marks.glob("pid_*"))) == 3)
        pids = [int(p.read_text()) for p in marks.glob("pid_*")]
        assert all(alive(pid) for pid in pids)
    finally:
        cluster.stop()
    assert not any(alive(pid) for pid in pids)
    assert cluster.daemon is None


# ------------------------------------------------------------------------------------ SGE
def test_sge_qsub_terse_and_qstat_xml_structure(sge: FakeCluster, tmp_path: Path) -> None:
    job = script(tmp_path, "a.sh", 'echo "$JOB_ID $SGE_TASK_ID $SGE_TASK_FIRST $SGE_TASK_LAST $NSLOTS $PATH"; sleep 0.5')
    array = sge.run("qsub", "-terse", "-h", "-t", "1-8", "-tc", "2", "-N", "arr", "-cwd", "-j", "y", job)
    assert array.stdout == "1.1-8:1\n"
    gate = tmp_path / "gate"
    long_job = script(tmp_path, "p.sh", 'echo "$JOB_ID $SGE_TASK_ID $SGE_TASK_FIRST $SGE_TASK_LAST"; '
                                        f'while [ ! -e {gate} ]; do sleep 0.05; done')
    assert sge.run("qsub", "-N", "plain", "-cwd", long_job).stdout == 'Your job 2 ("plain") has been submitted\n'
    sge.wait_state("2", "RUNNING")
    root = ET.fromstring(sge.run("qstat", "-xml", "-u", "*").stdout)
    assert root.tag == "job_info" and [c.tag for c in root] == ["queue_info", "job_info"]
    (running,) = root.find("queue_info").findall("job_list")
    (pending,) = root.find("job_info").findall("job_list")
    assert running.get("state") == "running" and pending.get("state") == "pending"
    assert [c.tag for c in running] == ["JB_job_number", "JAT_prio", "JB_name", "JB_owner", "state",
                                        "JAT_start_time", "queue_name", "slots"]  # plain job: no <tasks>
    assert [c.tag for c in pending] == ["JB_job_number", "JAT_prio", "JB_name", "JB_owner", "state",
                                        "JB_submission_time", "queue_name", "slots", "tasks"]
    assert (pending.findtext("tasks"), pending.findtext("state"), pending.findtext("queue_name")) == ("1-8:1", "hqw", "")
    per_task = ET.fromstring(sge.run("qstat", "-xml", "-g", "d").stdout).find("job_info").findall("job_list")
    assert [p.findtext("tasks") for p in per_task] == [str(i) for i in range(1, 9)]
    table = sge.run("qstat").stdout.splitlines()
    assert table[0].startswith("job-ID  prior   name       user         state submit/start at     queue")
    assert set(table[1]) == {"-"} and len(table) == 4
    assert re.match(r"^ +2 0\.\d{5} plain +\S+ +r +\S+ \S+ all\.q@vm +1 +$", table[2])  # running first
    assert re.match(r"^ +1 0\.\d{5} arr +\S+ +hqw +\d\d/\d\d/\d{4} \d\d:\d\d:\d\d +1 1-8:1$", table[3])
    sge.run("qrls", "1")
    gate.touch()
    max_running = 0
    while any(j["state"] != "COMPLETED" for j in sge.jobs()):
        root = ET.fromstring(sge.run("qstat", "-xml").stdout)
        tasks = [j.findtext("tasks") for j in root.find("queue_info") if j.findtext("JB_job_number") == "1"]
        assert all(t and t.isdigit() for t in tasks)
        max_running = max(max_running, len(tasks))
        time.sleep(0.05)
    assert max_running == 2
    out = (tmp_path / "arr.o1.4").read_text().split()
    assert out == ["1", "4", "1", "8", "1", "/usr/local/bin:/bin:/usr/bin"]
    assert (tmp_path / "plain.o2").read_text().split()[1:4] == ["undefined"] * 3
    assert sge.run("qstat", "-xml").stdout.endswith("<queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>\n")


def test_sge_eqw_exit_100_bad_output_and_qmod_clear(sge: FakeCluster, tmp_path: Path) -> None:
    e100 = script(tmp_path, "e.sh", "exit 100")
    ok = script(tmp_path, "ok.sh", "true")
    sge.run("qsub", "-cwd", e100, cwd=tmp_path)
    sge.run("qsub", "-o", "/nonexistent/out.txt", ok, cwd=tmp_path)
    sge.wait_state("1", "ERROR")
    sge.wait_state("2", "ERROR")
    states = [line.split()[4] for line in sge.run("qstat").stdout.splitlines()[2:]]
    assert states == ["Eqw", "Eqw"]
    detail = sge.run("qstat", "-j", "2").stdout
    assert re.search(r"error reason +1: +\S+ \S+ \[\d+:\d+\]: error: can't open output file "
                     r'"/nonexistent/out.txt": No such file or directory', detail)
    assert "exit_status of job start = 100" in sge.run("qstat", "-j", "1").stdout
    cleared = sge.run("qmod", "-cj", "1")
    assert "cleared error state of job 1" in cleared.stdout
    rec = sge.wait_for(lambda js: js[0]["state"] == "ERROR" and js[0]["start_t"] and len(
        [l for l in sge.run("qacct", "-j", "1").stdout.splitlines() if l.startswith("failed")]) == 2)[0]
    assert rec["id"] == "1"
    acct = sge.run("qacct", "-j", "1").stdout
    assert "failed       30  : application error returned" in acct and "exit_status  100" in acct
    user = sge.config["user"]
    assert sge.run("qdel", "1", "2").stdout.splitlines() == [f"{user} has deleted job 1", f"{user} has deleted job 2"]
    sge.wait_for(lambda js: all(j["state"] == "CANCELLED" for j in js))
    assert sge.run("qstat").stdout == ""


def test_sge_exit_99_requeues_and_h_rt_kills(sge: FakeCluster, tmp_path: Path) -> None:
    flag = tmp_path / "second_run"
    retry = script(tmp_path, "r.sh", f"if [ -e {flag} ]; then exit 0; fi; touch {flag}; exit 99")
    sleeper = script(tmp_path, "s.sh", "sleep 30")
    sge.run("qsub", "-cwd", retry, cwd=tmp_path)
    sge.run("qsub", "-cwd", "-l", "h_rt=0:0:1", sleeper, cwd=tmp_path)
    assert sge.wait_state("1", "COMPLETED")["restarts"] == 1
    sge.wait_state("2", "TIMEOUT", timeout=10)
    assert sge.run("qstat").stdout == ""  # SGE shows no finished jobs
    first, second = sge.run("qacct", "-j", "1").stdout.split("=" * 62)[1:]
    assert "failed       25  : rescheduling" in first and "exit_status  99" in first
    assert re.search(r"failed +0\n", second)
    killed = sge.run("qacct", "-j", "2").stdout
    assert "failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit" in killed
    assert re.search(r"exit_status  137 +\(Killed\)", killed)
    assert sge.run("qacct", "-j", "99999").stderr.strip() == "error: job id 99999 not found"


@pytest.mark.parametrize("action,failed", [("node_fail", 100), ("oom", 37), ("kill", 100)])
def test_sge_kills_vanish_from_qstat_and_show_in_qacct(sge: FakeCluster, tmp_path: Path, action: str,
                                                        failed: int) -> None:
    sge.run("qsub", "-cwd", script(tmp_path, "s.sh", "sleep 30"), cwd=tmp_path)
    sge.wait_state("1", "RUNNING")
    sge.inject("1", action)
    sge.wait_for(lambda js: js[0]["state"] not in ("RUNNING", "COMPLETING"))
    assert sge.run("qstat").stdout == ""
    assert re.search(rf"failed +{failed} +:", sge.run("qacct", "-j", "1").stdout)


def test_sge_holds_eqw_injection_preempt_rerun_and_qdel_messages(sge: FakeCluster, tmp_path: Path) -> None:
    user = sge.config["user"]
    sleeper = script(tmp_path, "s.sh", "sleep 30")
    sge.run("qsub", "-h", "-cwd", "-N", "held", sleeper, cwd=tmp_path)
    sge.run("qsub", "-cwd", "-r", "y", "-t", "1-2", sleeper, cwd=tmp_path)
    sge.wait_state("2.2", "RUNNING")

    def states() -> dict[str, str]:
        root = ET.fromstring(sge.run("qstat", "-xml", "-g", "d").stdout)
        return {f"{j.findtext('JB_job_number')}{'.' + j.findtext('tasks') if j.find('tasks') is not None else ''}":
                j.findtext("state") for j in root.iter("job_list")}
    assert states()["1"] == "hqw"
    assert sge.run("qhold", "2.1").returncode == 0
    assert states()["2.1"] == "hr"
    sge.run("qrls", "1")
    sge.run("qrls", "2.1")
    sge.wait_state("1", "RUNNING")
    sge.inject("2.2", "preempt")  # -r y: rescheduled, shows Rq then Rr
    sge.wait_for(lambda js: any(j["id"] == "2.2" and j["restarts"] == 1 and j["state"] == "RUNNING" for j in js))
    assert states()["2.2"] == "Rr"
    sge.inject("2.1", "eqw")
    sge.wait_state("2.1", "ERROR")
    assert states()["2.1"] == "Eqw"
    out = sge.run("qdel", "2", "1", "99999")
    assert out.returncode == 1 and out.stderr.strip() == 'denied: job "99999" does not exist'
    assert out.stdout.splitlines() == [f"{user} has registered the job-array task 2.2 for deletion",
                                       f"{user} has deleted job 2", f"{user} has registered the job 1 for deletion"]
    sge.wait_idle(10)


def test_sge_submission_limits_config_env_and_cli_failures(tmp_path: Path) -> None:
    with FakeCluster(tmp_path / "wlm", flavor="sge", max_array_size=100) as cluster:
        job = script(tmp_path, "env.sh", 'echo "${MARK-none} $SGE_O_WORKDIR"')
        big = cluster.run("qsub", "-t", "1-101", job)
        assert big.returncode == 1 and big.stderr == (
            "Unable to run job: job rejected: You try to submit a job with more than 100 tasks.\nExiting.\n")
        assert re.search(r"^max_aj_tasks +100$", cluster.run("qconf", "-sconf").stdout, re.M)
        env = dict(cluster.env(), MARK="exported")
        for flags in ([], ["-V"]):
            subprocess.run([str(cluster.bin_dir / "qsub"), "-cwd", *flags, job], env=env, cwd=tmp_path, check=True)
        cluster.wait_idle(10)
        assert (tmp_path / "env.sh.o1").read_text().split() == ["none", str(tmp_path)]
        assert (tmp_path / "env.sh.o2").read_text().split()[0] == "exported"
        cluster.set_cli_failures(qstat=1)
        failed = cluster.run("qstat")
        assert failed.returncode == 1 and "commlib error" in failed.stderr
        assert cluster.run("qstat").returncode == 0
        unknown = cluster.run("qsub", "-bogus", job)
        assert unknown.returncode == 2 and unknown.stderr.strip() == 'qsub: ERROR! invalid option argument "-bogus"'
        with pytest.raises(ValueError):
            cluster.add_rule(action="explode")
    assert "FakeCluster" in fake_wlm.__all__


# -- fake PBS and LSF -------------------------------------------------------------------------------
def test_pbs_qsub_qstat_json_layout_and_exit_statuses(tmp_path: Path) -> None:
    """`qstat -f -F json` as PBS 19-22 writes it ("key":value, 4-space indents, see test_queue_pbs.py),
    subjobs `12[i].server` (X once done), a walltime kill Exit_status -29, a qdel'd running job 271."""
    from poolparty.queues.pbs import parse_qstat
    with FakeCluster(tmp_path / "wlm", flavor="pbs") as c:
        out = c.run("qsub", "-N", "arr", "-j", "oe", "-J", "0-2", "-l", "walltime=00:00:01", "-o",
                    str(tmp_path / "a.^array_index^"), "--", "/bin/sh", "-c", "echo $PBS_ARRAY_INDEX; sleep 30")
        assert out.stdout == "1[].server\n"
        assert c.run("qsub", "-J", "3-3", "--", "/bin/true").stderr.strip() == "qsub: illegal -J value"
        c.wait_idle(30)
        text = c.run("qstat", "-f", "-F", "json", "-x", "-t").stdout
        assert re.search(r'^ {12}"job_state":"X",$', text, re.MULTILINE) and '": ' not in text
        states = parse_qstat(text, "arr")
        assert sorted(states) == ["1[0].server", "1[1].server", "1[2].server"]
        assert {s.reason for s in states.values()} == {"X Exit_status=-29"}
        assert (tmp_path / "a.2").read_text().strip() == "2"
        assert "Jobs" not in c.run("qstat", "-f", "-F", "json", "-t").stdout  # no live job left
        job = c.run("qsub", "-N", "one", "--", "/bin/sleep", "30").stdout.strip()
        c.wait_state(job, "RUNNING")
        assert c.run("qdel", job).returncode == 0
        c.wait_idle(30)
        assert parse_qstat(c.run("qstat", "-f", "-F", "json", "-x").stdout, "one")[job].reason == "F Exit_status=271"
        assert c.run("qdel", job).returncode == 35


def test_lsf_bsub_bjobs_json_layout_and_exit_reasons(tmp_path: Path) -> None:
    """`bjobs -json -o` as LSF 10.1 writes it (two-space indents), elements `12[i]` named
    `name[i]`, a run-limit kill EXIT with TERM_RUNLIMIT, bkill of a finished job rc 255."""
    from poolparty.queues.lsf import BJOBS_FIELDS, parse_bjobs
    with FakeCluster(tmp_path / "wlm", flavor="lsf") as c:
        out = c.run("bsub", "-J", "arr[1-2]%1", "-W", "1", "-cwd", str(tmp_path), "-o", str(tmp_path / "o%J_%I"),
                    "echo", "$LSB_JOBINDEX", "'a  b'")
        assert out.stdout == "Job <1> is submitted to default queue <normal>.\n"
        c.wait_idle(30)
        assert (tmp_path / "o1_2").read_text() == "2 a  b\n"
        text = c.run("bjobs", "-a", "-json", "-o", BJOBS_FIELDS, "-J", "arr*").stdout
        assert text.startswith('{\n  "COMMAND":"bjobs",\n  "JOBS":2,\n  "RECORDS":[\n    {\n      "JOBID":"1",')
        states = parse_bjobs(text, "arr")
        assert {k: s.state.value for k, s in states.items()} == {"1[1]": "completed", "1[2]": "completed"}
        job = c.run("bsub", "-J", "slow", "-o", str(tmp_path / "s"), "sleep 30").stdout.split("<")[1].split(">")[0]
        c.wait_state(job, "RUNNING")
        c.inject(job, "timeout")
        c.wait_idle(30)
        text = c.run("bjobs", "-a", "-json", "-o", "jobid stat exit_reason job_name", "-J", "slow").stdout
        assert '"EXIT_REASON":"TERM_RUNLIMIT: job killed after reaching LSF run time limit"' in text
        assert c.run("bkill", job).returncode == 255
