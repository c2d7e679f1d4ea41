"""Results off the disk: listing ``incoming/``, storing finished chunks in fsync groups, learning from
claim records which element runs a chunk, the last look before a job is called lost, and job logs.

Nothing here asks the scheduler; the only scheduler call is cancelling a submission's left-over
elements once every chunk of it is stored.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Set
from pathlib import Path

from poolparty.dispatch.pool_jobs import PoolJobs
from poolparty.store.job_script import interpreter_missing
from poolparty.engine.batch_state import Batch, ChunkRun
from poolparty.phases import ChunkPhase
from poolparty.store.claims import Runner, block, runner_of
from poolparty.store.checkpoints import drop_states
from poolparty.store.incoming import recorded_end
from poolparty.store.layout import checkpointed_tasks, is_done_name, parse_part_name, part_path
from poolparty.store.results import remove_files

log = logging.getLogger("poolparty")

#: finished chunks are stored in groups with one fsync each; a group closes after this long, so the
#: worker files of big chunks are deleted soon after they are stored
ABSORB_GROUP_SECONDS = 0.05

#: a chunk whose records were appended unsynced: (chunk, its worker files, the new outcomes)
Absorbed = tuple[ChunkRun, list[Path], list[tuple[int, bool, bytes]]]


class Collector:
    def __init__(self, jobs: PoolJobs, claims: bool, linger: bool = False):
        self.jobs = jobs
        self.claims = claims  # array elements may run chunks not their own
        self.linger = linger  # elements linger for later batches: an array's left-over elements stay

    def collect(self, batches: list[Batch]) -> bool:
        """Store the results of every finished chunk: one listing, one fsync for all of them (a wave of
        chunks that end together is absorbed at once), then their files are deleted. True: any stored."""
        changed = False
        for b in batches:
            b.files.check_pinned()  # a run directory swapped mid-run: stop before reading what it holds
            try:
                names = os.listdir(b.files.incoming)
            except FileNotFoundError:
                continue
            self._learn_starts(b, names)
            changed |= self._collect_batch(b, names)
        return changed

    def _collect_batch(self, b: Batch, names: list[str]) -> bool:
        done_chunks = {p[0] for n in names if is_done_name(n) and (p := parse_part_name(n)) is not None}
        finished: list[Absorbed] = []
        changed = False
        started = time.monotonic()
        saved = checkpointed_tasks(names) if done_chunks else set()
        for chunk in sorted(done_chunks):
            if chunk >= len(b.chunks):
                continue
            paths = b.store.chunk_files(chunk, names)
            if b.chunks[chunk].phase is ChunkPhase.DONE:  # a late duplicate of a stored chunk: drop it
                remove_files(paths)
                continue
            finished.append((b.chunks[chunk], paths, b.store.absorb(chunk, paths, sync=False)))
            if time.monotonic() - started > ABSORB_GROUP_SECONDS:  # big chunks: free their files sooner
                self._absorbed(b, finished, saved)
                finished, started, changed = [], time.monotonic(), True
        if finished:
            self._absorbed(b, finished, saved)
            changed = True
        return changed

    def last_look(self, b: Batch, c: ChunkRun) -> bool:
        """Before a job is called lost: its result may have landed since the listing. True: stored."""
        if not any(is_done_name(p.name) for p in b.store.chunk_files(c.chunk)):
            return False
        paths = b.store.chunk_files(c.chunk)  # listed again: a part may have become done meanwhile
        self._absorbed(b, [(c, paths, b.store.absorb(c.chunk, paths, sync=False))])
        return True

    def keep_partial(self, b: Batch, c: ChunkRun) -> None:
        """What a chunk that will not finish did store is kept and handed out."""
        b.handle.deliver(b.store.absorb(c.chunk, b.store.chunk_files(c.chunk)))

    def store_log(self, b: Batch, c: ChunkRun) -> str | None:
        """The log of a chunk's failed job, kept for ``poolparty logs``; returns the job script's own line if
        the job never started because its interpreter is missing on the node."""
        if c.element is None:
            return None
        path = self.jobs.queue.log_path(b.files.incoming, c.element)
        missing = interpreter_missing(path)
        b.store.store_log(c.chunk, c.element, path)
        return missing

    def worker_end(self, b: Batch, c: ChunkRun) -> tuple[str, str] | None:
        """(end, detail) the worker of the chunk's current submission recorded if it stopped it early."""
        return None if c.sub is None else recorded_end(b.files.incoming, c.chunk, c.sub)

    def drop_left_over_logs(self, b: Batch) -> None:
        """The logs of elements whose chunk ran elsewhere, cancelled as they started: empty, they say nothing."""
        for c in b.chunks:
            if c.runner is not None and c.element is not None:
                path = self.jobs.queue.log_path(b.files.incoming, c.element)
                try:
                    if path.stat().st_size == 0:
                        path.unlink()
                except FileNotFoundError:
                    pass

    def _absorbed(self, b: Batch, finished: list[Absorbed], saved: Set[int] = frozenset()) -> None:
        """Chunks whose records were appended unsynced: store the logs of the complete ones, fsync once,
        and only then hand out the results and delete the worker files (a result is never lost) and
        the checkpoints their tasks ``saved``."""
        complete = [all(t in b.store.stored for t in c.tasks) for c, _, _ in finished]
        # the log of a chunk whose tasks all succeeded is kept only if the job wrote something
        logs = [b.store.store_log(c.chunk, c.element, self.jobs.queue.log_path(b.files.incoming, c.element),
                                  sync=False, keep_empty=any(not ok for _, ok, _ in new))
                for (c, _, new), done in zip(finished, complete) if done and c.element is not None]
        b.store.sync()
        if self.claims:  # before the files go: an element starting late must see the chunk is stored
            b.journal.record_stored([c.chunk for (c, _, _), done in zip(finished, complete) if done])
        remove_files(p for p in logs if p is not None)
        for (c, paths, new), done in zip(finished, complete):
            b.user_errors += sum(1 for _, ok, _ in new if not ok)
            b.handle.deliver(new)
            if done:
                remove_files(paths)
                if saved:
                    drop_states(b.files.incoming, saved.intersection(c.tasks))
                self._stored(c)

    def _stored(self, c: ChunkRun) -> None:
        s = c.mark_done()
        # with linger, cancelling the array would kill its warm elements: the left-over ones start,
        # find nothing of their own and linger too (at most linger seconds), or go when the run ends
        if s is not None and s.claimed and not s.unfinished and s.has_job and not self.linger:
            # every chunk stored: the elements left over have nothing to do
            s.claimed = False
            try:
                self.jobs.cancel([s.job_id])
            except Exception as e:
                log.warning("poolparty: could not cancel the left-over elements of job %s: %s", s.job_id, e)

    # -- claims ----------------------------------------------------------------------------------
    def _learn_starts(self, b: Batch, names: list[str]) -> None:
        """Which chunks a job has started (their futures are RUNNING) and, with claims, which element
        runs each claimed chunk: the first record of a new part (or done) file says both."""
        for name in names:
            parsed = parse_part_name(name)
            if parsed is None or parsed in b.seen_parts:
                continue
            chunk, sub = parsed
            if chunk >= len(b.chunks) or b.chunks[chunk].sub != sub:
                continue
            found = runner_of(b.files.incoming / name)
            if found is None:  # its claim record is not written yet (or a driver's block): look again
                continue
            b.seen_parts.add(parsed)
            c = b.chunks[chunk]
            b.handle.chunk_started(chunk, c.tasks)
            if not self.claims:
                continue
            runner = self._runner_element(b, found, sub)
            if runner is not None and runner != c.element:
                c.claimed_by(runner)

    def claimed_elsewhere(self, b: Batch, c: ChunkRun, watched: str) -> bool:
        """Before a chunk whose job ended is resubmitted: block its old submission's part name, so no
        element of that submission still alive (a driver restarted while they ran) starts the chunk as
        well. If an element holds it already, that element is the one to watch: True."""
        if not self.claims or c.sub is None:
            return False
        try:
            if block(b.files.incoming, c.chunk, c.sub):
                return False
        except OSError:
            return False
        found = runner_of(part_path(b.files.incoming, c.chunk, c.sub))
        runner = None if found is None else self._runner_element(b, found, c.sub)
        if runner is None or runner in (watched, c.element):
            return False
        c.watch_runner(runner)
        return True

    def _runner_element(self, b: Batch, found: Runner, sub: int) -> str | None:
        """The element named by a claim record: the runner's own chunk in submission ``sub``, or a warm
        element's by its home (batch, submission)."""
        if found.home is not None:
            return self.jobs.homes.get((found.home[0], found.home[1], found.chunk))
        if not 0 <= found.chunk < len(b.chunks):
            return None
        c = b.chunks[found.chunk]
        return c.element if c.sub == sub else None
