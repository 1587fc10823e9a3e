"""Evaluation runs compared on the items they all answered (`pipelines.evaluation.compare_evaluations`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.evaluation import compare_evaluations as ce
from pipelines.evaluation.scores import auroc, confusion, f1

GOLD = pl.DataFrame(
    {
        "conversation_id": [f"a-{i}" for i in range(4)] + [f"b-{i}" for i in range(3)],
        "set": ["a"] * 4 + ["b"] * 3,
        "level": ["prompt"] * 7,
        "index": [0, 1, 2, 3, 0, 1, 2],
        "label": ["unsafe", "safe", "unsafe", "safe", "unsafe", "safe", "safe"],
    }
)


def _verdict(cid: str, outcome: str, p: float, source: str = "model", finish: str = "stop") -> dict:
    return {
        "conversation_id": cid, "unit": "prompt", "outcome": outcome, "verdict": outcome, "verdict_source": source,
        "p_unsafe": p, "finish_reason": finish, "completion_tokens": 40, "truncated_input": False,
    }  # fmt: skip


def _published_run(folder: Path, verdicts: list[dict]) -> Path:
    """A `pipelines.evaluation.evaluate` folder as a (possibly stopped) run leaves it: gold + published verdicts
    only."""
    partition = folder / "run" / "verdicts" / "tenant=eval" / "date=2026-11-29"
    partition.mkdir(parents=True)
    GOLD.write_parquet(folder / "gold.parquet")
    pl.DataFrame(verdicts).write_parquet(partition / "part-0.parquet")
    return folder


@pytest.fixture
def runs(tmp_path):
    first = _published_run(
        tmp_path / "first",
        [
            _verdict("a-0", "unsafe", 0.9),
            _verdict("a-1", "unsafe", 0.6),
            _verdict("a-2", "safe", 0.3, source="forced", finish="length"),
            _verdict("a-3", "safe", 0.2),
            _verdict("b-0", "unsafe", 0.7),
            _verdict("b-1", "safe", 0.4),
            _verdict("b-2", "unsafe", 0.8),
        ],
    )
    # stopped early: it never reached a-3 or b-2
    second = _published_run(
        tmp_path / "second",
        [_verdict(c, "unsafe", 0.5 + i / 20) for i, c in enumerate(["a-0", "a-1", "a-2", "b-0", "b-1"])],
    )
    return {"first": ce.read_run(first), "second": ce.read_run(second)}


def test_only_items_every_run_answered_are_scored(runs):
    table = ce.compare(runs)
    assert list(table) == ["a", "b"]
    assert {name: per_run["first"]["n"] for name, per_run in table.items()} == {"a": 3, "b": 2}
    assert all(per_run["first"]["n"] == per_run["second"]["n"] for per_run in table.values())


def test_figures_are_the_evaluations_own_on_the_shared_items(runs):
    first_a = ce.compare(runs)["a"]["first"]
    gold, predicted, scores = [True, False, True], [True, True, False], [0.9, 0.6, 0.3]  # a-0, a-1, a-2
    assert first_a["f1"] == pytest.approx(f1(confusion(gold, predicted)))
    assert first_a["auroc"] == pytest.approx(auroc(gold, scores))
    assert first_a["own_box"] == pytest.approx(2 / 3)


def test_the_free_view_turns_forced_verdicts_into_unparsed_answers(runs):
    auto, free = ce.compare(runs, "auto")["a"]["first"], ce.compare(runs, "free")["a"]["first"]
    assert auto["truncation_rate"] == 0 and free["truncation_rate"] == pytest.approx(1 / 3)
    assert free["auroc_n"] == 2 and auto["auroc_n"] == 3


def test_the_table_has_a_row_per_set_and_the_means(runs):
    text = ce.render(ce.compare(runs), ["first", "second"], "auto")
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| set | n | F1 first | F1 second | AUROC first")
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| a", "| b", "| **mean**"]
    assert lines[-1].split(" | ")[1] == "5"


def test_a_finished_run_is_read_from_its_joined_rows(tmp_path, runs):
    folder = tmp_path / "finished"
    folder.mkdir()
    runs["first"].write_parquet(folder / "joined.parquet")
    assert ce.read_run(folder).equals(runs["first"])


def test_bad_arguments_name_the_problem(tmp_path, capsys):
    with pytest.raises(ValueError, match="NAME=DIR"):
        ce.parse_runs(["results/eval"])
    with pytest.raises(ValueError, match="given twice"):
        ce.parse_runs(["a=x", "a=y"])
    with pytest.raises(FileNotFoundError, match=r"not a pipelines\.evaluate folder"):
        ce.read_run(tmp_path)
    with pytest.raises(SystemExit):
        ce.main(["a=" + str(tmp_path), "--view", "forced"])
    assert "--view must be from" in capsys.readouterr().err


def test_the_command_writes_both_views(tmp_path, runs, capsys):
    folders = []
    for name, frame in runs.items():
        folder = tmp_path / f"finished-{name}"
        folder.mkdir()
        frame.write_parquet(folder / "joined.parquet")
        folders.append(f"{name}={folder}")
    ce.main([*folders, "--out", str(tmp_path / "compare.md")])
    written = (tmp_path / "compare.md").read_text()
    assert written == capsys.readouterr().out
    assert "View `auto`" in written and "View `free`" in written
