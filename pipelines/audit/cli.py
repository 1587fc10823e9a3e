"""Polite command lines for the audit commands (report, export, review, calibrate).

Bad usage is one line on stderr naming the option or file, never a traceback: exit 2 for usage (a malformed or
contradictory value, a target that cannot be written), 3 for missing input (an output folder without verdicts, a
labels file or log pattern that is not there), 4 for an invalid policy file (`pipelines.job.exit_codes`).
`AuditParser` makes argparse's own errors one line too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pipelines.job.exit_codes import CONFIG_INVALID, INPUT_NOT_FOUND, USAGE
from policies import PolicyError


class UsageError(ValueError):
    """A command line that cannot be carried out as given (exit 2)."""


class MissingInputError(FileNotFoundError):
    """Input the command needs is not there (exit 3)."""


class AuditParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`) and exit 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE)


def utc_day(text: str) -> str:
    """argparse type: a calendar day `YYYY-MM-DD` (checked: 2026-02-30 is refused)."""
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a UTC day (YYYY-MM-DD): {text!r}")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def check_day_range(since: str | None, until: str | None) -> None:
    """Refuse an inverted `--since/--until`."""
    if since and until and since > until:
        raise UsageError(f"--since {since} is after --until {until}: the range is empty")


def check_target(option: str, path: str, suffixes: Sequence[str] = (), stdout_ok: bool = False) -> None:
    """Refuse a target file whose folder is missing or whose suffix is not one of `suffixes`."""
    if stdout_ok and path == "-":
        return
    if suffixes and not path.endswith(tuple(suffixes)):
        allowed = ", ".join(suffixes) + (" or - (stdout)" if stdout_ok else "")
        raise UsageError(f"{option} {path}: the format follows the suffix; use {allowed}")
    if "://" in path:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: folder {str(folder)!r} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")


def require_verdicts(output: str) -> None:
    """Refuse an output folder with no published verdict files (a remote `scheme://` folder is not listed)."""
    if "://" in output:
        return
    if not Path(output).is_dir():
        raise MissingInputError(f"{output}: no such output folder")
    if not any(Path(output).glob("verdicts/**/*.parquet")):
        raise MissingInputError(f"{output}: no verdict files under verdicts/ (is it the job's output folder?)")


def require_file(option: str, path: str) -> None:
    """Refuse an input file that is not there."""
    if "://" not in path and not Path(path).is_file():
        raise MissingInputError(f"{option} {path}: no such file")


def require_tenants(output: str, tenants: Sequence[str]) -> None:
    """Refuse a `--tenant` the output has no verdicts for, naming the ones it has."""
    if not tenants:
        return
    from pipelines.audit.report_queries import scan_output, tenants_in

    known = tenants_in(scan_output(output).verdicts)
    unknown = sorted(set(tenants) - set(known))
    if unknown:
        raise UsageError(f"--tenant {', '.join(unknown)}: no verdicts for it under {output} "
                         f"(tenants there: {', '.join(known)})")  # fmt: skip


def run_politely(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body; a usage or missing-input error becomes one line on stderr and its exit code."""
    try:
        return body()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE
    except MissingInputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return INPUT_NOT_FOUND
    except PolicyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return CONFIG_INVALID
