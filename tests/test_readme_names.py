"""The README names what the code has: every option it mentions is one a parser of the project knows (the job's
table: the job's own parser), and its lists of verdict and dead-letter columns are the output schemas."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

import pipelines.job.options  # noqa: F401  (registers the job's options with Beam's)
from pipelines.job.runners import import_runner_options
from transforms.io.write_partitions import ERROR_SCHEMA, VERDICT_SCHEMA

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PROSE = re.sub(r"^```.*?^```", "", README, flags=re.DOTALL | re.MULTILINE)  # shell blocks: test_readme_blocks
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")
CLI_MODULES = (
    "pipelines.audit.export", "pipelines.audit.report", "pipelines.audit.review", "pipelines.evaluation.calibrate",
    "pipelines.evaluation.compare_evaluations", "pipelines.job.render_prompt", "policies.__main__",
    "training.__main__",
)  # fmt: skip
OTHER_TOOLS = {"--nthreads": "dask-worker", "--service_port": "Beam's worker_pool_main"}


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def job_options() -> set[str]:
    """The options `python -m pipelines.moderate` accepts: its own, Beam's, and the Dask runner's."""
    import_runner_options(["--runner", "DaskRunner"])
    parser = argparse.ArgumentParser(add_help=False)
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        with contextlib.suppress(argparse.ArgumentError):
            cls._add_argparse_args(parser)
    return _option_strings(parser) | {"--help", "--verbose"}


def test_the_option_table_names_the_jobs_options():
    table = README[README.index("| option | default | meaning |") :].split("\n\n", 1)[0]
    named = set(OPTION.findall(table))
    assert len(named) > 30 and named - job_options() == set()


def test_every_option_the_readme_mentions_is_known_to_a_project_parser():
    known = job_options()
    for module in CLI_MODULES:
        known |= _option_strings(importlib.import_module(module).build_parser())
    unknown = set(OPTION.findall(PROSE)) - known - set(OTHER_TOOLS)
    assert {option for option in unknown if not _known_to_the_evaluation(option)} == set()


def _known_to_the_evaluation(option: str) -> bool:
    """`python -m pipelines.evaluate`'s own options (the rest of its command line goes to the job)."""
    from pipelines.evaluation.evaluate import parse_args

    try:
        _, rest = parse_args([option])
    except SystemExit:  # known, and wants a value
        return True
    return option not in rest


def _listed_columns(label: str) -> list[str]:
    listed = README.split(f"{label}: `", 1)[1].split("`", 1)[0]
    return [re.sub(r"\s*\(.*\)$", "", name.strip()) for name in listed.split(",")]


def test_the_column_lists_are_the_output_schemas():
    assert _listed_columns("Verdict columns") == VERDICT_SCHEMA.names
    assert _listed_columns("Dead-letter columns") == ERROR_SCHEMA.names
