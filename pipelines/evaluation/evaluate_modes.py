"""The benchmark evaluation once per verdict mode, side by side: F1 per mode and AUROC from P(unsafe).

    python -m pipelines.evaluate_modes --modes auto,forced,free --sets all --limit 25 --out results/eval \
        [any pipelines.evaluate / job option, e.g. --max-tokens 96 --reasoning-budget 96]

Each mode runs `pipelines.evaluation.evaluate` into OUT/<mode>/ (its own results.md, verdicts and chart); the modes
share one engine (same engine settings, same process). OUT/modes.md and OUT/modes.json hold the combined table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipelines.evaluation.evaluate import evaluate
from pipelines.evaluation.scores import mean
from transforms.judging.decisions import VERDICT_MODES

log = logging.getLogger("rsafe_batch.evaluate_modes")


def _cell(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


FREE_FROM_AUTO = "free (from auto)"


def with_free_from_auto(per_mode: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """Add `free` metrics derived from a greedy `auto` run (`pipelines.evaluation.evaluate.free_view`) when `free`
    itself was not run: the same first pass, so no second engine pass is needed."""
    auto = per_mode.get("auto")
    if "free" in per_mode or not auto or not all("free_from_auto" in m for m in auto.values()):
        return per_mode
    return {**per_mode, FREE_FROM_AUTO: {name: m["free_from_auto"] for name, m in auto.items()}}


def render_modes_table(per_mode: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per set, F1 / F1 (unparsed dropped) / AUROC / parse-error rate per mode."""
    per_mode = with_free_from_auto(per_mode)
    modes = list(per_mode)
    sets = list(next(iter(per_mode.values())))
    header = ["set", "n"]
    for mode in modes:
        header += [f"F1 {mode}", f"F1 {mode} (unparsed dropped)", f"AUROC {mode}", f"unparsed {mode}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in sets:
        row = [name, str(per_mode[modes[0]][name]["n"])]
        for mode in modes:
            m = per_mode[mode][name]
            unparsed = m["parse_error_rate"] + m["truncation_rate"]
            row += [_cell(m["f1"]), _cell(m["f1_unparsed_dropped"]), _cell(m["auroc"]), f"{unparsed:.0%}"]
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**", ""]
    for mode in modes:
        values = per_mode[mode].values()
        f1s = [m["f1"] for m in values if m["f1"] is not None]
        aurocs = [m["auroc"] for m in values if m["auroc"] is not None]
        row += [_cell(mean(f1s)), "", _cell(mean(aurocs)), ""]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def evaluate_modes(argv: list[str], engine_spec=None) -> dict[str, dict[str, dict]]:
    """Run `pipelines.evaluation.evaluate` once per mode; returns {mode: {set: metrics}} and writes OUT/modes.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="auto,forced,free", help="comma-separated verdict modes")
    parser.add_argument("--out", required=True)
    args, rest = parser.parse_known_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(VERDICT_MODES))
    if unknown or not modes:
        parser.error(f"--modes must be from {VERDICT_MODES}, got {args.modes!r}")
    out = Path(args.out)
    per_mode = {}
    for mode in modes:
        log.info("evaluating verdict mode %s", mode)
        per_mode[mode] = evaluate([*rest, "--out", str(out / mode), "--verdict-mode", mode], engine_spec=engine_spec)
    out.mkdir(parents=True, exist_ok=True)
    table = render_modes_table(per_mode)
    (out / "modes.md").write_text(table)
    combined = with_free_from_auto(per_mode)
    (out / "modes.json").write_text(json.dumps(combined, indent=2, sort_keys=True, default=str) + "\n")
    return per_mode


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    per_mode = evaluate_modes(sys.argv[1:])
    print(render_modes_table(per_mode))


if __name__ == "__main__":
    main()
