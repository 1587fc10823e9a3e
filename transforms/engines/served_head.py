"""What an engine knows about a decision head folded into its model (`transforms.engines.decision_head` folds it).

A folded model folder carries `rsafe_head.json`: the head's version, the token ids whose logits at the box make
the head (`safe` and the decision token: the head's score is their difference), and the special tokens whose rows
hold category heads. An engine serving such a folder reads P(unsafe) from those two logits and never lets the
decision or category tokens be generated.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

SERVED_HEAD_FILE = "rsafe_head.json"
CATEGORY_READOUT = "category:"  # `category:<code>`: a category head's read-out, asked for beside `safe`/`unsafe`


def category_readout(code: str) -> str:
    """The name under which an engine serving a head answers category `code`'s read-out."""
    return CATEGORY_READOUT + code


@dataclasses.dataclass(frozen=True)
class ServedHead:
    """A folded head as served: its version, the tokens whose logit difference is the head, its category slots."""

    version: str
    safe_token: int
    decision_token: int
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
                int(data["decision_token"]),
                tuple(data.get("category_codes", ())),
                tuple(int(t) for t in data.get("slot_tokens", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimeError(f"{path} is not a valid served-head file: {exc}") from exc

    def write(self, model_dir: pathlib.Path) -> None:
        (model_dir / SERVED_HEAD_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @property
    def never_generated(self) -> tuple[int, ...]:
        """The decision and category tokens: read-outs at the box, not text."""
        return (self.decision_token, *self.slot_tokens)

    @property
    def slots(self) -> dict[str, int]:
        """Category code → its slot token."""
        return dict(zip(self.category_codes, self.slot_tokens, strict=True))

    @property
    def readout_tokens(self) -> dict[str, int]:
        """Read-out name → the token whose log-probability at the box answers it: `safe`, `unsafe` (the decision
        token) and `category:<code>` per category head. A read-out's logit minus `safe`'s is its head's score."""
        categories = {category_readout(code): token for code, token in self.slots.items()}
        return {"safe": self.safe_token, "unsafe": self.decision_token, **categories}
