"""The PBS adapter without a scheduler: the qsub argv it renders and how it reads qsub and
``qstat -f -F json`` output. Every sample below is quoted from a public source, named above it."""
import json
from pathlib import Path

import pytest
from recording_cli import RecordingCLI

from poolparty import Resources, SubmissionError, UnsupportedResourceError
from poolparty.queues.arrays import ArrayPart
from poolparty.queues.base import ArrayRequest
from poolparty.queues.pbs import (QSTAT, PbsQueue, exit_state, parse_qsub, parse_qstat, parse_server, qsub_argv,
                                  resource_flags, subjob_id, throttles_arrays, translate_state)
from poolparty.queues.states import JobState

WORKER = ("/usr/bin/python3", "-m", "poolparty.node.worker", "/runs/r1/batches/0001", "--sub", "3")

# -- literal outputs ----------------------------------------------------------------------------------
# A running job on MetaCentrum (PBS 19.0.0), `qstat -xf -F json 12860476.meta-pbs.metacentrum.cz`, quoted
# in the docstring of `job_state` in github.com/flow123d/swrap testing/integrated/test_all.py (some
# attributes left out; the nested, multi-line Resource_List object is kept whole).
METACENTRUM_RUNNING = """{
    "timestamp":1664911414,
    "pbs_version":"19.0.0",
    "pbs_server":"meta-pbs.metacentrum.cz",
    "Jobs":{
        "12860476.meta-pbs.metacentrum.cz":{
            "Job_Name":"swrap_01",
            "Job_Owner":"jan_brezina@META",
            "job_state":"R",
            "queue":"charon_2h",
            "server":"meta-pbs.metacentrum.cz",
            "Checkpoint":"u",
            "ctime":"Tue Oct  4 21:23:20 2022",
            "Error_Path":"charon.nti.tul.cz:/storage/liberec3-tul/home/jan_brezina/_testing/swrap/testing/integrated/01_mpi4py/swrap_01.e12860476",
            "exec_host":"charon24/0*2+charon21/0*2",
            "Hold_Types":"n",
            "Join_Path":"oe",
            "Rerunable":"True",
            "Resource_List":{
                "mem":"8gb",
                "mpiprocs":4,
                "ncpus":4,
                "nodect":2,
                "place":"scatter",
                "select":"2:ncpus=2:mem=4gb:mpiprocs=2:ompthreads=1",
                "soft_walltime":"00:01:00",
                "walltime":"00:01:00"
            },
            "substate":41
        }
    }
}"""

# A finished array job of OpenPBS 22.05.11 in Docker, with attributes "found on QUT PBS instance"
# (array, array_state_count "Queued:999 Running:0 Exiting:0 Expired:2 " with its trailing blank,
# array_indices_submitted/remaining): spec/lib/gems/pbs/lib/pbs/status_transformer_spec.rb of
# github.com/QutEcoacoustics/baw-server (trimmed: resources_used, Variable_List, depend, estimated).
QUT_FINISHED = """{
  "timestamp": 1665476097,
  "pbs_version": "22.05.11",
  "pbs_server": "725ccdf1a5fb",
  "Jobs": {
    "0.725ccdf1a5fb": {
      "Job_Name": "testname",
      "Job_Owner": "pbsuser@725ccdf1a5fb",
      "job_state": "F",
      "queue": "workq",
      "comment": "Job run at Tue Oct 11 at 08:13 on (725ccdf1a5fb:ncpus=1) and finished",
      "run_count": 1,
      "Stageout_status": 1,
      "Exit_status": 0,
      "Submit_arguments": "-N testname -",
      "array": "True",
      "array_state_count": "Queued:999 Running:0 Exiting:0 Expired:2 ",
      "array_indices_submitted": "0-1000",
      "array_indices_remaining": "2-1000"
    }
  }
}"""

