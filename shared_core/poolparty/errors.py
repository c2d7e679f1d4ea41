"""Exception types a user can catch. Every message says what happened and what to do."""
from __future__ import annotations


class PoolPartyError(Exception):
    """Base class of every poolparty error."""


class ConfigurationError(PoolPartyError, ValueError):
    """Bad input detected before anything was submitted."""


class UnknownResourceError(ConfigurationError):
    """A resource name that poolparty does not know."""


class UnsupportedResourceError(ConfigurationError):
    """A portable resource that the chosen queue cannot express."""


class ImpossibleResourceError(ConfigurationError):
    """The scheduler says no job with these resources could ever run (checked before submitting)."""


class UnsafeWorkDirError(PoolPartyError):
    """The work_dir could be written by others: its pickles must not be loaded."""


class WorkDirInUseError(PoolPartyError):
    """Another live driver holds the work_dir."""


class WorkDirMismatchError(PoolPartyError):
    """An existing work_dir holds a different map than the one being resumed."""


class CorruptWorkDirError(PoolPartyError):
    """A file poolparty wrote in a work_dir is damaged (a disk or filesystem fault, or a hand edit)."""


class SchedulerCommandError(PoolPartyError):
    """A scheduler command failed for good (after retries for transient errors)."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, attempts: int):
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.attempts = attempts
        what = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(
            f"{argv[0]} {what} after {attempts} attempt(s): {stderr.strip()[-500:]}"
            f"\n  command: {' '.join(argv[:12])}{' ...' if len(argv) > 12 else ''}"
        )


class SubmissionError(SchedulerCommandError):
    """The scheduler refused a submission."""


class RetryLimitExceeded(PoolPartyError):
    """Chunks failed for infrastructure reasons more often than the retry policy allows."""

    def __init__(self, failures: dict[int, str], tasks: dict[int, list[int]], work_dir: str):
        self.failures = failures  # chunk -> last failure description
        self.tasks = tasks  # chunk -> task indices
        self.work_dir = work_dir
        lines = []
        for chunk in sorted(failures)[:10]:
            t = tasks.get(chunk, [])
            shown = f"{t[0]}..{t[-1]}" if len(t) > 1 else (str(t[0]) if t else "?")
            lines.append(f"  chunk {chunk} (tasks {shown}): {failures[chunk]}")
        more = f"\n  ... and {len(failures) - 10} more chunk(s)" if len(failures) > 10 else ""
        super().__init__(
            f"{len(failures)} chunk(s) gave up after the resubmission limit:\n"
            + "\n".join(lines) + more
            + f"\n  logs and partial results are kept in {work_dir}"
            "\n  (raise the limit each line names in parentheses: max_resubmissions, or a RetryPolicy bound;"
            "\n  or look at the logs with `poolparty logs`)."
        )


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on a compute node, and where it was raised:
    ``stage`` is ``"task"``, ``"initializer"`` or ``"result"`` (pickling the task's return value, whose
    repr is ``value``)."""

    def __init__(self, text: str, stage: str = "task", value: str | None = None):
        super().__init__(text)
        self.stage = stage
        self.value = value

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


class RemoteError(PoolPartyError):
    """A remote exception whose type could not be rebuilt on the driver (e.g. not picklable)."""

    def __init__(self, type_name: str, message: str):
        self.type_name = type_name
        super().__init__(f"{type_name}: {message}")


class CommandFailed(PoolPartyError):
    """A shell-command task exited with a non-zero status."""

    def __init__(self, returncode: int, command: str):
        self.returncode = returncode
        self.command = command
        super().__init__(f"command exited with status {returncode}: {command[:200]}")

    def __reduce__(self):
        return (CommandFailed, (self.returncode, self.command))


class PoolClosedError(PoolPartyError, ValueError, RuntimeError):
    """Work was submitted to a pool or executor that was closed: a ``ValueError`` as ``multiprocessing``
    raises ("Pool not running") and a ``RuntimeError`` as ``concurrent.futures`` raises ("cannot schedule
    new futures after shutdown")."""
