"""The per-mode evaluation wrapper, with the fake engine behind the seam."""

from __future__ import annotations

import json

from pipelines.evaluate_modes import evaluate_modes


def test_fake_engine_evaluate_modes_writes_one_column_group_per_mode(tmp_path):
    argv = ["--modes", "auto,free", "--sets", "simplesafetytests,aegis", "--limit", "3", "--out", str(tmp_path)]
    per_mode = evaluate_modes([*argv, "--engine", "fake"])
    assert list(per_mode) == ["auto", "free"]
    assert all(sorted(sets) == ["aegis", "simplesafetytests"] for sets in per_mode.values())
    table = (tmp_path / "modes.md").read_text()
    assert "F1 auto" in table and "AUROC free" in table and table.count("\n") == 4
    assert json.loads((tmp_path / "modes.json").read_text())["free"]["aegis"]["n"] == 3
    for mode in ("auto", "free"):
        run = json.loads((tmp_path / mode / "results.json").read_text())["run"]
        assert f"--verdict-mode {mode}" in " ".join(run["job_argv"])
