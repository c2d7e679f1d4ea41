"""Portable resource names (their translation per scheduler: tests/test_queue_slurm.py, test_queue_sge.py)."""
import pytest

from poolparty import ConfigurationError, Resources, UnknownResourceError
from poolparty.resources import parse_duration, parse_memory


@pytest.mark.parametrize("text,expected", [("4GB", 4 * 1024**3), ("500M", 500 * 1024**2), ("2GiB", 2 * 1024**3),
                                           (1024, 1024), ("1.5G", int(1.5 * 1024**3))])
def test_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text,expected", [(90, 90), ("1:30:00", 5400), ("2-00:00:00", 172800), ("90min", 5400),
                                           ("2h", 7200), ("10:00", 600), ("2-3", 2 * 86400 + 3 * 3600)])
def test_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", [{"memory": "lots"}, {"walltime": "soon"}, {"cpus": 0}, {"extra": "--x"},
                                 {"partition": "-p"}])
def test_bad_values(bad):
    with pytest.raises(ConfigurationError):
        Resources.from_mapping(bad)


@pytest.mark.parametrize("bad,words", [
    ({"walltime": float("nan")}, "finite"), ({"walltime": float("inf")}, "finite"),
    ({"memory": float("nan")}, "positive"), ({"memory": float("inf")}, "positive"),
    ({"memory": 0.5}, "less than one byte"), ({"memory": "0.1"}, "less than one byte"),
    ({"cpus": True}, "positive integer"), ({"gpus": False}, "non-negative integer")])
def test_nonsense_numbers_are_refused_with_the_fix(bad, words):
    """NaN/inf durations used to escape as a raw ValueError/OverflowError, a fraction of a byte became a
    0-byte request (then an OOM kill and a silent resubmission), and True passed as 1 CPU."""
    with pytest.raises(ConfigurationError) as e:
        Resources.from_mapping(bad)
    assert words in str(e.value) and repr(next(iter(bad.values()))) in str(e.value)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownResourceError) as e:
        Resources.from_mapping({"mem": "1G"})
    assert "'mem'" in str(e.value) and "memory" in str(e.value) and "walltime" in str(e.value)
