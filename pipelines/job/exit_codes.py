"""Exit codes a scheduler can act on: what kind of failure a run (or its command line) ended with.

| code | meaning | what to do |
|---|---|---|
| 0 | succeeded | nothing |
| 1 | other failure | read the log and the manifest's `error` |
| 2 | usage error (unknown option, malformed or invalid option value) | fix the command line |
| 3 | input not found (a pattern matched no file, or could not be listed) | check the input path / upstream export |
| 4 | policy or tenants configuration invalid | fix the named policy/tenants file |
| 5 | another run holds the output's lease (or took it over, or it is unreadable) | let it finish; `--wait-for-lock` |
| 6 | accounting does not balance (rows or units unaccounted for) | rerun; report if it persists |
| 7 | engine failure (the model could not be loaded or the engine died for good) | check the model and the worker |
| 8 | output unreadable (what earlier runs published could not be listed or read) | check the output's storage |
| 9 | a `--day-by-day` backfill partly failed: the days named failed, the others succeeded | rerun the same command |
"""

from __future__ import annotations

from collections.abc import Iterator

from pipelines.job.resume_keys import OutputUnreadableError
from pipelines.job.run_lease import LeaseHeldError
from policies import PolicyError
from transforms.engines.protocol import EngineError
from transforms.io.read_logs import InputError

OK = 0
FAILURE = 1
USAGE = 2
INPUT_NOT_FOUND = 3
CONFIG_INVALID = 4
LOCKED = 5
ACCOUNTING = 6
ENGINE = 7
OUTPUT_UNREADABLE = 8
PARTIAL = 9


class AccountingError(RuntimeError):
    """The run finished but its books do not balance."""


class BackfillError(RuntimeError):
    """Some days of a `--day-by-day` backfill failed (`pipelines.job.backfill`); `exit_code` is the backfill's."""

    def __init__(self, message: str, exit_code: int, result: object = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def exit_code_for(exc: BaseException) -> int:
    """The exit code of a failed run: the most specific kind found along the exception's cause chain.

    Beam re-raises an exception from a DoFn as the same type with the worker's traceback in the message, so the
    type (and for the engine, its name in the message) survives the runner.
    """
    for link in _chain(exc):
        if isinstance(link, BackfillError):
            return link.exit_code
        if isinstance(link, InputError):
            return INPUT_NOT_FOUND
        if isinstance(link, PolicyError):
            return CONFIG_INVALID
        if isinstance(link, LeaseHeldError):
            return LOCKED
        if isinstance(link, OutputUnreadableError):
            return OUTPUT_UNREADABLE
        if isinstance(link, AccountingError):
            return ACCOUNTING
        if isinstance(link, EngineError) or "EngineError" in str(link) or "EngineDeadError" in str(link):
            return ENGINE
    for link in _chain(exc):
        if isinstance(link, ValueError):  # option values checked before anything runs
            return USAGE
    return FAILURE
