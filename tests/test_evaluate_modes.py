"""The per-mode evaluation wrapper, with the fake engine behind the seam."""

from __future__ import annotations

import json

from pipelines.evaluation.evaluate_modes import FREE_FROM_AUTO, evaluate_modes, with_free_from_auto


def test_fake_engine_evaluate_modes_writes_one_column_group_per_mode(tmp_path):
    argv = ["--modes", "auto,free", "--sets", "simplesafetytests,aegis", "--limit", "3", "--out", str(tmp_path)]
    per_mode = evaluate_modes([*argv, "--engine", "fake"])
    assert list(per_mode) == ["auto", "free"]
    assert all(sorted(sets) == ["aegis", "simplesafetytests"] for sets in per_mode.values())
    table = (tmp_path / "modes.md").read_text()
    assert "F1 auto" in table and "AUROC free" in table and table.count("\n") == 5 and "**mean**" in table
    assert json.loads((tmp_path / "modes.json").read_text())["free"]["aegis"]["n"] == 3
    for mode in ("auto", "free"):
        run = json.loads((tmp_path / mode / "results.json").read_text())["run"]
        assert f"--verdict-mode {mode}" in " ".join(run["job_argv"])


def test_free_metrics_derived_from_a_greedy_auto_run_equal_a_free_run(tmp_path):
    argv = ["--modes", "auto,free", "--sets", "simplesafetytests,aegis,xstest_response", "--limit", "6"]
    per_mode = evaluate_modes([*argv, "--out", str(tmp_path), "--engine", "fake"])
    derived = with_free_from_auto({"auto": per_mode["auto"]})[FREE_FROM_AUTO]
    for name, free in per_mode["free"].items():
        for key in ("f1", "auroc", "accuracy", "parse_error_rate", "truncation_rate", "confusion", "auroc_n"):
            assert derived[name][key] == free[key], (name, key)


def test_free_view_turns_forced_verdicts_into_the_unparsed_outcome():
    from pipelines.evaluation.evaluate import derives_free, free_view

    rows = [
        {"outcome": "unsafe", "verdict_source": "model", "p_unsafe": 0.9, "finish_reason": "stop"},
        {"outcome": "safe", "verdict_source": "forced", "p_unsafe": 0.2, "finish_reason": "length"},
        {"outcome": "unsafe", "verdict_source": "forced", "p_unsafe": 0.7, "finish_reason": "stop"},
    ]
    assert [(r["outcome"], r["p_unsafe"]) for r in free_view(rows)] == [
        ("unsafe", 0.9),
        ("truncated", None),
        ("parse_error", None),
    ]
    assert derives_free({"verdict_mode": "auto", "sampling": {"temperature": 0.0}})
    assert not derives_free({"verdict_mode": "auto", "sampling": {"temperature": 0.7}})
    assert not derives_free({"verdict_mode": "forced", "sampling": {"temperature": 0.0}})
