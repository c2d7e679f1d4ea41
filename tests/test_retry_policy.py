"""Failure class -> action, without any scheduler."""
import pytest

from poolparty.queues.states import JobState
from poolparty.resources import Resources
from poolparty.retry import ActionKind, FailureClass, RetryPolicy, classify


@pytest.mark.parametrize("state,expected", [
    (None, FailureClass.VANISHED), (JobState.NODE_FAIL, FailureClass.NODE_FAILURE),
    (JobState.PREEMPTED, FailureClass.PREEMPTED), (JobState.CANCELLED, FailureClass.CANCELLED),
    (JobState.OUT_OF_MEMORY, FailureClass.OUT_OF_MEMORY), (JobState.TIMEOUT, FailureClass.TIMEOUT),
    (JobState.LAUNCH_FAILED, FailureClass.NEVER_STARTED), (JobState.ERROR, FailureClass.SCHEDULER_ERROR),
    (JobState.BOOT_FAIL, FailureClass.BOOT_FAILURE), (JobState.COMPLETED, FailureClass.WORKER_CRASH),
])
def test_classify(state, expected):
    assert classify(state) is expected


def test_user_errors_are_never_resubmitted():
    d = RetryPolicy().decide(FailureClass.USER_ERROR, 0, Resources())
    assert d.kind is ActionKind.GIVE_UP


def test_bounded():
    p = RetryPolicy(max_resubmissions=2)
    assert p.decide(FailureClass.NODE_FAILURE, 1, Resources()).kind is ActionKind.RESUBMIT
    d = p.decide(FailureClass.NODE_FAILURE, 2, Resources())
    assert d.kind is ActionKind.GIVE_UP and "max_resubmissions=2" in d.why


def test_oom_escalates_memory_and_timeout_walltime():
    p = RetryPolicy(memory_factor=1.5, walltime_factor=3)
    r = Resources(memory=1000 * 1024**2, walltime=60)
    assert p.decide(FailureClass.OUT_OF_MEMORY, 0, r).resources.memory == 1500 * 1024**2
    assert p.decide(FailureClass.TIMEOUT, 0, r).resources.walltime == 180
    assert p.decide(FailureClass.NODE_FAILURE, 0, r).resources == r
    # nothing asked: escalate from the policy's base
    assert p.decide(FailureClass.OUT_OF_MEMORY, 0, Resources()).resources.memory == int(2 * 1024**3 * 1.5)


def test_policy_validates():
    with pytest.raises(ValueError):
        RetryPolicy(max_resubmissions=-1)