# `qstat -f -F json 10 11` on OpenPBS built from main (2025), as reported in github.com/openpbs/openpbs
# issue #2672 (tab-aligned values; the reporter elided the other attributes with "... job details").
OPENPBS_MAIN = ('{\n\t"timestamp":\t1745411711,\n\t"pbs_version":\t"latest",\n\t"pbs_server":\t"ip-10-0-6-176",\n'
                '\t"Jobs": {\n\t\t"10.ip-10-0-6-176":\t{\n\t\t\t"Job_Name":\t"STDIN",\n'
                '\t\t\t"Submit_Host":\t"ip-10-0-6-176.us-west-2.compute.internal"\n\t\t}\n\t}\n}')

# A finished job on ALCF's test machine, from PSI/J's developer documentation (github.com/ExaWorks/psij-python,
# docs/development/tutorial_add_executor.rst): "with a lot of detail removed".
ALCF_FINISHED = """ {
    "pbs_version":"2022.0.0.20211103141832",
    "Jobs":{
        "2154.edtb-01.mcp.alcf.anl.gov":{
            "job_state":"F",
            "comment":"Job run at Mon Jan 24 at 08:39 on (edtb-01[0]:ncpus=1) and finished",
            "Exit_status":0,
        }
    }
 }"""

# NCI Gadi (PBS 2024.1.2): `qstat -u <user> -f -F json` leaves out "Jobs" entirely when no job matches,
# as confirmed against real Gadi output in a public dashboard's test (the payload's qstatJobs object).
GADI_NO_JOBS = '{"timestamp": 1788909619, "pbs_version": "2024.1.2.20241017100211", "pbs_server": "gadi-pbs-01"}'

# -- the job states: PBS Professional Reference Guide, "Job States" (B E F H M Q R S T U W X), as quoted
# from the PBS Pro 13.1 documentation in github.com/qtop/qtop issue #219
ALL_STATE_LETTERS = {"B": JobState.RUNNING, "E": JobState.RUNNING, "H": JobState.HELD, "M": JobState.PENDING,
                     "Q": JobState.PENDING, "R": JobState.RUNNING, "S": JobState.SUSPENDED, "T": JobState.PENDING,
                     "U": JobState.SUSPENDED, "W": JobState.PENDING}


def request(indices=(0, 1, 2), offset=10, throttle=2, resources=Resources()) -> ArrayRequest:
    return ArrayRequest(name="pp-r1", part=ArrayPart(offset, tuple(indices)), throttle=throttle,
                        resources=resources, script=Path("/runs/r1/job.sh"), worker_argv=WORKER,
                        workdir=Path("/home/u/project"), log_dir=Path("/runs/r1/logs"))


# -- parsing ------------------------------------------------------------------------------------------
def test_a_running_job_with_a_multi_line_resource_list_is_running():
    states = parse_qstat(METACENTRUM_RUNNING, "swrap_01")
    assert list(states) == ["12860476.meta-pbs.metacentrum.cz"]
    assert states["12860476.meta-pbs.metacentrum.cz"].state is JobState.RUNNING


def test_other_names_are_left_out():
    assert parse_qstat(METACENTRUM_RUNNING, "someone-else") == {}


def test_the_array_itself_is_left_out_and_a_finished_job_reads_its_exit_status():
    # the QUT sample is an array ("array": "True") under a plain id: a finished F with Exit_status 0
    states = parse_qstat(QUT_FINISHED, "testname")
    assert states["0.725ccdf1a5fb"].state is JobState.COMPLETED
    assert "Exit_status=0" in states["0.725ccdf1a5fb"].reason
    wrapped = json.loads(QUT_FINISHED)
    wrapped["Jobs"] = {"0[].725ccdf1a5fb": wrapped["Jobs"]["0.725ccdf1a5fb"]}
    assert parse_qstat(json.dumps(wrapped), "testname") == {}  # 123[].server: its subjobs speak for it


