"""The one loop: submit, poll, collect, classify, resubmit, cancel.

It runs in one background thread per pool. Results are noticed by listing ``incoming/`` (no scheduler
call); the scheduler is asked about the whole pool in one query per poll, on an adaptive interval,
only to notice jobs that stopped making progress without a result.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from poolparty.engine.batch_state import Batch, ChunkRun, Phase, Submission
from poolparty.store.claims import parse_part_name, part_path, runner_of
from poolparty.errors import RetryLimitExceeded
from poolparty.queues.arrays import compress_indices, layout_array
from poolparty.queues.base import ArrayRequest, QueueAdapter
from poolparty.queues.states import SELF_ENDED, JobState, JobStatus
from poolparty.resources import Resources
from poolparty.store.results import remove_files
from poolparty.retry import ActionKind, FailureClass, RetryPolicy, classify

log = logging.getLogger("poolparty")

#: finished chunks are stored in groups with one fsync each; a group closes after this long, so the
#: worker files of big chunks are deleted soon after they are stored
ABSORB_GROUP_SECONDS = 0.05


@dataclass
class DispatchSettings:
    name: str  # the pool's job name
    max_running: int
    array: bool
    retry: RetryPolicy
    polling_interval: float  # upper bound of the adaptive status-poll interval
    tick: float  # how often results are looked for on disk
    python: str
    script: "os.PathLike[str]"
    claim_chunks: bool = True  # array elements run chunks whose own elements have not started


class Dispatcher:
    def __init__(self, queue: QueueAdapter, settings: DispatchSettings,
                 on_batch_end: Callable[[Batch, BaseException | None], None]):
        self.queue = queue
        self.s = settings
        self._on_batch_end = on_batch_end
        self._cond = threading.Condition()
        self._new: list[Batch] = []
        self._cancel_requests: list[object] = []
        self._batches: list[Batch] = []
        self._submissions: dict[str, Submission] = {}
        self._stop = False
        self._abort: tuple[str, BaseException | None] | None = None
        self._interval = queue.min_poll_interval
        self._next_poll = 0.0
        self._last_states: dict[str, JobStatus] = {}
        self.stats = {"submissions": 0, "resubmissions": 0, "polls": 0, "cancels": 0}
        #: array elements may run chunks not their own (see chunk_claims)
        self._claims = settings.array and settings.claim_chunks
        self._thread = threading.Thread(target=self._run, name=f"poolparty-{settings.name}", daemon=True)
        self._thread.start()

    # -- called from other threads -------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        with self._cond:
            self._new.append(batch)
            self._cond.notify_all()

    def abort(self, reason: str, error: BaseException | None = None) -> None:
        """Cancel every job of the pool and fail every unfinished batch; returns when done."""
        with self._cond:
            if self._abort is None:
                self._abort = (reason, error)
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def cancel_batch(self, handle: "object") -> None:
        """Cancel one batch's jobs (the pool goes on); its handle finishes with CancelledError."""
        with self._cond:
            self._cancel_requests.append(handle)
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def progress(self) -> dict[str, int]:
        """A snapshot for progress bars and ``poolparty status``: chunks and tasks by phase."""
        snap = {"batches": 0, "tasks": 0, "tasks_done": 0, "chunks_waiting": 0, "chunks_queued": 0,
                "chunks_running": 0, "chunks_done": 0, "chunks_failed": 0,
                "resubmissions": self.stats["resubmissions"]}
        for b in list(self._batches):
            snap["batches"] += 1
            snap["tasks"] += b.handle.n_tasks
            snap["tasks_done"] += len(b.store.stored)
            for c in list(b.chunks):
                snap[f"chunks_{c.phase.value}"] += 1
                st = self._last_states.get(c.runner or c.element or "")
                if c.phase is Phase.QUEUED and st is not None and st.state is JobState.RUNNING:
                    snap["chunks_running"] += 1
        return snap

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._new or self._batches)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._abort and not self._new and not self._cancel_requests:
                    self._cond.wait(self.s.tick if self._batches else 1.0)  # idle: new work notifies
                new, self._new = self._new, []
                cancels, self._cancel_requests = self._cancel_requests, []
                abort, stop = self._abort, self._stop
            self._accept(new)
            del new  # no frame-local reference may keep a finished batch (and its pool) alive
            if abort is not None:
                self._do_abort(*abort)
                return
            for handle in cancels:
                self._cancel_one(handle)
            del cancels
            try:
                self._step()
            except Exception as e:  # a scheduler that stays broken: nothing may hang, nothing orphaned
                log.error("poolparty: the dispatcher failed: %s", e)
                self._do_abort(f"dispatcher error: {e}", e)
                return
            if stop and not self._batches:
                return

    def _accept(self, new: list[Batch]) -> None:
        self._batches.extend(new)
        for b in new:
            self._adopt(b)

    def _step(self) -> None:
        now = time.monotonic()
        changed = self._collect()
        if any(c.phase is Phase.QUEUED for b in self._batches for c in b.chunks) and now >= self._next_poll:
            changed |= self._poll(now)
            self._interval = (self.queue.min_poll_interval if changed
                              else min(self.s.polling_interval, self._interval * 1.5))
            self._next_poll = time.monotonic() + self._interval
        self._submit_waiting()
        self._finish_batches()

    # -- results -------------------------------------------------------------------------------
    def _collect(self) -> bool:
        """Store the results of every finished chunk: one listing, one fsync for all of them (a wave of
        chunks that end together is absorbed at once), then their files are deleted."""
        changed = False
        for b in self._batches:
            try:
                names = os.listdir(b.files.incoming)
            except FileNotFoundError:
                continue
            if self._claims:
                self._learn_runners(b, names)
            done_chunks = {p[0] for n in names if n.endswith(".done") and (p := parse_part_name(n)) is not None}
            finished: list[tuple[ChunkRun, list[Path], list[tuple[int, bool, bytes]]]] = []
            started = time.monotonic()
            for chunk in sorted(done_chunks):
                if chunk >= len(b.chunks):
                    continue
                paths = b.store.chunk_files(chunk, names)
                if b.chunks[chunk].phase is Phase.DONE:  # a late duplicate of a stored chunk: drop it
                    remove_files(paths)
                    continue
                finished.append((b.chunks[chunk], paths, b.store.absorb(chunk, paths, sync=False)))
                if time.monotonic() - started > ABSORB_GROUP_SECONDS:  # big chunks: free their files sooner
                    self._absorbed(b, finished)
                    finished, started, changed = [], time.monotonic(), True
            if finished:
                self._absorbed(b, finished)
                changed = True
        return changed

    def _learn_runners(self, b: Batch, names: list[str]) -> None:
        """Which element runs each claimed chunk: the first record of a new part (or done) file says."""
        for name in names:
            parsed = parse_part_name(name)
            if parsed is None or name[:-5] in b.seen_parts:
                continue
            chunk, sub = parsed
            if chunk >= len(b.chunks) or b.chunks[chunk].sub != sub:
                continue
            found = runner_of(b.files.incoming / name)
            if found is None:  # its claim record is not written yet (or a driver's block): look again
                continue
            b.seen_parts.add(name[:-5])
            c, runner = b.chunks[chunk], self._runner_element(b, found, sub)
            if runner is not None and runner != c.element:
                c.runner = runner
                if c.submission is not None:
                    c.submission.claimed = True

    @staticmethod
    def _runner_element(b: Batch, found: tuple[int, str], sub: int) -> str | None:
        """The element named by a claim record (the runner's own chunk) in submission ``sub``."""
        if not 0 <= found[0] < len(b.chunks):
            return None
        c = b.chunks[found[0]]
        return c.element if c.sub == sub else None

    def _claimed_elsewhere(self, b: Batch, c: ChunkRun, watched: str) -> bool:
        """Before a chunk whose job ended is resubmitted: block its old submission's part name, so no
        element of that submission still alive (a driver restarted while they ran) starts the chunk as
        well. If an element holds it already, that element is the one to watch: True."""
        if not self._claims or c.sub is None:
            return False
        part = part_path(b.files.incoming, c.chunk, c.sub)
        try:
            part.touch(mode=0o600, exist_ok=False)  # runs nothing: no records
            return False
        except FileExistsError:
            pass
        except OSError:
            return False
        found = runner_of(part)
        runner = None if found is None else self._runner_element(b, found, c.sub)
        if runner is None or runner in (watched, c.element):
            return False
        c.runner = runner
        c.missing_since = c.ended_since = c.ended_state = None
        return True

    def _absorb(self, b: Batch, c: ChunkRun) -> None:
        paths = b.store.chunk_files(c.chunk)
        self._absorbed(b, [(c, paths, b.store.absorb(c.chunk, paths, sync=False))])

    def _absorbed(self, b: Batch, finished: list[tuple[ChunkRun, list[Path], list[tuple[int, bool, bytes]]]]) -> None:
        """Chunks whose records were appended unsynced: store the logs of the complete ones, fsync once,
        and only then hand out the results and delete the worker files (a result is never lost)."""
        complete = [all(t in b.store.stored for t in c.tasks) for c, _, _ in finished]
        # the log of a chunk whose tasks all succeeded is kept only if the job wrote something
        logs = [b.store.store_log(c.chunk, c.element, self.queue.log_path(b.files.incoming, c.element), sync=False,
                                  keep_empty=any(not ok for _, ok, _ in new))
                for (c, _, new), done in zip(finished, complete) if done and c.element is not None]
        b.store.sync()
        if self._claims:  # before the files go: an element starting late must see the chunk is stored
            b.journal.record_stored([c.chunk for (c, _, _), done in zip(finished, complete) if done])
        remove_files(p for p in logs if p is not None)
        for (c, paths, new), done in zip(finished, complete):
            b.user_errors += sum(1 for _, ok, _ in new if not ok)
            b.handle._add(new)
            if done:
                remove_files(paths)
                self._set_done(c)

    def _set_done(self, c: ChunkRun) -> None:
        c.phase = Phase.DONE
        s = c.submission
        if s is not None:
            s.unfinished.discard(c.chunk)
            c.submission = None
            if s.claimed and not s.unfinished:  # every chunk stored: the elements left over have nothing to do
                s.claimed = False
                try:
                    self._cancel([s.job_id])
                except Exception as e:
                    log.warning("poolparty: could not cancel the left-over elements of job %s: %s", s.job_id, e)

    # -- status --------------------------------------------------------------------------------
    def _poll(self, now: float) -> bool:
        states = self.queue.query(self.s.name)
        self.stats["polls"] += 1
        changed = states != self._last_states
        self._last_states = states
        to_cancel: list[str] = []
        for b in self._batches:
            for c in b.chunks:
                if c.phase is not Phase.QUEUED or c.element is None:
                    continue
                watched = c.runner or c.element
                st = states.get(watched)
                if st is not None and st.state.active:
                    c.missing_since = c.ended_since = None
                    if st.state is JobState.RUNNING:
                        c.seen_running = True
                    elif c.seen_running and st.state in (JobState.PENDING, JobState.REQUEUED):
                        c.seen_running = False  # the scheduler requeued it: bounded like a resubmission
                        c.scheduler_restarts += 1
                        if c.resubmissions + c.scheduler_restarts > self.s.retry.max_resubmissions:
                            to_cancel.append(watched)
                            self._give_up(b, c, f"job {watched}: requeued by the scheduler "
                                                f"{c.scheduler_restarts} time(s) ({st.reason}); "
                                                f"max_resubmissions={self.s.retry.max_resubmissions}")
                            changed = True
                            continue
                    if st.state is JobState.HELD and not c.held_reported:
                        log.info("poolparty: job %s is held (%s); waiting for its release",
                                 watched, st.reason)
                        c.held_reported = True
                    continue
                if st is None:  # not in the queue at all
                    c.missing_since = c.missing_since or now
                    if now - c.missing_since < self.queue.vanish_grace:
                        continue
                    failure = classify(c.ended_state) if c.ended_state else FailureClass.VANISHED
                    detail = c.ended_state.value if c.ended_state else "vanished from the queue"
                else:  # ended (or parked in an error state) without a result so far
                    c.ended_state = st.state
                    if st.state is JobState.ERROR:
                        to_cancel.append(watched)
                    else:
                        c.ended_since = c.ended_since or now
                        if now - c.ended_since < self._result_grace(st.state):
                            continue
                    failure = classify(st.state)
                    detail = f"{st.state.value}" + (f" ({st.reason})" if st.reason and st.reason != "None" else "")
                # one last look on disk: the result may have landed since the listing
                if any(p.suffix == ".done" for p in b.store.chunk_files(c.chunk)):
                    self._absorb(b, c)
                    continue
                if self._claimed_elsewhere(b, c, watched):
                    continue
                self._handle_failure(b, c, failure, f"job {watched}: {detail}")
                changed = True
        if to_cancel:
            self._cancel(to_cancel)
        return changed

    def _result_grace(self, state: JobState) -> float:
        if state in SELF_ENDED:
            return self.queue.result_grace
        return min(self.queue.killed_result_grace, self.queue.result_grace)

    def _handle_failure(self, b: Batch, c: ChunkRun, failure: FailureClass, detail: str) -> None:
        decision = self.s.retry.decide(failure, c.resubmissions, c.resources)
        c.last_failure = detail
        if c.submission is not None:
            c.submission.unfinished.discard(c.chunk)
            c.submission = None
        c.missing_since = c.ended_since = c.ended_state = None
        c.held_reported = False
        c.seen_running = False  # the next job of this chunk starts unseen: its PENDING is no requeue
        c.runner = None
        if c.element is not None:
            b.store.store_log(c.chunk, c.element, self.queue.log_path(b.files.incoming, c.element))
        if decision.kind is ActionKind.RESUBMIT:
            log.warning("poolparty: chunk %d of %s: %s -> resubmitting (%s)", c.chunk, b.handle.label,
                        detail, decision.why)
            c.resources = decision.resources
            c.resubmissions += 1
            c.phase = Phase.WAITING
            self.stats["resubmissions"] += 1
            return
        self._give_up(b, c, f"{detail}; {decision.why}")

    def _give_up(self, b: Batch, c: ChunkRun, why: str) -> None:
        if c.submission is not None:
            c.submission.unfinished.discard(c.chunk)
            c.submission = None
        c.phase = Phase.FAILED
        c.last_failure = why
        b.journal.record_give_up(c.chunk, c.last_failure)
        log.error("poolparty: chunk %d of %s gave up: %s", c.chunk, b.handle.label, c.last_failure)
        b.handle._add(b.store.absorb(c.chunk, b.store.chunk_files(c.chunk)))  # keep partial results
        b.handle._gave_up(c.chunk, [t for t in c.tasks if t not in b.store.stored], why)

    # -- submission ----------------------------------------------------------------------------
    def _free_slots(self) -> int:
        return self.s.max_running - sum(s.reserved for s in self._submissions.values())

    def _rebalance(self) -> None:
        """Give slots freed by finishing arrays to older arrays whose running limit is now too low."""
        for s in list(self._submissions.values()):
            if not s.unfinished:
                del self._submissions[s.job_id]
        free = self._free_slots()
        for s in self._submissions.values():
            if free <= 0:
                break
            want = min(len(s.unfinished), self.s.max_running)
            if s.throttle < want and not s.job_id.startswith("?"):
                new = min(want, s.throttle + free)
                if self.queue.set_throttle(s.job_id, new):
                    free -= new - s.throttle
                    s.throttle = new

    def _submit_waiting(self) -> None:
        self._rebalance()
        for b in self._batches:
            groups: dict[Resources, list[ChunkRun]] = defaultdict(list)
            for c in b.chunks:
                if c.phase is Phase.WAITING:
                    groups[c.resources].append(c)
            for resources, runs in groups.items():
                by_chunk = {c.chunk: c for c in runs}
                if self.s.array:
                    parts = layout_array(list(by_chunk), first_index=self.queue.first_index,
                                         max_index=self.queue.max_array_index(),
                                         contiguous=self.queue.contiguous_arrays)
                else:
                    parts = layout_array(list(by_chunk), first_index=0, max_index=None)
                for part in parts:
                    free = self._free_slots()
                    if free <= 0:
                        return
                    if not self.s.array and len(part.indices) > free:
                        part = type(part)(part.offset, part.indices[:free])
                    self._submit(b, part, resources, [by_chunk[ch] for ch in part.chunks], free)

    def _submit(self, b: Batch, part, resources: Resources, runs: list[ChunkRun], free: int) -> None:
        sub = b.next_sub
        b.next_sub += 1
        throttle = min(free, len(part.indices))
        argv: tuple[str, ...] = (self.s.python, "-m", "poolparty.node.worker", str(b.files.path), "--sub", str(sub))
        # more chunks than running slots: an element that finished its chunk runs those not started yet
        if self._claims and len(part.indices) > throttle:
            argv += ("--claim", compress_indices(part.indices))
            if resources.walltime:
                argv += ("--walltime", str(resources.walltime))
        request = ArrayRequest(
            name=self.s.name, part=part, throttle=throttle, resources=resources, script=self.s.script,
            worker_argv=argv, workdir=b.files.path, log_dir=b.files.incoming)
        for submitted in self.queue.submit(request, array=self.s.array):
            self.stats["submissions"] += 1
            chunks = sorted(submitted.elements)
            elements = [submitted.elements[ch] for ch in chunks]
            b.journal.record_submission(sub, submitted.job_id, chunks, elements, resources)
            throttle = request.throttle if self.s.array else 1
            s = Submission(sub, submitted.job_id, throttle, set(chunks))
            self._submissions[submitted.job_id] = s
            for ch in chunks:
                c = b.chunks[ch]
                c.phase, c.sub, c.element, c.submission = Phase.QUEUED, sub, submitted.elements[ch], s
        log.info("poolparty: submitted %d chunk(s) of %s as submission %d", len(runs), b.handle.label, sub)

    # -- resume --------------------------------------------------------------------------------
    def _adopt(self, b: Batch) -> None:
        """Chunks the journal says are queued are adopted: the next poll tells whether they live."""
        state = b.journal.replay()
        b.next_sub = max(b.next_sub, state.next_sub)
        if self._claims:  # a driver killed between storing results and saying so: say it before any file goes
            b.journal.record_stored(sorted(c.chunk for c in b.chunks
                                           if c.phase is Phase.DONE and c.chunk not in state.stored))
        subs: dict[int, Submission] = {}
        for c in b.chunks:
            h = state.chunks.get(c.chunk)
            if h is None:
                continue
            if c.phase is Phase.DONE:  # its element may be running other chunks (claims): keep its name
                c.sub, c.element = h.sub, h.element
                continue
            c.resources = h.resources or c.resources
            c.resubmissions = 0 if h.gave_up else h.resubmissions
            if h.gave_up or h.element is None:
                continue
            c.phase, c.sub, c.element = Phase.QUEUED, h.sub, h.element
            s = subs.setdefault(h.sub, Submission(h.sub, h.job_id or f"?{b.number}:{h.sub}", self.s.max_running))
            s.unfinished.add(c.chunk)
            c.submission = s
        for s in subs.values():
            self._submissions[s.job_id] = s
        if subs:
            log.info("poolparty: %s: adopted %d queued chunk(s) from the journal", b.handle.label,
                     sum(len(s.unfinished) for s in subs.values()))

    # -- completion and cancellation -----------------------------------------------------------
    def _finish_batches(self) -> None:
        for b in list(self._batches):
            failed = [c for c in b.chunks if c.phase is Phase.FAILED]
            if failed and b.give_up_policy == "cancel_pool":
                err = RetryLimitExceeded({c.chunk: c.last_failure or "?" for c in failed},
                                         {c.chunk: c.tasks for c in failed}, str(b.files.path))
                self._do_abort(f"{b.handle.label} gave up", err, keep_running=True)
                return
            if b.finished:
                self._batches.remove(b)
                err = None
                if failed:
                    err = RetryLimitExceeded({c.chunk: c.last_failure or "?" for c in failed},
                                             {c.chunk: c.tasks for c in failed}, str(b.files.path))
                self._end_batch(b, err)

    def _end_batch(self, b: Batch, err: BaseException | None) -> None:
        for c in b.chunks:
            if c.submission is not None:
                c.submission.unfinished.discard(c.chunk)
            if c.runner is not None and c.element is not None:  # ran elsewhere: its own element was left over
                self._drop_empty_log(self.queue.log_path(b.files.incoming, c.element))
        b.store.close()
        b.journal.close()
        self._on_batch_end(b, err)
        b.handle._finish(err)

    @staticmethod
    def _drop_empty_log(path: Path) -> None:
        """The log of a left-over element cancelled as it started: empty, it says nothing."""
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except FileNotFoundError:
            pass

    def _cancel_one(self, handle: object) -> None:
        batch = next((b for b in self._batches if b.handle is handle), None)
        if batch is None:
            return
        queued = [c for c in batch.chunks if c.phase is Phase.QUEUED and c.element is not None]
        if queued:
            try:
                self._cancel([c.element for c in queued])  # type: ignore[misc]
            except Exception as e:
                log.error("poolparty: could not cancel the jobs of %s: %s", batch.handle.label, e)
        for c in batch.chunks:
            if c.phase in (Phase.QUEUED, Phase.WAITING):
                c.phase = Phase.FAILED
                c.last_failure = "cancelled"
                if c.submission is not None:
                    c.submission.unfinished.discard(c.chunk)
                    c.submission = None
        self._batches.remove(batch)
        self._end_batch(batch, _cancelled(f"{batch.handle.label} cancelled"))

    def _cancel(self, elements: list[str], by_name: bool = False) -> None:
        if not elements and not by_name:
            return
        self.stats["cancels"] += 1
        self.queue.cancel(elements, name=self.s.name if by_name else None)

    def _do_abort(self, reason: str, error: BaseException | None, keep_running: bool = False) -> None:
        queued = [c.element for b in self._batches for c in b.chunks
                  if c.phase is Phase.QUEUED and c.element is not None]
        jobs = sorted({s.job_id for s in self._submissions.values() if not s.job_id.startswith("?")})
        try:
            self._cancel(jobs, by_name=True)
            if queued:
                log.warning("poolparty: cancelled %d queued job(s) of pool %s (%s)", len(queued), self.s.name,
                            reason)
        except Exception as e:
            log.error("poolparty: could not cancel the jobs of pool %s: %s; cancel them by hand "
                      "(e.g. scancel --name=%s)", self.s.name, e, self.s.name)
        self._submissions.clear()
        err = error
        for b in list(self._batches):
            self._batches.remove(b)
            # what finished before the abort is kept
            try:
                for c in b.chunks:
                    if c.phase is not Phase.DONE:
                        b.handle._add(b.store.absorb(c.chunk, b.store.chunk_files(c.chunk)))
            except Exception:
                pass
            if b.finished and not any(c.phase is Phase.FAILED for c in b.chunks):
                self._end_batch(b, None)  # everything had arrived: a clean batch, not a casualty
                continue
            self._end_batch(b, err if err is not None else KeyboardInterrupt(reason)
                            if reason == "KeyboardInterrupt" else _cancelled(reason))
        if keep_running:
            with self._cond:
                self._abort = None


def _cancelled(reason: str) -> BaseException:
    from concurrent.futures import CancelledError

    return CancelledError(f"poolparty: cancelled ({reason})")
