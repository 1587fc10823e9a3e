"""Training curves as PNG: stage-1 loss and token accuracy, stage-2 reward and its format/accuracy parts."""

from __future__ import annotations

from pathlib import Path

from training.logging_callback import read_log

_SERIES = {
    "sft": (("loss", "training loss"), ("mean_token_accuracy", "token accuracy")),
    "grpo": (
        ("reward", "mean reward"),
        ("rewards/rsafe_reward_func/mean", "RSafe reward"),
        ("rewards/format_reward_func/mean", "format"),
        ("rewards/accuracy_reward_func/mean", "accuracy"),
        ("reward_std", "reward std (within groups)"),
    ),
}


def plot_curves(log_path: Path, stage: str, out: Path) -> Path:
    """One PNG with a line per logged series of `stage` against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_log(log_path) if "train_runtime" not in r]
    if not records:
        raise ValueError(f"{log_path}: no training steps logged")
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in _SERIES[stage]:
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points, strict=True), marker=".", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_title(f"{stage}: {log_path.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
