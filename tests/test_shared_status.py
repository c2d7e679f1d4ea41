"""One status query per poll per user: the per-user query parsers on literal scheduler output, the
snapshot's freshness rules, the lock a stopped or killed driver held, and the shared call budget across
processes (queues/shared_status.py, queues/call_budget.py, store/user_state.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poolparty.errors import UnsafeWorkDirError
from poolparty.queues import make_queue
from poolparty.queues.call_budget import BucketState, CallBudget, take_token
from poolparty.queues.cli import RateLimiter, SchedulerCLI, controller_busy
from poolparty.queues.lsf import parse_user_bjobs
from poolparty.queues.pbs import parse_qstat as parse_pbs_qstat, parse_user_qstat as parse_user_pbs_qstat
from poolparty.queues.sge import parse_qstat as parse_sge_qstat, parse_user_qstat as parse_user_sge_qstat
from poolparty.queues.shared_status import SharedStatus, decode_snapshot, encode_snapshot
from poolparty.queues.slurm import SlurmQueue, parse_user_squeue, user_squeue_argv
from poolparty.queues.states import JobState, JobStatus
from poolparty.store.user_state import read_private_json, status_paths
from recording_cli import RecordingCLI
from test_queue_lsf import DKFZ_DONE
from test_queue_pbs import QUT_FINISHED
from test_queue_sge import QSTAT_XML

HOLDER = Path(__file__).parent / "drivers" / "status_holder.py"

# squeue --noheader --array --states=all --user=root --format=%F|%K|%T|%r|%j, rows as in the real
# SLURM 22.05 samples (research notes 3.6) with the job name added; "dep" is the user's own job, not
# poolparty's, and a name may itself hold a "|"
USER_SQUEUE = """\
14|2|PENDING|JobArrayTaskLimit|pp-aaaaaaaaaaaa
14|0|RUNNING|None|pp-aaaaaaaaaaaa
14|4-5%2|PENDING|JobArrayTaskLimit|pp-aaaaaaaaaaaa
10|N/A|PENDING|DependencyNeverSatisfied|dep
12|N/A|COMPLETING|TimeLimit|pp-bbbbbbbbbbbb
13|N/A|OUT_OF_MEMORY|OutOfMemory|pp-bbbbbbbbbbbb
20|N/A|RUNNING|None|mine|too
"""


def test_user_squeue_groups_poolparty_jobs_by_pool_and_leaves_the_rest_out():
    pending = JobStatus(JobState.PENDING, "JobArrayTaskLimit")
    assert parse_user_squeue(USER_SQUEUE) == {
        "pp-aaaaaaaaaaaa": {"14_2": pending, "14_0": JobStatus(JobState.RUNNING, ""), "14_4": pending,
                            "14_5": pending},
        "pp-bbbbbbbbbbbb": {"12": JobStatus(JobState.RUNNING, "TimeLimit"),
                            "13": JobStatus(JobState.OUT_OF_MEMORY, "OutOfMemory")},
    }
    assert user_squeue_argv("alice") == ["squeue", "--noheader", "--array", "--states=all", "--user=alice",
                                         "--format=%F|%K|%T|%r|%j"]


def test_user_qstat_sge_keeps_the_users_poolparty_jobs():
    # QSTAT_XML: pp-r1 is root's; "someone-else" is alice's and not poolparty's
    assert parse_user_sge_qstat(QSTAT_XML, "root") == {"pp-r1": parse_sge_qstat(QSTAT_XML, "pp-r1")}
    assert parse_user_sge_qstat(QSTAT_XML, "alice") == {}
    assert parse_user_sge_qstat(QSTAT_XML.replace("<JB_owner>root", "<JB_owner>bob"), "root") == {}


def test_user_qstat_pbs_keeps_the_users_poolparty_jobs():
    ours = QUT_FINISHED.replace('"Job_Name": "testname"', '"Job_Name": "pp-r1"')
    assert parse_user_pbs_qstat(ours, "pbsuser") == {"pp-r1": parse_pbs_qstat(ours, "pp-r1")}
    assert parse_user_pbs_qstat(ours, "pbsuser")["pp-r1"]  # the sample's job is there
    assert parse_user_pbs_qstat(ours, "eve") == {}  # Job_Owner is pbsuser@725ccdf1a5fb
    assert parse_user_pbs_qstat(QUT_FINISHED, "pbsuser") == {}  # "testname" is not poolparty's


def test_user_bjobs_lsf_groups_elements_by_pool():
    ours = DKFZ_DONE.replace('"JOB_NAME":"ls -l"', '"JOB_NAME":"pp-r1[3]"').replace(
        '"JOBID":"22005",', '"JOBID":"22005", "JOBINDEX":"3",')
    assert parse_user_bjobs(ours) == {"pp-r1": {"22005[3]": JobStatus(JobState.COMPLETED, "DONE")}}
    assert parse_user_bjobs(DKFZ_DONE) == {}


def test_snapshot_is_used_only_while_fresh():
    pools = {"pp-a": {"1_0": JobStatus(JobState.RUNNING, ""), "1_1": JobStatus(JobState.HELD, "JobHeldUser")}}
    doc = json.loads(json.dumps(encode_snapshot(100.0, pools)))  # JSON on disk, never a pickle
    assert decode_snapshot(doc, oldest=99.0, now=101.0) == pools
    assert decode_snapshot(doc, oldest=100.5, now=101.0) is None  # older than the reader's floor
    assert decode_snapshot(doc, oldest=0.0, now=50.0) is None  # from the future: a clock step
    assert decode_snapshot({"taken": 100.0, "pools": {"pp-a": {"1_0": ["exploded", ""]}}}, 0.0, 101.0) is None
    assert decode_snapshot(None, 0.0, 101.0) is None
    assert decode_snapshot([1, 2], 0.0, 101.0) is None


def test_take_token_refills_at_the_rate_and_waits_while_busy():
    state, wait = take_token(BucketState(tokens=0.0, last=10.0), now=10.1, rate=5.0, burst=10.0)
    assert wait == pytest.approx(0.1) and state.tokens == pytest.approx(0.5)  # half a token: 0.1 s to a whole
    state, wait = take_token(BucketState(tokens=0.0, last=10.0), now=10.25, rate=5.0, burst=10.0)
    assert wait == 0.0 and state.tokens == pytest.approx(0.25)
    state, wait = take_token(BucketState(tokens=3.0, last=0.0), now=1000.0, rate=5.0, burst=10.0)
    assert wait == 0.0 and state.tokens == pytest.approx(9.0)  # full at the burst, then one taken
    state, wait = take_token(BucketState(tokens=10.0, last=5.0, busy_until=7.0), now=6.0, rate=5.0, burst=10.0)
    assert wait == pytest.approx(1.0) and state.tokens == 10.0 and state.busy_until == 7.0


def slurm_with(cli: RecordingCLI) -> SlurmQueue:
    return SlurmQueue(cli)  # type: ignore[arg-type]


def test_two_pools_of_one_user_share_one_query(tmp_path):
    cli = RecordingCLI(squeue="7|0|RUNNING|None|pp-aaaaaaaaaaaa\n8|N/A|PENDING|Priority|pp-bbbbbbbbbbbb\n")
    a, b = SharedStatus(slurm_with(cli), tmp_path), SharedStatus(slurm_with(cli), tmp_path)
    assert a.query("pp-aaaaaaaaaaaa") == ({"7_0": JobStatus(JobState.RUNNING, "")}, False)
    assert b.query("pp-bbbbbbbbbbbb") == ({"8": JobStatus(JobState.PENDING, "Priority")}, True)
    assert [argv[0] for argv in cli.argvs] == ["squeue"]  # ONE call for both pools
    assert cli.argvs[0][4].startswith("--user=")
    # a pool that submitted after the snapshot was taken asks again: the snapshot cannot know its job
    assert b.query("pp-bbbbbbbbbbbb", not_before=time.time())[1] is False
    assert len(cli.argvs) == 2


def test_snapshot_older_than_the_readers_floor_is_asked_again(tmp_path):
    cli = RecordingCLI(squeue="")
    queue = slurm_with(cli)
    queue.min_poll_interval = 0.3
    status = SharedStatus(queue, tmp_path)
    status.query("pp-aaaaaaaaaaaa")
    assert status.query("pp-aaaaaaaaaaaa")[1] is True  # within the floor
    time.sleep(0.35)
    assert status.query("pp-aaaaaaaaaaaa")[1] is False
    assert len(cli.argvs) == 2


def test_a_planted_snapshot_is_never_read(tmp_path):
    cli = RecordingCLI(squeue="")
    queue = slurm_with(cli)
    snapshot, _ = status_paths(tmp_path, queue.status_scope())
    snapshot.write_text(json.dumps(encode_snapshot(time.time(), {"pp-a": {"1": JobStatus(JobState.RUNNING)}})))
    os.chmod(snapshot, 0o666)  # someone else could have written it
    with pytest.raises(UnsafeWorkDirError, match="not a private file"):
        read_private_json(snapshot)
    states, shared = SharedStatus(queue, tmp_path).query("pp-a")
    assert (states, shared) == ({}, False) and "--name=pp-a" in cli.argvs[0]  # asked alone
    os.unlink(snapshot)
    os.symlink(tmp_path / "elsewhere.json", snapshot)
    with pytest.raises(UnsafeWorkDirError, match="symlink"):
        read_private_json(snapshot)


def start_holder(flavor: str, state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(HOLDER), "--queue", flavor, "--state-dir", str(state_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "HOLDING", proc.stderr.read()
    return proc


@pytest.mark.parametrize("fate", ["SIGKILL", "SIGSTOP"])
def test_a_killed_or_stopped_lock_holder_delays_others_by_at_most_one_interval(
        fate, make_queue_under_test, tmp_path):
    q = make_queue_under_test("fake-slurm")
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    holder = start_holder("slurm", state_dir)
    try:
        holder.send_signal(getattr(signal, fate))
        if fate == "SIGKILL":
            holder.wait(10)
        queue = make_queue("slurm", SchedulerCLI(timeout=30))
        interval = queue.min_poll_interval
        started = time.monotonic()
        states, shared = SharedStatus(queue, state_dir).query("pp-aaaaaaaaaaaa")
        elapsed = time.monotonic() - started
        last = q.calls("squeue")[-1]["argv"]
        started = time.monotonic()
        queue.query("pp-aaaaaaaaaaaa")  # what one query of its own takes (the pool would have made it anyway)
        delay = elapsed - (time.monotonic() - started)
    finally:
        holder.kill()
        holder.wait(10)
    print(f"{fate}: status after {elapsed:.2f} s, {delay:.2f} s more than a query of its own (interval {interval} s)")
    assert delay <= interval
    assert states == {} and shared is False
    if fate == "SIGKILL":  # the kernel dropped the dead holder's flock: the user's query was refreshed
        assert any(a.startswith("--user=") for a in last)
    else:  # the stopped holder still has it: this pool asked for itself instead of waiting
        assert any(a.startswith("--name=pp-aaaaaaaaaaaa") for a in last)


BUDGET_CLIENT = """
import json, sys, time
from pathlib import Path
from poolparty.queues.call_budget import CallBudget
budget = CallBudget(rate=float(sys.argv[2]), directory=Path(sys.argv[1]))
print("READY", flush=True)
sys.stdin.readline()
times = []
for _ in range(int(sys.argv[3])):
    budget.acquire()
    times.append(time.time())
