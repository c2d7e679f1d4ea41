"""The SGE adapter without a scheduler: the qsub argv it renders and how it reads qsub, qstat -xml and
qconf output (literal samples in the formats Son of Grid Engine 8.1.9 prints)."""
from pathlib import Path

import pytest
from recording_cli import RecordingCLI

from poolparty import ConfigurationError, Resources, SubmissionError, UnsupportedResourceError
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.base import ArrayRequest
from poolparty.queues.sge import (QSTAT, SgeQueue, SgeReport, dry_run_argv, parse_max_aj_tasks, parse_qstat, parse_qsub,
                                  qsub_argv, resource_flags, task_elements, translate_state)
from poolparty.queues.states import JobState, JobStatus

WORKER = ("/usr/bin/python3", "-m", "poolparty.node.worker", "/runs/r1/batches/0001", "--sub", "3")


def request(indices=(1, 2, 3), offset=-1, throttle=2, resources=Resources()) -> ArrayRequest:
    return ArrayRequest(name="pp-r1", part=ArrayPart(offset, tuple(indices)), throttle=throttle,
                        resources=resources, script=Path("/runs/r1/job.sh"), worker_argv=WORKER,
                        workdir=Path("/home/u/project"), log_dir=Path("/runs/r1/logs"))


# -- argv rendering ------------------------------------------------------------------------------------
def test_array_argv_is_one_range_with_tc_throttle():
    assert qsub_argv(request((1, 2, 3, 4), offset=99, throttle=2)) == [
        "qsub", "-terse", "-N", "pp-r1", "-V", "-wd", "/home/u/project", "-j", "y", "-r", "y", "-S", "/bin/sh",
        "-t", "1-4", "-tc", "2", "-o", "/runs/r1/logs/j$JOB_ID.$TASK_ID.log", "/runs/r1/job.sh", *WORKER,
        "--offset", "99", "--index-env", "SGE_TASK_ID"]


def test_array_must_be_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        qsub_argv(request((1, 2, 5)))


def test_plain_job_argv_runs_one_chunk_and_logs_by_job_id():
    argv = qsub_argv(request((1, 2)), chunk=7)
    assert argv[-2:] == ["--chunk", "7"]
    assert argv[argv.index("-o") + 1] == "/runs/r1/logs/j$JOB_ID.log"
    assert "-t" not in argv and "-tc" not in argv and "--offset" not in argv


def test_resources_then_extra_flags_before_the_script():
    r = Resources(cpus=4, memory=4 * 1024**3, walltime=90061, partition="long.q", account="lab", gpus=1,
                  extra=("-P", "proj", "-l", "scratch=10G"))
    argv = qsub_argv(request(resources=r))
    assert argv[13:22] == ["-pe", "smp", "4", "-l", "h_vmem=1024M,h_rt=25:01:01,gpu=1", "-q", "long.q", "-A",
                           "lab"]
    script = argv.index("/runs/r1/job.sh")
    assert argv[script - 4:script] == ["-P", "proj", "-l", "scratch=10G"]


def test_resource_flags_memory_is_per_slot():  # moved from test_resources.py
    r = Resources.from_mapping(dict(cpus=4, memory="4GB", walltime=90, partition="all.q"))
    assert resource_flags(r) == ["-pe", "smp", "4", "-l", "h_vmem=1024M,h_rt=0:01:30", "-q", "all.q"]
    assert resource_flags(Resources(cpus=1, memory=1000)) == ["-l", "h_vmem=1M"]  # one slot: no -pe


def test_rejects_qos():  # moved from test_resources.py
    with pytest.raises(UnsupportedResourceError, match="QOS"):
        resource_flags(Resources(qos="long"))


def test_dry_run_asks_w_v():
    assert dry_run_argv(Resources(cpus=64), Path("/runs/r1/job.sh"), Path("/wd")) == [
        "qsub", "-w", "v", "-wd", "/wd", "-S", "/bin/sh", "-o", "/dev/null", "-j", "y", "-pe", "smp", "64",
        "/runs/r1/job.sh"]


# -- output parsing ------------------------------------------------------------------------------------
def test_parse_qsub_terse():
    assert parse_qsub("19.1-8:1\n", ["qsub"]) == "19"
    assert parse_qsub("10\n", ["qsub"]) == "10"
    with pytest.raises(SubmissionError, match="unexpected qsub output"):
        parse_qsub('Your job 10 ("x") has been submitted\n', ["qsub"])


# qstat -xml -g d: running tasks under <queue_info>, pending ones (Eqw, hqw too) under the inner <job_info>
QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>19</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-21T05:16:19</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>19</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>t</state>
      <JAT_start_time>2026-11-21T05:16:20</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>2</tasks>
    </job_list>
    <job_list state="running">
      <JB_job_number>21</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>dr</state>
      <JAT_start_time>2026-11-21T05:16:19</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>30</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>someone-else</JB_name>
      <JB_owner>alice</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-21T05:16:19</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>19</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T05:16:19</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>3-8:1</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>14</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-21T05:16:19</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>12</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-21T05:16:19</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>11</JB_job_number>
      <JAT_prio>0.25000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>Rq</state>
      <JB_submission_time>2026-11-21T05:16:23</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>22</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>pp-r1</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-21T05:16:25</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>10-14:2,20</tasks>
    </job_list>
  </job_info>
