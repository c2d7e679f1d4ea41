"""The SLURM adapter without a scheduler: the sbatch argv it renders and how it reads squeue, sacct and
scontrol output (literal samples in the formats SLURM 22.05 prints)."""
from pathlib import Path

import pytest
from recording_cli import RecordingCLI

from poolparty import ConfigurationError, Resources, SubmissionError
from poolparty.queues.arrays import ArrayPart, compress_indices, parse_indices
from poolparty.queues.base import ArrayRequest
from poolparty.queues.limits import table_row
from poolparty.queues.slurm import (SlurmQueue, SlurmReport, dry_run_argv, parse_max_array_index, parse_sbatch,
                                    parse_squeue, resource_flags, sbatch_argv, translate_state)
from poolparty.queues.states import JobState, JobStatus

WORKER = ("/usr/bin/python3", "-m", "poolparty.node.worker", "/runs/r1/batches/0001", "--sub", "3")


def request(indices=(0, 1, 2), offset=0, throttle=100, resources=Resources()) -> ArrayRequest:
    return ArrayRequest(name="pp-r1", part=ArrayPart(offset, tuple(indices)), throttle=throttle,
                        resources=resources, script=Path("/runs/r1/job.sh"), worker_argv=WORKER,
                        workdir=Path("/home/u/project"), log_dir=Path("/runs/r1/logs"))


# -- argv rendering ------------------------------------------------------------------------------------
def test_array_argv_without_throttle_when_all_elements_may_run():
    assert sbatch_argv(request((0, 1, 2, 5, 7, 8), offset=200, throttle=6)) == [
        "sbatch", "--parsable", "--job-name=pp-r1", "--export=ALL", "--chdir=/home/u/project",
        "--open-mode=append", "--array=0-2,5,7-8", "--output=/runs/r1/logs/j%A_%a.log", "/runs/r1/job.sh",
        *WORKER, "--offset", "200", "--index-env", "SLURM_ARRAY_TASK_ID"]


def test_array_argv_throttle_is_percent_suffix():
    argv = sbatch_argv(request(range(10), throttle=2))
    assert "--array=0-9%2" in argv


def test_plain_job_argv_runs_one_chunk_and_logs_by_job_id():
    argv = sbatch_argv(request((3, 4), offset=10), chunk=13)
    assert argv[-2:] == ["--chunk", "13"]
    assert "--output=/runs/r1/logs/j%j.log" in argv
    assert not any(a.startswith("--array") for a in argv) and "--offset" not in argv


def test_resources_extra_flags_come_last_so_they_override():
    r = Resources(cpus=4, memory=1536 * 1024**2, walltime=90061, partition="gpu", account="lab", qos="long",
                  gpus=2, extra=("--constraint=skylake", "--time=2:00:00"))
    argv = sbatch_argv(request(resources=r))
    flags = ["--cpus-per-task=4", "--mem=1536M", "--time=1-01:01:01", "--partition=gpu", "--account=lab",
             "--qos=long", "--gpus=2"]
    assert argv[6:13] == flags
    script = argv.index("/runs/r1/job.sh")
    assert argv[script - 2:script] == ["--constraint=skylake", "--time=2:00:00"]


def test_memory_rounds_up_to_whole_megabytes_and_walltime_keeps_seconds():
    assert resource_flags(Resources(memory=1000, walltime=59)) == ["--mem=1M", "--time=0-00:00:59"]
    assert resource_flags(Resources(memory=1024**2 + 1)) == ["--mem=2M"]


def test_resource_flags():  # moved from test_resources.py
    r = Resources.from_mapping(dict(cpus=4, memory="4GB", walltime="1:30:00", partition="gpu", account="lab",
                                    qos="long", gpus=1, extra=["--constraint=skylake"]))
    assert resource_flags(r) == ["--cpus-per-task=4", "--mem=4096M", "--time=0-01:30:00",
                                 "--partition=gpu", "--account=lab", "--qos=long", "--gpus=1"]


def test_dry_run_asks_test_only_with_the_same_resources():
    r = Resources(cpus=64, extra=("--exclusive",))
    assert dry_run_argv(r, Path("/runs/r1/job.sh"), Path("/wd")) == [
        "sbatch", "--test-only", "--chdir=/wd", "--output=/dev/null", "--cpus-per-task=64", "--exclusive",
        "/runs/r1/job.sh"]


def test_array_spec_round_trips():
    for indices in ([0, 1, 2, 5, 7, 8], [4], list(range(1000)), [1, 3, 5]):
        assert parse_indices(compress_indices(indices)) == indices
    assert parse_indices("") == []