print(json.dumps(times), flush=True)
"""


def test_the_call_budget_is_shared_by_the_users_processes(tmp_path):
    rate, per_process, processes = 5.0, 5, 4
    procs = [subprocess.Popen([sys.executable, "-c", BUDGET_CLIENT, str(tmp_path), str(rate), str(per_process)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(processes)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
    for p in procs:  # all at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    times = sorted(t for p in procs for t in json.loads(p.communicate(timeout=60)[0]))
    burst = 2 * rate
    # 20 calls at 5/s with a burst of 10: never more than burst + rate * window in any window
    worst = max(j - i + 1 - rate * (times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times)))
    print(f"{len(times)} calls in {times[-1] - times[0]:.2f} s; most above the rate in a window: {worst:.2f}")
    assert worst <= burst + 1
    assert times[-1] - times[0] >= (len(times) - burst) / rate - 0.3


def test_a_busy_controller_holds_back_the_users_other_processes(tmp_path):
    heard, other = CallBudget(rate=50.0, directory=tmp_path), CallBudget(rate=50.0, directory=tmp_path)
    heard.busy(0.8)  # "Socket timed out" in one process
    started = time.monotonic()
    other.acquire()
    assert time.monotonic() - started >= 0.7


FLAKY_COMMAND = """#!/bin/sh
# answers like a busy slurmctld the first time, then works
if [ ! -e "$0.seen" ]; then : > "$0.seen"; echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1; fi
echo 42
"""


def test_submissions_and_cancels_take_the_shared_budget_status_queries_do_not(tmp_path):
    cli = SchedulerCLI(calls_per_second=4.0, budget=CallBudget(4.0, directory=tmp_path),
                       limiter=RateLimiter(rate=1000.0, burst=1000))  # the process-wide limit out of the way
    started = time.monotonic()
    for _ in range(12):  # a burst of 8, then 4 more at 4 per second
        cli.run(["true"], changes_queue=True)
    assert time.monotonic() - started >= 0.9
    started = time.monotonic()
    for _ in range(12):
        cli.run(["true"])  # a status query: only the process-wide limiter
    assert time.monotonic() - started < 0.9
    assert json.loads((tmp_path / "calls.json").read_text())["tokens"] < 1


def test_a_busy_answer_to_a_submission_makes_every_process_back_off(tmp_path):
    command = tmp_path / "sbatch"
    command.write_text(FLAKY_COMMAND)
    command.chmod(0o755)
    cli = SchedulerCLI(backoff_base=0.4, budget=CallBudget(directory=tmp_path / "state"))
    (tmp_path / "state").mkdir(mode=0o700)
    failed_at = time.time()
    assert cli.run([str(command)], submission=True).stdout.strip() == "42"
    busy_until = json.loads((tmp_path / "state" / "calls.json").read_text())["busy_until"]
    assert busy_until >= failed_at + 0.2  # the jittered pause (0.4 s x 0.5..1.5), for every process to honour
    started = time.monotonic()
    CallBudget(directory=tmp_path / "state").acquire()  # another process's next submission
    assert time.monotonic() - started >= busy_until - time.time() - 0.05


def test_scheduler_calls_per_second_is_a_pool_option_and_a_setting(monkeypatch):
    from poolparty import config
    from poolparty.api.options import build_engine_options

    assert build_engine_options(None, {"scheduler_calls_per_second": 2}).scheduler_calls_per_second == 2
    monkeypatch.setenv("POOLPARTY_SCHEDULER_CALLS_PER_SECOND", "0.5")
    assert config.load().values["scheduler_calls_per_second"] == 0.5
    assert build_engine_options(None, {}).scheduler_calls_per_second == 0.5


@pytest.mark.parametrize("answer", [
    "squeue: error: slurm_load_jobs error: Socket timed out on send/recv operation",
    "sbatch: error: Batch job submission failed: Resource temporarily unavailable",
    "squeue: error: slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
    "error: commlib error: got select error (Connection refused)",
    "unable to contact qmaster using port 6444 on host \"vm\"",
    'unable to send message to qmaster using port 6444 on host "vm": got send error',
])
def test_a_busy_controller_is_recognised(answer):
    assert controller_busy(answer)


def test_a_refusal_is_not_a_busy_controller():
    assert not controller_busy("slurm_load_jobs error: Invalid job id specified")
    assert not controller_busy("sbatch: error: Batch job submission failed: Invalid account or account/partition")
