"""What an engine knows about a decision head folded into its model (`pipelines.decision_head` folds it).

A folded model folder carries `rsafe_head.json`: the head's version, the token ids whose first-token logits at
the box are the head (`safe`, `uns`), and the special tokens whose rows hold category heads. An engine serving
such a folder reads P(unsafe) from those two first-token logits (the head's score is their difference) and never
lets the category slots be generated.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

SERVED_HEAD_FILE = "rsafe_head.json"


@dataclasses.dataclass(frozen=True)
class ServedHead:
    """A folded head as served: its version, the box's verdict tokens, and its category slots."""

    version: str
    safe_token: int
    unsafe_token: int
    category_codes: tuple[str, ...] = ()
    slot_tokens: tuple[int, ...] = ()

    @classmethod
    def read(cls, model_dir: str | pathlib.Path) -> ServedHead | None:
        """The head folded into `model_dir`, or None for a model folder without one (or a hub id)."""
        path = pathlib.Path(model_dir) / SERVED_HEAD_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        try:
            return cls(
                str(data["version"]),
                int(data["safe_token"]),
                int(data["unsafe_token"]),
                tuple(data.get("category_codes", ())),
                tuple(int(t) for t in data.get("slot_tokens", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimeError(f"{path} is not a valid served-head file: {exc}") from exc

    def write(self, model_dir: pathlib.Path) -> None:
        (model_dir / SERVED_HEAD_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @property
    def slots(self) -> dict[str, int]:
        """Category code → its slot token."""
        return dict(zip(self.category_codes, self.slot_tokens, strict=True))
