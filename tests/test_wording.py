"""Verbose output for a reader who knows SLURM or multiprocessing but not poolparty's internals: its
words ('batch', 'chunk') are defined where they first appear, and the engine's 'submission' is not one."""
from __future__ import annotations

import logging

import poolparty


def square(x: int) -> int:
    return x * x


def test_verbose_output_defines_its_words(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="poolparty")
    with poolparty.Pool(2, queue="local", work_root=tmp_path, verbose=True) as pool:
        assert pool.map(square, range(6), chunksize=2) == [x * x for x in range(6)]
    lines = [r.getMessage() for r in caplog.records if r.name == "poolparty"]
    assert "'batch'" in lines[0] and "'chunks'" in lines[0] and "one chunk per job or array element" in lines[0], lines
    assert not any("submission" in line for line in lines), lines
    assert any(line.endswith("3 job(s) submitted (scheduler job id L1), one chunk each") for line in lines), lines