</job_info>
"""


def test_parse_qstat_xml_elements_and_states():
    states = parse_qstat(QSTAT_XML, "pp-r1")
    assert {k: v.state for k, v in states.items()} == {
        "19.1": JobState.RUNNING, "19.2": JobState.RUNNING, "21": JobState.CANCELLED,
        **{f"19.{i}": JobState.PENDING for i in range(3, 9)},
        "14": JobState.ERROR, "12": JobState.HELD, "11": JobState.REQUEUED,
        "22.10": JobState.PENDING, "22.12": JobState.PENDING, "22.14": JobState.PENDING, "22.20": JobState.PENDING}
    assert states["14"] == JobStatus(JobState.ERROR, "Eqw")  # the letters, for messages


def test_parse_qstat_xml_of_another_name_or_an_empty_queue():
    assert parse_qstat(QSTAT_XML, "someone-else") == {"30": JobStatus(JobState.RUNNING, "r")}
    empty = ("<?xml version='1.0'?>\n<job_info  xmlns:xsd=\"qstat.xsd\">\n  <queue_info>\n  </queue_info>\n"
             "  <job_info>\n  </job_info>\n</job_info>\n")
    assert parse_qstat(empty, "pp-r1") == {}


def test_task_elements():
    assert task_elements("19", None) == ["19"]
    assert task_elements("19", "4") == ["19.4"]
    assert task_elements("19", "1-7:3") == ["19.1", "19.4", "19.7"]


@pytest.mark.parametrize("code,state", [
    ("qw", JobState.PENDING), ("hqw", JobState.HELD), ("hr", JobState.HELD), ("r", JobState.RUNNING),
    ("t", JobState.RUNNING), ("Rr", JobState.RUNNING), ("Rq", JobState.REQUEUED), ("Eqw", JobState.ERROR),
    ("dr", JobState.CANCELLED), ("dt", JobState.CANCELLED), ("s", JobState.SUSPENDED), ("S", JobState.SUSPENDED),
    ("T", JobState.SUSPENDED), ("z", JobState.PENDING)])
def test_state_letters(code, state):  # moved from test_resources.py and extended
    assert translate_state(code) is state


def test_parse_max_aj_tasks():
    assert parse_max_aj_tasks("max_aj_instances             2000\nmax_aj_tasks                 75000\n") == 75000
    assert parse_max_aj_tasks("max_aj_tasks                 100\n") == 100
    assert parse_max_aj_tasks("max_aj_tasks                 0\n") == 75000  # 0: SGE's own limit


def test_doctor_report_resource_quota_set():
    report = SgeReport("sge", True)
    row = {"kind": "resource quota set", "name": "max_per_user", "rules": "limit users {*} to slots=32"}
    assert report.limit_text(row) == "resource quota set max_per_user: rules=limit users {*} to slots=32"
    assert report.partition_word == "queue" and report.notes() == []


# -- workflow resource names -----------------------------------------------------------------------------
def test_translate_workflow_names_named_pe_takes_the_slots_and_memory_per_slot():
    fields, extra = SgeQueue.translate_workflow(
        {"sge_queue": "all.q", "sge_pe": "mpi", "sge_project": "p1", "sge_extra": "-l scratch=10G"},
        {"cpus": 4, "memory": 4000 * 1000**2, "gpus": 0}, Resources(extra=("-m", "n")))
    assert fields == {"partition": "all.q", "cpus": None, "memory": 1000 * 1000**2}
    assert extra == ("-m", "n", "-pe", "mpi", "4", "-P", "p1", "-l", "scratch=10G")
    with pytest.raises(ConfigurationError, match="-tc is set by poolparty itself"):
        SgeQueue.translate_workflow({"sge_extra": ["-tc", "5"]}, {}, Resources())


# -- the adapter over a recorded command line ---------------------------------------------------------------
def test_submit_maps_chunks_to_elements_and_query_reads_qstat():
    cli = RecordingCLI(qsub="19.1-3:1\n", qstat=QSTAT_XML)
    queue = SgeQueue(cli)
    [sub] = queue.submit(request((1, 2, 3), offset=-1))
    assert (sub.job_id, sub.elements) == ("19", {0: "19.1", 1: "19.2", 2: "19.3"})
    assert cli.argvs[0] == qsub_argv(request((1, 2, 3), offset=-1))
    assert queue.query("pp-r1")["19.3"] == JobStatus(JobState.PENDING, "qw")
    assert cli.argvs[1] == QSTAT == ["qstat", "-xml", "-g", "d"]


# -- qacct: how a job that left the queue ended ------------------------------------------------------
# A task that completed, from a real cluster (BCGSC, qacct of SGE): QACCT_ARR3_OK in
# tests/integration/schedule/test_sge.py of github.com/bcgsc/mavis (first block, some ru_* lines left out).
BCGSC_OK = """
==============================================================
qname        merge.q
hostname     n601.numbers.bcgsc.ca
jobname      arrtest
jobnumber    3757289
taskid       1
account      sge
failed       0
exit_status  0
ru_wallclock 60s
maxvmem      1.934MB
arid         undefined
ar_sub_time  undefined
category     -U transabyss_users
"""
# this machine's SGE 8.1.9 (/work/shared/research/slurm-sge.md, observed): an h_rt=0:0:5 job killed
# at 6 s, and a script's own `exit 3` in a plain job
THIS_MACHINE_H_RT = """==============================================================
jobname      hrt
jobnumber    31
taskid       undefined
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 6s
maxvmem      0.000B
==============================================================
jobname      hrt
jobnumber    32
taskid       undefined
failed       0
exit_status  3
ru_wallclock 0s
"""


def test_qacct_completed_and_killed_for_walltime():
    from poolparty.queues.sge import parse_qacct
    assert parse_qacct(BCGSC_OK)["3757289.1"].state is JobState.COMPLETED
    ends = parse_qacct(THIS_MACHINE_H_RT)
    assert ends["31"].state is JobState.TIMEOUT and ends["31"].reason.startswith("failed 37")
    assert ends["32"].state is JobState.FAILED


@pytest.mark.parametrize("failed, status, peak, category, state", [
    # failed codes: SGE 8.1.9 accounting(5) / execd execution states ("37 qmaster enforced h_rt, h_cpu, or
    # h_vmem limit"; "100 assumedly after job: ran, but killed by a signal (perhaps due to exceeding
    # resources), task died, shepherd died (e.g. node crash)")
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137", "200.000MB", "-l h_rt=60,h_vmem=200M",
     JobState.OUT_OF_MEMORY),
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137", "12.000MB", "-l h_rt=60,h_vmem=200M",
     JobState.TIMEOUT),
    ("100 : assumedly after job", "137", "1.953GB", "-U u -l h_vmem=2G", JobState.OUT_OF_MEMORY),
    ("100 : assumedly after job", "137", "0.000B", "", JobState.CANCELLED),
    ("25  : rescheduling", "137", "0.000B", "", JobState.REQUEUED),
    ("26  : opening input/output file", "0", "0.000B", "", JobState.LAUNCH_FAILED),
    ("30  : application error returned", "100", "0.000B", "", JobState.FAILED),
    ("1   : assumedly before job", "0", "0.000B", "", JobState.NODE_FAIL),
])
def test_qacct_failed_codes(failed, status, peak, category, state):
    from poolparty.queues.sge import accounted_state
    block = {"failed": failed, "exit_status": status, "maxvmem": peak, "category": category}
    assert accounted_state(block) is state


def test_qacct_is_asked_once_per_poll_only_for_elements_that_left_the_queue():
    empty = "<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>"
    running = QSTAT_XML
    cli = RecordingCLI(qsub="19.1-3:1\n", qstat=running, qacct=THIS_MACHINE_H_RT.replace("31", "19").replace(
        "taskid       undefined", "taskid       2", 1))
    q = SgeQueue(cli)
    q.submit(request((1, 2, 3)))
    cli.argvs.clear()
    q.query("pp-r1")
    assert [a[0] for a in cli.argvs] == ["qstat"]  # all three still queued: no qacct
    cli.answers["qstat"] = empty
    states = q.query("pp-r1")
    assert [a[0] for a in cli.argvs] == ["qstat", "qstat", "qacct"] and cli.argvs[-1] == ["qacct", "-j", "pp-r1"]
    assert states["19.2"].state is JobState.TIMEOUT
    q.query("pp-r1")
    assert [a[0] for a in cli.argvs][-2:] == ["qstat", "qacct"]  # 19.1 and 19.3 not accounted yet: asked again


def test_qacct_is_not_asked_for_elements_whose_chunks_have_their_results():
    """The dispatcher says which elements it still waits for: one that left the queue with its chunk's
    result stored needs no accounting."""
    empty = "<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n  </job_info>\n</job_info>"
    cli = RecordingCLI(qsub="19.1-3:1\n", qstat=empty, qacct=THIS_MACHINE_H_RT)
    q = SgeQueue(cli)
    q.submit(request((1, 2, 3)))
    cli.argvs.clear()
    assert q.query_awaiting("pp-r1", set()) == {}
    assert [a[0] for a in cli.argvs] == ["qstat"]
    q.query_awaiting("pp-r1", {"19.2"})  # one chunk still without its result: asked once for the pool
    assert cli.argvs[1:] == [["qstat"] + QSTAT[1:], ["qacct", "-j", "pp-r1"]]