# -- output parsing ------------------------------------------------------------------------------------
def test_parse_sbatch():
    assert parse_sbatch("1234\n", ["sbatch"]) == "1234"
    assert parse_sbatch("1234;poolparty\n", ["sbatch"]) == "1234"
    with pytest.raises(SubmissionError, match="unexpected sbatch output 'Submitted batch job 1234'"):
        parse_sbatch("Submitted batch job 1234\n", ["sbatch"])


# squeue --noheader --array --states=all --name=pp-r1 --format=%F|%K|%T|%r
SQUEUE = """\
14|2|PENDING|JobArrayTaskLimit
14|3|PENDING|JobArrayTaskLimit
14|0|RUNNING|None
14|7|FAILED|NonZeroExitCode
8|N/A|PENDING|JobHeldUser
9|N/A|PENDING|JobHeldAdmin
10|N/A|PENDING|DependencyNeverSatisfied
12|N/A|COMPLETING|TimeLimit
13|N/A|OUT_OF_MEMORY|OutOfMemory
15|N/A|CANCELLED|None
16|N/A|TIMEOUT|TimeLimit
17|N/A|NODE_FAIL|NodeDown
18|N/A|PREEMPTED|None
19|N/A|REQUEUED|BeginTime
1656|N/A|FAILED|JobLaunchFailure
"""


def test_parse_squeue_elements_and_states():
    states = parse_squeue(SQUEUE)
    assert {k: v.state for k, v in states.items()} == {
        "14_2": JobState.PENDING, "14_3": JobState.PENDING, "14_0": JobState.RUNNING, "14_7": JobState.FAILED,
        "8": JobState.HELD, "9": JobState.HELD, "10": JobState.PENDING, "12": JobState.RUNNING,
        "13": JobState.OUT_OF_MEMORY, "15": JobState.CANCELLED, "16": JobState.TIMEOUT, "17": JobState.NODE_FAIL,
        "18": JobState.PREEMPTED, "19": JobState.REQUEUED, "1656": JobState.LAUNCH_FAILED}
    assert states["10"] == JobStatus(JobState.PENDING, "DependencyNeverSatisfied")  # the reason, for messages


def test_parse_squeue_collapsed_array_range():
    # without --array squeue prints the pending rest of array 123 as 123_[4-9%2] (%K: 4-9%2)
    states = parse_squeue("123|4-9%2|PENDING|JobArrayTaskLimit\n123|1,3|PENDING|Priority\n123|0|RUNNING|None\n")
    assert sorted(states, key=lambda e: int(e.split("_")[1])) == [f"123_{i}" for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)]
    assert states["123_9"] == JobStatus(JobState.PENDING, "JobArrayTaskLimit")


def test_parse_squeue_skips_lines_that_are_not_records():
    assert parse_squeue("slurm_load_jobs error: Invalid job id specified\n\n14|0|RUNNING|None\n") == {
        "14_0": JobStatus(JobState.RUNNING, "")}  # squeue's "None": no reason
    assert parse_squeue("") == {}


# sacct -X -P -o JobID,JobIDRaw,JobName,State,ExitCode,...: its State column, as sacct writes it
SACCT = """\
8|8|held|PENDING|0:0
9|9|fail3|FAILED|3:0
15|15|tocancel|CANCELLED by 0|0:0
14_1|17|arr|FAILED|1:0
7|7|running|RUNNING|0:0
12|12|tlimit|TIMEOUT|0:0
13|13|oom|OUT_OF_MEMORY|0:125
20|20|down|NODE_FAIL|0:0
21|21|low|PREEMPTED|0:0
22|22|boot|BOOT_FAIL|0:0
23|23|late|DEADLINE|0:0
24|24|gone|REVOKED|0:0
25|25|cfg|CONFIGURING|0:0
26|26|held|REQUEUE_HOLD|0:0
"""


def test_translate_sacct_states():
    states = {line.split("|")[0]: translate_state(line.split("|")[3], "") for line in SACCT.splitlines()}
    assert states == {
        "8": JobState.PENDING, "9": JobState.FAILED, "15": JobState.CANCELLED, "14_1": JobState.FAILED,
        "7": JobState.RUNNING, "12": JobState.TIMEOUT, "13": JobState.OUT_OF_MEMORY, "20": JobState.NODE_FAIL,
        "21": JobState.PREEMPTED, "22": JobState.BOOT_FAIL, "23": JobState.TIMEOUT, "24": JobState.CANCELLED,
        "25": JobState.PENDING, "26": JobState.HELD}


