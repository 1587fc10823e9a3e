"""Usage errors, found before anything runs or is written: unknown options and malformed or invalid values."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.job.options import check_option_values
from pipelines.job.runners import import_runner_options


def reject_unknown_args(argv: Sequence[str]) -> None:
    """A misspelt option is an error, not something Beam silently discards. The chosen runner's own options
    (e.g. `--dask_client_address`) are known once its module is imported."""
    import_runner_options(argv)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False, exit_on_error=False)
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        with contextlib.suppress(argparse.ArgumentError):  # an option two Beam option classes both declare
            cls._add_argparse_args(parser)
    try:
        _, unknown = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:  # a malformed value of a Beam option: one line, not Beam's usage
        raise ValueError(str(exc)) from None
    if unknown:
        raise ValueError(f"unknown option(s): {' '.join(unknown)} (see python -m pipelines.moderate --help)")


def check_usage(argv: Sequence[str]) -> None:
    """Raise `ValueError` (exit code 2), in one line, for an unknown option or a malformed or invalid value."""
    check_option_values(argv)
    reject_unknown_args(argv)
