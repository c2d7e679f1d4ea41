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


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownResourceError) as e:
        Resources.from_mapping({"mem": "1G"})
    assert "'mem'" in str(e.value) and "memory" in str(e.value) and "walltime" in str(e.value)
