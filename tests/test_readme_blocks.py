"""Docs that cannot rot: every YAML and shell block in the README is exercised.

YAML blocks are loaded as policies (their `extends` resolved against the shipped ones). Shell blocks are split into
commands; each `python -m MODULE ...` command line is parsed by that module's own argument parser (the job's
option check for `pipelines.moderate`), cheap commands are run, and the two commands of "Two commands" are the
ones CI runs. A renamed option, module or flag in the code fails here until the README follows.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)


def _commands(block: str) -> list[list[str]]:
    """Shell commands of a block: continuation lines joined, comments dropped, split on `&&`."""
    text = re.sub(r"\\\n", " ", block)
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1 :]
    return commands


SHELL = [c for lang, body in BLOCKS if lang == "bash" for c in _commands(body)]
YAML = [body for lang, body in BLOCKS if lang == "yaml"]


def _module_argv(command: list[str]) -> tuple[str, list[str]] | None:
    """(module, its arguments) of a `python -m MODULE ...` command, else None."""
    if len(command) >= 3 and Path(command[0]).name.startswith("python") and command[1] == "-m":
        return command[2], command[3:]
    return None


def test_the_readme_has_the_blocks_this_test_reads():
    assert len(YAML) >= 1 and len(SHELL) >= 15
    modules = {parsed[0] for c in SHELL if (parsed := _module_argv(c))}
    assert {"pipelines.moderate", "training", "policies", "pytest"} <= modules
    assert any(c[0] == "./run_batch.sh" for c in SHELL)


@pytest.mark.parametrize("body", YAML, ids=lambda b: b.split("\n", 1)[0])
def test_readme_yaml_blocks_are_valid_policies(body, tmp_path):
    from policies import DEFAULT_POLICY_DIR, load_policies

    data = yaml.safe_load(body)
    path = tmp_path / f"{data['id']}.yaml"
    path.write_text(body)
    resolved = load_policies([str(path)], parents=[str(DEFAULT_POLICY_DIR)])
    assert data["id"] in resolved


def _command_module(command: str):
    """The module that holds a command: `pipelines.report` is a short alias whose `main` lives in
    `pipelines.audit.report`."""
    return importlib.import_module(importlib.import_module(command).main.__module__)


def _parse(module: str, args: list[str]) -> None:
    """Parse a command line with the module's own parser (raises/exits on an unknown or malformed option)."""
    if module == "pipelines.moderate":
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipelines.job.usage import reject_unknown_args

        reject_unknown_args(args)
        PipelineOptions(args).get_all_options()  # option values parse (types, choices)
    elif module == "training":
        from training.__main__ import build_parser

        build_parser().parse_args(args)
    elif module == "policies":
        from policies.__main__ import build_parser

        build_parser().parse_args(args)
    elif module in ("pipelines.evaluate", "pipelines.evaluate_modes"):
        from pipelines.evaluation.evaluate import parse_args
        from pipelines.job.usage import reject_unknown_args

        if module == "pipelines.evaluate_modes":  # its own option, then everything goes to pipelines.evaluate
            assert "--modes" in args, args
            at = args.index("--modes")
            args = args[:at] + args[at + 2 :]
        _, job_args = parse_args(args)  # the rest goes to the job
        reject_unknown_args(job_args)
    elif module in (
        "pipelines.export", "pipelines.report", "pipelines.review", "pipelines.calibrate",
        "pipelines.compare_evaluations", "pipelines.render_prompt",
    ):  # fmt: skip
        _command_module(module).build_parser().parse_args(args)
    elif module == "pytest":
        markers = [args[i + 1] for i, a in enumerate(args) if a == "-m"]
        ini = (REPO / "pytest.ini").read_text()
        assert all(re.sub(r"^not\s+", "", m) + ":" in ini for m in markers), markers
    else:
        raise AssertionError(f"the README runs `python -m {module}`, which this test does not know")


MODULE_COMMANDS = [(m, a) for c in SHELL if (parsed := _module_argv(c)) for m, a in [parsed]]


@pytest.mark.parametrize(("module", "args"), MODULE_COMMANDS, ids=lambda v: v if isinstance(v, str) else "")
def test_readme_python_commands_parse_with_their_modules_parsers(module, args):
    _parse(module, args)


def test_readme_unknown_options_would_fail_this_test():
    with pytest.raises(ValueError, match="unknown option"):
        _parse("pipelines.moderate", ["--inptu", "x"])
    with pytest.raises(SystemExit):
        _parse("training", ["grpo", "--data", "d", "--out", "o", "--no-such-flag"])


def test_readme_two_commands_are_what_ci_runs():
    two = [c for lang, body in BLOCKS if lang == "bash" for c in _commands(body)][:3]
    assert two[0] == ["bash", "scripts/install.sh"] and two[1] == ["./run_batch.sh"]
    assert two[2] == [".venv/bin/python", "-m", "pytest"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/install.sh" in ci and ".venv/bin/python -m pytest" in ci


def test_readme_policy_commands_run(tmp_path):
    """The policies block, run as written (from the repo root), with the files it names made up."""
    block = next(body for lang, body in BLOCKS if lang == "bash" and "policies validate" in body)
    conversation = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Knead."}]
    (tmp_path / "conv.json").write_text(json.dumps({"messages": conversation}))
    (tmp_path / "my-tenant.yaml").write_text(next(body for lang, body in BLOCKS if lang == "yaml"))
    for command in _commands(block):
        module, args = _module_argv(command)
        args = [str(tmp_path / a) if (tmp_path / a).exists() else a for a in args]
        args = [str(REPO / a) if a.startswith("policies/") else a for a in args]
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
        if "render" in args:
            assert "How do I bake bread?" in done.stdout and "<think>" not in done.stdout.split("User:")[0]


CLUSTER_ONLY = ("dask_kubernetes", "dask_jobqueue")


def test_readme_python_blocks_run_on_a_real_output(tmp_path, monkeypatch):
    """The Polars snippets (the quick query and the report's queries) run as written against `out/`."""
    from pipelines.job.moderate import run

    run(["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(tmp_path / "out")])
    monkeypatch.chdir(tmp_path)
    blocks = [body for lang, body in BLOCKS if lang == "python"]
    assert len(blocks) >= 2
    report = None
    for body in blocks:
        code = compile(body, "README.md", "exec")  # every block is valid Python
        if any(f"import {m}" in body or f"from {m}" in body for m in CLUSTER_ONLY):
            continue  # a deployment recipe for a cluster this machine has not got: compiled, not run
        namespace: dict = {}
        exec(code, namespace)
        report = namespace if "mix" in namespace else report
    units = report["v"].select(pl.len()).collect().item()
    assert report["mix"]["units"].sum() == units > 0