def test_tab_aligned_output_of_openpbs_main():
    assert parse_qstat(OPENPBS_MAIN, "STDIN")["10.ip-10-0-6-176"].state is JobState.PENDING  # no job_state given


def test_no_jobs_key_means_no_jobs():
    assert parse_qstat(GADI_NO_JOBS, "pp") == {}
    assert parse_qstat("", "pp") == {}


def test_alcf_sample_is_not_strict_json():
    # the trailing comma of the PSI/J excerpt: qstat never prints one, and the parser refuses it loudly
    with pytest.raises(ValueError):
        parse_qstat(ALCF_FINISHED, "x")
    assert exit_state(0) is JobState.COMPLETED  # what its "Exit_status":0 means


def test_subjob_ids_follow_the_array_id():
    # PBS Professional User's Guide, "Job Array Identifiers": array 1234[].server, subjob 1234[7].server
    assert subjob_id("1234[].server", 7) == "1234[7].server"
    doc = {"Jobs": {"1234[].server": {"Job_Name": "pp", "job_state": "B", "array": "True"},
                    "1234[0].server": {"Job_Name": "pp", "job_state": "X", "Exit_status": -29,
                                       "array_id": "1234[].server", "array_index": 0},
                    "1234[1].server": {"Job_Name": "pp", "job_state": "R", "array_id": "1234[].server",
                                       "array_index": 1}}}
    states = parse_qstat(json.dumps(doc), "pp")
    assert {k: v.state for k, v in states.items()} == {"1234[0].server": JobState.TIMEOUT,
                                                      "1234[1].server": JobState.RUNNING}


@pytest.mark.parametrize("letter", sorted(ALL_STATE_LETTERS))
def test_every_live_state_letter(letter):
    assert translate_state(letter) is ALL_STATE_LETTERS[letter]


@pytest.mark.parametrize("status, state", [
    # OpenPBS src/include/job.h: JOB_EXEC_KILL_WALLTIME -29, _CPUT -28, _MEM -27, _VMEM -26,
    # RERUN_MS_FAIL -20, RERUN_SIS_FAIL -14, RERUN -11, RETRY -3, CHKP -12, FAIL1 -1, FAIL2 -2, FAILUID -10;
    # MetaCentrum's documentation ("Forced job termination by PBS server") shows walltime -29, mem -27.
    (-29, JobState.TIMEOUT), (-28, JobState.TIMEOUT), (-27, JobState.OUT_OF_MEMORY), (-26, JobState.OUT_OF_MEMORY),
    (-20, JobState.NODE_FAIL), (-14, JobState.NODE_FAIL), (-11, JobState.NODE_FAIL), (-3, JobState.NODE_FAIL),
    (-12, JobState.PREEMPTED), (-1, JobState.LAUNCH_FAILED), (-2, JobState.LAUNCH_FAILED),
    (-10, JobState.LAUNCH_FAILED), (-99, JobState.LAUNCH_FAILED),
    # 256 + signal: 271 = SIGTERM (qdel, or the walltime kill of servers before the -29 code)
    (271, JobState.CANCELLED), (265, JobState.CANCELLED),
    (0, JobState.COMPLETED), (1, JobState.FAILED), (137, JobState.FAILED), (None, JobState.CANCELLED),
])
def test_exit_status_of_finished_jobs_and_subjobs(status, state):
    assert translate_state("F", status) is state
    assert translate_state("X", status) is state


def test_parse_qsub():
    assert parse_qsub("1234.server\n", ["qsub"]) == "1234.server"
    assert parse_qsub("1234[].pbs01.example.org\n", ["qsub"]) == "1234[].pbs01.example.org"
    with pytest.raises(SubmissionError, match="unexpected qsub output"):
        parse_qsub("qsub: Unknown queue\n", ["qsub"])


