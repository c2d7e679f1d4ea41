"""The one registry of queue names, and that the compute node's import of the array syntax stays cheap."""
import subprocess
import sys

import pytest

from poolparty import ConfigurationError
from poolparty.queues import QUEUE_NAMES, queue_class


def test_every_name_has_its_adapter():
    assert QUEUE_NAMES == ("local", "slurm", "sge", "pbs", "lsf")
    assert [queue_class(n).name for n in QUEUE_NAMES] == list(QUEUE_NAMES)
    assert [n for n in QUEUE_NAMES if queue_class(n).runs_on_this_host] == ["local"]


@pytest.mark.parametrize("name", ["torque", None, "SLURM"])
def test_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ConfigurationError, match=r"is unknown; choose one of local, slurm, sge, pbs, lsf"):
        queue_class(name)


def test_cli_choices_are_the_registry():
    from poolparty.cli.cancel import cancel
    from poolparty.cli.doctor import doctor
    from poolparty.cli.resume import resume

    for command in (cancel, doctor, resume):
        [option] = [p for p in command.params if p.name in ("queue", "queues")]
        assert tuple(option.type.choices) == QUEUE_NAMES


def test_array_syntax_imports_no_adapter():
    """The worker imports poolparty.queues.arrays on every node: no scheduler runner, no adapter."""
    code = "import sys, poolparty.queues.arrays; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env={"PYTHONPATH": ":".join(sys.path)}).stdout.split())
    assert "poolparty.queues.arrays" in loaded
    assert not loaded & {"poolparty.queues.base", "poolparty.queues.cli", "poolparty.queues.local",
                         "poolparty.errors", "subprocess", "xml.etree.ElementTree"}