def test_state_mapping():  # moved from test_resources.py
    assert translate_state("PENDING", "JobHeldAdmin") is JobState.HELD
    assert translate_state("FAILED", "JobLaunchFailure") is JobState.LAUNCH_FAILED
    assert translate_state("CANCELLED by 0", "None") is JobState.CANCELLED
    assert translate_state("RUNNING", "JobHeldAdmin") is JobState.RUNNING  # a hold of a running task
    assert translate_state("SOMETHING_NEW", "None") is JobState.FAILED


def test_parse_max_array_index():
    config = "Configuration data as of 2026-11-21T05:14:45\nMaxArraySize            = 501\nMaxJobCount = 10000\n"
    assert parse_max_array_index(config) == 500
    assert parse_max_array_index("MaxJobCount = 10000\n") == 1000  # SLURM's default MaxArraySize 1001


def test_doctor_report_notes_the_array_indices():
    report = SlurmReport("slurm", True, limits={"MaxArraySize": "1001"})
    assert report.notes() == ["arrays: indices 0..1000 (poolparty splits larger maps)"]
    assert report.partition_word == "partition"
    assert SlurmReport("slurm", False, "down").notes() == []


def test_doctor_report_user_limits_from_sacctmgr_rows():
    # sacctmgr -n -P show assoc user=root format=Account,Partition,MaxJobs,MaxSubmit,MaxTRES,MaxWall,GrpJobs,...
    assoc = ("Account", "Partition", "MaxJobs", "MaxSubmit", "MaxTRES", "MaxWall", "GrpJobs", "GrpSubmit", "QOS")
    report = SlurmReport("slurm", True)
    row = {"kind": "association", **table_row(assoc, "pp|debug|50||cpu=64|1-00:00:00|||normal")}
    assert report.limit_text(row) == (
        "association account=pp partition=debug: MaxJobs=50, MaxTRES=cpu=64, MaxWall=1-00:00:00")
    assert report.limit_text({"kind": "association", **table_row(assoc, "pp||||||||normal")}) == (
        "association account=pp: no limit set")
    qos = ("Name", "MaxJobsPU", "MaxSubmitPU", "MaxTRESPU", "MaxWall")
    assert report.limit_text({"kind": "qos", **table_row(qos, "normal|20|100||")}) == (
        "qos normal: MaxJobsPU=20, MaxSubmitPU=100")


# -- workflow resource names -----------------------------------------------------------------------------
def test_translate_workflow_names():
    base = Resources(account="default", extra=("--nice=5",))
    given = {"slurm_partition": "gpu", "qos": "long", "constraint": "skylake", "gres": "gpu:1",
             "slurm_extra": "--exclusive --mail-type=END"}
    fields, extra = SlurmQueue.translate_workflow(given, {"cpus": 2}, base)
    assert fields == {"cpus": 2, "partition": "gpu", "qos": "long"}
    assert extra == ("--nice=5", "--constraint=skylake", "--gres=gpu:1", "--exclusive", "--mail-type=END")
    with pytest.raises(ConfigurationError, match="--array is set by poolparty itself"):
        SlurmQueue.translate_workflow({"slurm_extra": "--array=1-3"}, {}, base)


# -- the adapter over a recorded command line ---------------------------------------------------------------
def test_submit_maps_chunks_to_elements_and_query_reads_squeue():
    cli = RecordingCLI(sbatch="4242\n", squeue="4242|0|RUNNING|None\n4242|1|PENDING|JobArrayTaskLimit\n")
    queue = SlurmQueue(cli)
    [sub] = queue.submit(request((0, 1), offset=500, throttle=1))
    assert (sub.job_id, sub.elements) == ("4242", {500: "4242_0", 501: "4242_1"})
    assert cli.argvs[0] == sbatch_argv(request((0, 1), offset=500, throttle=1))
    assert queue.query("pp-r1") == {"4242_0": JobStatus(JobState.RUNNING, ""),
                                    "4242_1": JobStatus(JobState.PENDING, "JobArrayTaskLimit")}
    assert cli.argvs[1] == ["squeue", "--noheader", "--array", "--states=all", "--name=pp-r1",
                            "--format=%F|%K|%T|%r"]


def test_plain_jobs_are_one_sbatch_each():
    cli = RecordingCLI(sbatch="77\n")
    subs = SlurmQueue(cli).submit(request((0, 1), offset=4), array=False)
    assert [s.elements for s in subs] == [{4: "77"}, {5: "77"}]
    assert [a[-1] for a in cli.argvs] == ["4", "5"]
