"""The benchmark harness's report: `results.md` (a table row per set) and `f1.png` (F1s and parse errors per set).

Pure rendering of the `results.json` structure `pipelines.evaluation.evaluate` builds; nothing here reads a run.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def render_markdown(report: dict) -> str:
    """The report as Markdown: a header, one table row per set, the n/a reasons and the notes."""
    run = report["run"]
    lines = [
        "# Benchmark evaluation",
        "",
        f"- model: `{run['model']}`; run `{run['run_id']}`; template `{run['template_version']}`",
        f"- job: `python -m pipelines.moderate {shlex.join(run['job_argv'])}`",
        f"- sample: limit {run['limit'] or 'all'} per set, seed {run['seed']}; {run['units']} units judged;"
        f" dead letters {run['dead_letters'] or 'none'}",
        f"- wall time of the run: {run['wall_s']:.1f} s; macro F1 over sets where defined: {_num(report['macro_f1'])}",
        "",
        "| set | level | n | unsafe/safe | P | R | F1 | F1 (unparsed dropped) | F1 (verdict) | Acc | AUROC | parse err "
        "| trunc | missing | forced | input cut | mean compl. tok | units | wall share (s) |",
        "|" + "---|" * 19,
    ]
    for name, m in report["sets"].items():
        cells = [name, m["level"], m["n"], f"{m['unsafe']}/{m['safe']}"]
        f1s = ("f1", "f1_unparsed_dropped", "f1_verdict")
        cells += [_num(m[k]) for k in ("precision", "recall", *f1s, "accuracy", "auroc")]
        cells += [_pct(m[k]) for k in ("parse_error_rate", "truncation_rate", "missing_rate", "forced_rate")]
        cells += [
            _pct(m["input_cut_rate"]),
            _num(m["mean_completion_tokens"], 1),
            m["units"],
            _num(m["wall_share_s"], 1),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    reasons = [f"- {n}: {k} n/a ({why})" for n, m in report["sets"].items() for k, why in m["undefined"].items()]
    lines += ["", "## n/a", "", *(reasons or ["- none"]), "", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    lines += ["", "## Sets", "", *(f"- {n}: `{m['source']}`; {m['labels']}" for n, m in report["sets"].items())]
    return "\n".join(lines) + "\n"


F1_BARS = (
    ("f1", "F1 (answer; unparsed = wrong)"),
    ("f1_verdict", "F1 (verdict)"),
    ("parse_error_rate", "parse-error rate"),
)


def f1_bars(per_set: dict[str, dict]) -> dict[str, list[float | None]]:
    """The chart's series: per label, one value per set in order (None: undefined, drawn as n/a)."""
    return {label: [per_set[name][key] for name in per_set] for key, label in F1_BARS}


def plot_f1(per_set: dict[str, dict], path: Path) -> None:
    """Bar chart per set: the answers' F1, the job's verdicts' F1 and the parse-error rate (`f1_bars`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_set)
    series = f1_bars(per_set)
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.5))
    for slot, (label, values) in enumerate(series.items()):
        xs = [x + (slot - (len(series) - 1) / 2) * width for x in range(len(names))]
        ax.bar(xs, [v or 0.0 for v in values], width=width, label=label)
        for x, value in zip(xs, values, strict=True):
            if value is None:
                ax.text(x, 0.02, "n/a", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(list(range(len(names))), names, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("unsafe = positive")
    ax.legend(loc="best", fontsize=8)  # where it hides the fewest bars
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
