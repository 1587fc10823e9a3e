"""Every audit command fails politely: for each bad-usage case (issue #26's table, and one per option), one line on
stderr naming the thing, exit 2 for usage, 3 for missing input, 4 for an invalid policy file; no traceback."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.job.moderate import run
from transforms.engines.fake_engine import FakeEngineSpec

REPO = Path(__file__).resolve().parents[1]
SAMPLES = str(REPO / "samples/logs/*.parquet")
EXPORT = ["--format", "openai-moderation"]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """A judged night (no labels), an empty folder, a folder that does not exist, a labels file without the
    columns, and an invalid policy file."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "out"
    run(["--input", SAMPLES, "--output", str(out)], engine_spec=FakeEngineSpec(head_version="h"))
    (root / "empty").mkdir()
    (root / "nocolumns.csv").write_text("a,b\n1,2\n")
    (root / "bad-policy.yaml").write_text("id: broken\nunknown_field: 1\n")
    return {"out": str(out), "empty": str(root / "empty"), "nodir": str(root / "nodir"), "tmp": str(root)}


CASES = [
    # report
    ("pipelines.report", ["{nodir}", "--html", "{tmp}/r.html"], 3, r"{nodir}: no such output folder"),
    ("pipelines.report", ["{empty}", "--html", "{tmp}/r.html"], 3, r"no verdict files under verdicts/"),
    ("pipelines.report", ["{out}"], 2, r"give --html and/or --md"),
    ("pipelines.report", ["{out}", "--html", "{nodir}/r.html"], 2, r"--html {nodir}/r.html: folder '{nodir}' does not"),
    ("pipelines.report", ["{out}", "--html", "{tmp}/r.txt"], 2, r"--html {tmp}/r.txt: the format follows the suffix"),
    ("pipelines.report", ["{out}", "--md", "{nodir}/r.md"], 2, r"--md {nodir}/r.md: folder"),
    (
        "pipelines.report",
        ["{out}", "--html", "{tmp}/r.html", "--since", "2026-02-30"],
        2,
        r"argument --since: not a UTC day \(YYYY-MM-DD\): '2026-02-30'",
    ),
    ("pipelines.report", ["{out}", "--html", "{tmp}/r.html", "--until", "27/11/2026"], 2, r"argument --until: not a"),
    (
        "pipelines.report",
        ["{out}", "--html", "{tmp}/r.html", "--since", "2026-11-27", "--until", "2026-11-26"],
        2,
        r"--since 2026-11-27 is after --until 2026-11-26: the range is empty",
    ),
    (
        "pipelines.report",
        ["{out}", "--html", "{tmp}/r.html", "--input", "{nodir}/*.parquet"],
        3,
        r"--input: input pattern .* matched no files",
    ),
    ("pipelines.report", ["{out}", "--html", "{tmp}/r.html", "--drift-window", "0"], 2, r"argument --drift-window"),
    (
        "pipelines.report",
        ["{out}", "--html", "{tmp}/r.html", "--drift-threshold", "1.5"],
        2,
        r"argument --drift-threshold: must be a number between 0 and 1",
    ),
    ("pipelines.report", ["{out}", "--html", "{tmp}/r.html", "--bogus"], 2, r"unrecognized arguments: --bogus"),
    # export
    ("pipelines.export", ["{nodir}", *EXPORT, "--to", "{tmp}/m.jsonl"], 3, r"{nodir}: no such output folder"),
    ("pipelines.export", ["{out}", "--format", "xml", "--to", "{tmp}/m.jsonl"], 2, r"argument --format: invalid"),
    ("pipelines.export", ["{out}", *EXPORT], 2, r"the following arguments are required: --to"),
    ("pipelines.export", ["{out}", *EXPORT, "--to", "{tmp}/m.csv"], 2, r"--to {tmp}/m.csv: the format follows"),
    ("pipelines.export", ["{out}", *EXPORT, "--to", "{nodir}/m.jsonl"], 2, r"folder '{nodir}' does not exist"),
    (
        "pipelines.export",
        ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--tenant", "acme-kidz"],
        2,
        r"--tenant acme-kidz: no verdicts for it under .* \(tenants there: acme-kids, globex",
    ),
    ("pipelines.export", ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--since", "2026-02-30"], 2, r"--since: not a"),
    ("pipelines.export", ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--until", "tomorrow"], 2, r"--until: not a"),
    (
        "pipelines.export",
        ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--since", "2026-11-27", "--until", "2026-11-26"],
        2,
        r"is after --until",
    ),
    (
        "pipelines.export",
        ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--policies", "{nodir}"],
        3,
        r"--policies {nodir}: no such file or folder",
    ),
    (
        "pipelines.export",
        ["{out}", *EXPORT, "--to", "{tmp}/m.jsonl", "--policies", "{tmp}/bad-policy.yaml"],
        4,
        r"bad-policy.yaml",
    ),
    # review export
    ("pipelines.review", ["export", "{nodir}", "--to", "{tmp}/q.csv"], 3, r"{nodir}: no such output folder"),
    ("pipelines.review", ["export", "{out}", "--to", "{tmp}/q.txt"], 2, r"use \.csv, \.parquet"),
    ("pipelines.review", ["export", "{out}", "--to", "{nodir}/q.csv"], 2, r"folder '{nodir}' does not exist"),
    (
        "pipelines.review",
        ["export", "{out}", "--to", "{tmp}/q.csv", "--input", "{nodir}/*.parquet"],
        3,
        r"--input: input pattern .* matched no files",
    ),
    ("pipelines.review", ["export", "{out}", "--to", "{tmp}/q.csv", "--tenant", "nobody"], 2, r"--tenant nobody"),
    ("pipelines.review", ["export", "{out}", "--to", "{tmp}/q.csv", "--since", "2026-02-30"], 2, r"--since: not a"),
    ("pipelines.review", ["export", "{out}", "--to", "{tmp}/q.csv", "--until", "2026-2-1"], 2, r"--until: not a"),
    (
        "pipelines.review",
        ["export", "{out}", "--to", "{tmp}/q.csv", "--since", "2026-11-27", "--until", "2026-11-26"],
        2,
        r"is after --until",
    ),
    ("pipelines.review", ["export", "{out}", "--to", "{tmp}/q.csv", "--limit", "0"], 2, r"argument --limit"),
    ("pipelines.review", [], 2, r"the following arguments are required: command"),
    # review import
    ("pipelines.review", ["import", "{nodir}", "--labels", "{tmp}/q.csv"], 3, r"{nodir}: no such output folder"),
    ("pipelines.review", ["import", "{out}", "--labels", "{nodir}/q.csv"], 3, r"--labels {nodir}/q.csv: no such"),
    (
        "pipelines.review",
        ["import", "{out}", "--labels", "{tmp}/nocolumns.csv"],
        2,
        r"nocolumns.csv: missing column\(s\) \['label', 'resume_key'\]",
    ),
    (
        "pipelines.review",
        ["import", "{out}", "--labels", "{tmp}/nocolumns.csv", "--reviewer", " "],
        2,
        r"--reviewer: give a name",
    ),
    ("pipelines.review", ["import", "{out}"], 2, r"the following arguments are required: --labels"),
    # calibrate
    ("pipelines.calibrate", ["--to", "{tmp}/c.json"], 2, r"give --labels OUT .* and/or --labelled"),
    ("pipelines.calibrate", ["--labels", "{out}", "--to", "{tmp}/c.json"], 3, r"--labels .*: no imported labels"),
    ("pipelines.calibrate", ["--labelled", "{nodir}/l.parquet", "--to", "{tmp}/c.json"], 3, r"--labelled .*: no such"),
    ("pipelines.calibrate", ["--labels", "{out}", "--to", "{nodir}/c.json"], 2, r"--to .*: folder"),
    ("pipelines.calibrate", ["--labels", "{out}", "--to", "{tmp}/c.txt"], 2, r"use \.json"),
    ("pipelines.calibrate", ["--labels", "{out}", "--to", "{tmp}/c.json", "--min-labels", "0"], 2, r"--min-labels"),
    (
        "pipelines.calibrate",
        ["--labels", "{out}", "--to", "{tmp}/c.json", "--report", "{nodir}/r.json"],
        2,
        r"--report .*: folder",
    ),
]


def _fill(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def _ids(case: tuple) -> str:
    module, argv, code, _ = case
    return f"{module.split('.')[-1]}:{' '.join(a for a in argv if not a.startswith('{'))}->{code}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_bad_usage_is_one_line_and_its_exit_code(places, capsys, case):
    module, argv, expected, message = case
    main = importlib.import_module(module).main
    try:
        code = main([_fill(a, places) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert len(err.splitlines()) == 1 and re.match(rf"python -m {module}( \w+)?: error: ", err), err
    assert re.search(_fill(message, {k: re.escape(v) for k, v in places.items()}), err), err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pipelines.report", "{out}", "--html", "{nodir}/r.html", "--since", "2026-11-26"], 2),
        (["pipelines.review", "import", "{out}", "--labels", "{nodir}/labels.csv"], 3),
    ],
)
def test_as_a_process_the_failure_is_one_line_without_a_traceback(places, argv, expected):
    done = subprocess.run([sys.executable, "-m", *[_fill(a, places) for a in argv]], capture_output=True, text=True,
                          cwd=places["tmp"], timeout=120)  # fmt: skip
    assert done.returncode == expected and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "error" in line] == [done.stderr.strip().splitlines()[-1]]
