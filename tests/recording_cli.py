"""A stand-in for SchedulerCLI in adapter tests: records each argv, answers with canned output."""
from types import SimpleNamespace
from typing import Any, Sequence


class RecordingCLI:
    def __init__(self, **answers: str):
        self.answers = answers  # command name -> its stdout
        self.argvs: list[list[str]] = []

    def require(self, program: str, queue: str) -> None:
        pass

    def run(self, argv: Sequence[str], **kw: Any) -> SimpleNamespace:
        self.argvs.append(list(argv))
        return SimpleNamespace(stdout=self.answers.get(argv[0], ""), returncode=0, stderr="")
