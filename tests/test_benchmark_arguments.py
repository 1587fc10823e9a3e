"""`benchmarks.common.named_folders`: the benchmark scripts' `NAME=FOLDER` arguments, and a mistyped one answered
with a usage message naming it (exit 2), never a traceback — through `benchmarks/evaluation_table.py`'s command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from evaluation_table import main  # noqa: E402


def _evaluation(folder: Path) -> Path:
    folder.mkdir(parents=True)
    sets = {"aegis": {"n": 2, "unsafe": 1, "auroc": 1.0, "f1": 1.0, "ece": 0.1}}
    run = {"model": "m", "evaluate_argv": [], "limit": 2, "seed": 0, "wall_s": 1.0, "units": 2, "run_id": "r"}
    (folder / "results.json").write_text(json.dumps({"run": run, "sets": sets}))
    return folder


def test_named_runs_are_read_in_order_and_mistyped_ones_are_named(tmp_path, capsys):
    one, two = _evaluation(tmp_path / "one"), _evaluation(tmp_path / "two")
    out = tmp_path / "out"
    main(["--run", f"b={one}", "--run", f"a={two}", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]
    assert capsys.readouterr().out.startswith("| set | n | unsafe | AUROC b | AUROC a |")
    for runs, message in [
        ([str(one)], f"--run takes NAME=FOLDER, got '{one}'"),
        ([f"={one}"], "--run takes NAME=FOLDER"),
        ([f"a={one}", f"a={two}"], "--run: two folders named 'a'"),
        ([f"a={tmp_path}"], f"--run a={tmp_path} is not a `pipelines.evaluate` output: it has no results.json"),
    ]:
        with pytest.raises(SystemExit) as usage:
            main([arg for run in runs for arg in ("--run", run)] + ["--out", str(tmp_path / "unused")])
        assert usage.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "unused").exists()  # nothing written before the arguments are checked
