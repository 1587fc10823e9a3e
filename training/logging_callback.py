"""A JSON-lines log of every training log event (loss, reward, learning rate …), one object per line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


class JsonLogCallback(TrainerCallback):
    """Appends `{"step", "epoch", "time_s", **logs}` to `path` on every log event; survives resumes."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = path
        self.stage = stage
        self._start = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"stage": self.stage, "step": state.global_step, "epoch": state.epoch}
        record["time_s"] = round(time.monotonic() - self._start, 2)
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict]:
    """The records of a JSON-lines training log (empty when it does not exist yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