def test_server_attributes_and_the_array_throttle_by_version():
    text = json.dumps({"pbs_version": "2022.1.1", "Server": {"pbs01": {"max_array_size": 20000,
                                                                        "pbs_version": "2022.1.1"}}})
    assert parse_server(text) == {"max_array_size": "20000", "pbs_version": "2022.1.1"}
    assert throttles_arrays("2022.1.1.20220926110806") and throttles_arrays("22.05.11") and throttles_arrays("20.0.1")
    assert not throttles_arrays("19.0.0") and not throttles_arrays("19.1.3") and not throttles_arrays("18.2.1")
    assert not throttles_arrays("")


# -- argv rendering -----------------------------------------------------------------------------------
def test_array_argv():
    argv = qsub_argv(request((0, 1, 2, 3), throttle=2), throttles=True)
    assert argv == ["qsub", "-N", "pp-r1", "-V", "-j", "oe", "-r", "y", "-l", "select=1:ncpus=1", "-J", "0-3",
                    "-W", "max_run_subjobs=2", "-o", "/runs/r1/logs/ja10.^array_index^.log", "--",
                    "/runs/r1/job.sh", *WORKER, "--offset", "10", "--index-env", "PBS_ARRAY_INDEX"]


def test_without_max_run_subjobs_no_limit_is_asked():
    argv = qsub_argv(request((0, 1, 2, 3), throttle=2), throttles=False)
    assert "-W" not in argv


def test_resources():
    r = Resources(cpus=4, memory=3 * 1024**3, walltime=90061, partition="long", account="lab", gpus=1)
    assert resource_flags(r) == ["-l", "select=1:ncpus=4:mem=3072mb:ngpus=1", "-l", "walltime=25:01:01",
                                 "-q", "long", "-A", "lab"]
    with pytest.raises(UnsupportedResourceError, match="PBS has no QOS"):
        resource_flags(Resources(qos="high"))


def test_one_chunk_runs_as_a_plain_job_and_a_pool_status_is_one_qstat():
    server = json.dumps({"Server": {"s": {"pbs_version": "2022.1.1", "max_array_size": 5}}})
    cli = RecordingCLI(qsub="77.server\n", qstat=server)
    q = PbsQueue(cli)
    assert q.max_array_index() == 4
    [sub] = q.submit(request((2,)))
    assert sub.job_id == "77.server" and sub.elements == {12: "77.server"}
    assert "-J" not in cli.argvs[-1] and cli.argvs[-1][-2:] == ["--chunk", "12"]
    assert q.log_path(Path("/l"), "77.server") == Path("/l/jc12.log")
    cli.answers["qsub"] = "78[].server\n"
    [sub] = q.submit(request((0, 1)))
    assert sub.elements == {10: "78[0].server", 11: "78[1].server"}
    assert q.log_path(Path("/l"), "78[1].server") == Path("/l/ja10.1.log")
    cli.argvs.clear()
    q.query("pp-r1")
    assert cli.argvs == [QSTAT]


def test_an_old_server_cannot_raise_a_limit():
    cli = RecordingCLI(qstat=json.dumps({"Server": {"s": {"pbs_version": "19.1.3"}}}))
    q = PbsQueue(cli)
    assert not q.throttles_arrays and not q.set_throttle("5[].s", 3)
    assert q.max_array_index() == 9999  # the server default max_array_size 10000


def test_workflow_resources_pbs_queue_account_and_raw_flags():
    """Snakemake's pbs_* resources: queue and account stand for the portable fields, pbs_extra adds flags."""
    given = {"pbs_queue": "long", "pbs_account": "lab42", "pbs_extra": "-m abe"}
    fields, extra = PbsQueue.translate_workflow(given, {"cpus": 2}, Resources(extra=("-p", "5")))
    assert fields == {"cpus": 2, "partition": "long", "account": "lab42"}
    assert extra == ("-p", "5", "-m", "abe")
    assert PbsQueue.translate_workflow({}, {"cpus": 2}, Resources()) == ({"cpus": 2}, ())
