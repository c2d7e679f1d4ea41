"""The scheduler logs of one batch submitted with :meth:`Engine.submit`, read back from its reduced
store (``logs.rec``), for plugins that show a failed task's job output (Snakemake's ``aux_logs``).

A chunk's log is stored when its job ended (with a result, or as an infrastructure failure), so
there is one record per job that ran the chunk: a resubmitted chunk has several. The batch directory
exists while the batch runs and, after it ended, only if something failed (clean batches are removed).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from poolparty.store.inputs import BatchFiles
from poolparty.store.results import read_logs

if TYPE_CHECKING:
    from poolparty.engine.handle import BatchHandle


def batch_files_of(handle: BatchHandle) -> BatchFiles | None:
    """The files of the batch behind ``handle``."""
    return BatchFiles(Path(handle.batch_dir)) if handle.batch_dir else None


def chunk_log_text(handle: BatchHandle, chunk: int) -> str | None:
    """Every stored job log of ``chunk``, oldest first, each under a header naming its job; None
    when nothing is stored (yet, or any more)."""
    files = batch_files_of(handle)
    if files is None:
        return None
    records = read_logs(files, chunk)
    if not records:
        return None
    parts = []
    for n, (key, data) in enumerate(records, 1):
        cut = " (last 1 MiB only)" if key.get("truncated") else ""
        parts.append(f"===== poolparty: job {key.get('element', '?')}, run {n} of {len(records)} of this "
                     f"task{cut} =====\n{data.decode('utf-8', 'replace')}")
    return "\n".join(parts)
