"""What an engine knows about the decision head its model folder serves (`transforms.engines.decision_head` builds
the folder). `rsafe_head.json` in the folder says which of two kinds it is:

- **folded** (`ServedHead`): a head on the final normed state, folded into the model's output rows. The file names
  the token ids whose logits at the box make the head (`safe` and the decision token: the head's score is their
  difference) and the special tokens whose rows hold category heads. An engine reads P(unsafe) from those logits
  and never lets the decision or category tokens be generated.
- **pooled** (`PooledHead`): a head on several layers, which two output rows cannot read. It is served beside the
  generating engine, on the same model folder, by vLLM's pooling runner with the feature hooks the head was
  trained on (`transforms.engines.feature_reader`); its weights (`rsafe_head/weights.safetensors`) are laid out
  over that runner's pooled vector `[normed final state, x_k / rms(x_L) for k in layers]`. It may carry a text
  prior (`rsafe_head/text_prior.*`, `transforms.engines.text_prior`) that the score pass stacks on its decision.
Both answer the same read-outs (`safe`, `unsafe`, `category:<code>`), so the cascade does not know which it has.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

from transforms.engines.text_prior import TextPrior

SERVED_HEAD_FILE = "rsafe_head.json"
# in a folder of its own: vLLM loads every *.safetensors at the model folder's top level as model weights
POOLED_DIR = "rsafe_head"
POOLED_WEIGHTS_FILE = f"{POOLED_DIR}/weights.safetensors"
FOLDED, POOLED = "folded", "pooled"
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

    kind = FOLDED

    @classmethod
    def read(cls, model_dir: str | pathlib.Path) -> ServedHead | PooledHead | None:
        """The head `model_dir` serves (folded or pooled), or None for a folder without one (or a hub id)."""
        path = pathlib.Path(model_dir) / SERVED_HEAD_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        try:
            if data.get("kind", FOLDED) == POOLED:
                return PooledHead.from_folder(pathlib.Path(model_dir), data)
            return cls(
                str(data["version"]),
                int(data["safe_token"]),
                int(data["decision_token"]),
                tuple(data.get("category_codes", ())),
                tuple(int(t) for t in data.get("slot_tokens", ())),
            )
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise RuntimeError(f"{path} is not a valid served-head file: {exc}") from exc

    def write(self, model_dir: pathlib.Path) -> None:
        document = {"kind": FOLDED, **dataclasses.asdict(self)}
        (model_dir / SERVED_HEAD_FILE).write_text(json.dumps(document, indent=2) + "\n")

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

    @property
    def readouts(self) -> tuple[str, ...]:
        return tuple(self.readout_tokens)


@dataclasses.dataclass(frozen=True)
class PooledHead:
    """A head served beside the generating engine: weights over the pooling runner's vector at the box.

    `layers` are the intermediate layers the runner's hooks append to the final normed state; `decision` has one
    weight per entry of that vector, `categories` one row per code over the normed state (its first block).
    """

    version: str
    layers: tuple[int, ...]
    category_codes: tuple[str, ...]
    decision: Any = dataclasses.field(compare=False, repr=False)  # numpy [(1 + len(layers)) * hidden]
    categories: Any = dataclasses.field(compare=False, repr=False)  # numpy [len(category_codes), hidden]
    text_prior: TextPrior | None = dataclasses.field(default=None, compare=False, repr=False)

    kind = POOLED
    never_generated = ()  # nothing of it is in the generating model

    @classmethod
    def from_folder(cls, model_dir: pathlib.Path, data: dict[str, Any]) -> PooledHead:
        import numpy as np
        from safetensors.numpy import load_file

        tensors = load_file(str(model_dir / POOLED_WEIGHTS_FILE))
        codes = tuple(data.get("category_codes", ()))
        hidden = len(tensors["decision"]) // (1 + len(data["layers"]))
        categories = tensors.get("categories", np.zeros((0, hidden), dtype=np.float32))
        if len(categories) != len(codes) or len(tensors["decision"]) != hidden * (1 + len(data["layers"])):
            raise ValueError("the weights do not match the layers and category codes")
        prior = TextPrior.read(model_dir / POOLED_DIR)
        layers = tuple(int(k) for k in data["layers"])
        return cls(str(data["version"]), layers, codes, tensors["decision"], categories, prior)

    def write(self, model_dir: pathlib.Path) -> None:
        import numpy as np
        from safetensors.numpy import save_file

        tensors = {"decision": np.ascontiguousarray(self.decision, dtype=np.float32)}
        if self.category_codes:
            tensors["categories"] = np.ascontiguousarray(self.categories, dtype=np.float32)
        (model_dir / POOLED_WEIGHTS_FILE).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(model_dir / POOLED_WEIGHTS_FILE))
        if self.text_prior is not None:
            self.text_prior.write(model_dir / POOLED_DIR)
        document = {"kind": POOLED, "version": self.version, "layers": list(self.layers),
                    "category_codes": list(self.category_codes)}  # fmt: skip
        (model_dir / SERVED_HEAD_FILE).write_text(json.dumps(document, indent=2) + "\n")

    @property
    def readouts(self) -> tuple[str, ...]:
        return ("safe", "unsafe", *(category_readout(code) for code in self.category_codes))

    def readout_logprobs(self, pooled: Any, choices: Sequence[str]) -> list[dict[str, float]]:
        """Per row of pooled vectors `[n, 1 + len(layers), hidden]`: log P(safe) and log P(unsafe) of the
        decision head, and `category:<code>` as log P(safe) + that category head's score (as a folded head's
        read-outs: a read-out minus `safe` is its head's score)."""
        if len(pooled) == 0:  # e.g. a batch where no completion reached a box
            return []
        flat = pooled.reshape(len(pooled), -1)
        z = flat @ self.decision
        normed = pooled[:, 0]
        category = normed @ self.categories.T if self.category_codes else None
        index = {category_readout(code): i for i, code in enumerate(self.category_codes)}
        results = []
        for row, score in enumerate(z):
            log_safe = -_softplus(float(score))
            values = {"safe": log_safe, "unsafe": -_softplus(-float(score))}
            for choice in choices:
                if choice in index:
                    values[choice] = log_safe + float(category[row, index[choice]])
            results.append({c: values[c] for c in choices})
        return results


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
