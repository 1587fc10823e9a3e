"""A text prior stacked on the decision head: TF-IDF + logistic regression over the judged conversation block.

The head reads the guard's activations; the prior reads the words (word 1-2-grams of the conversation block,
`transforms.prompts.render.conversation_block`). Both are fitted on the same training rows (`python -m training head`,
step `text`), and a two-weight logistic regression fitted on the held-out rows stacks them:
`log-odds = a · head + c · text + b`. The stack validated above either alone on every policy kind (EVALUATION.md);
the prior does not read the policy, so it is a prior, and the head is what follows the tenant's policy.

Served without scikit-learn: the vectoriser's arithmetic (scikit-learn's `TfidfVectorizer` with `lowercase`, its
default token pattern, `sublinear_tf`, l2 norm) is reproduced here with numpy, from the fitted vocabulary, idf and
coefficients, and tests check it against scikit-learn. Files, beside the head's: `text_prior.json` (settings,
stack weights, vocabulary in column order) and `text_prior.safetensors` (idf and coefficients).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any

TEXT_PRIOR_FORMAT = "rsafe-text-prior/1"
TEXT_PRIOR_CONFIG = "text_prior.json"
TEXT_PRIOR_WEIGHTS = "text_prior.safetensors"
TEXT_PRIOR_FILES = (TEXT_PRIOR_CONFIG, TEXT_PRIOR_WEIGHTS)
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


@dataclasses.dataclass(frozen=True)
class TextPrior:
    """A fitted TF-IDF logistic regression and the stack weights that add it to the head's log-odds."""

    vocabulary: dict[str, int] = dataclasses.field(repr=False)
    idf: Any = dataclasses.field(repr=False)  # numpy [len(vocabulary)]
    coef: Any = dataclasses.field(repr=False)  # numpy [len(vocabulary)]
    intercept: float
    head_weight: float
    text_weight: float
    stack_intercept: float
    ngram_max: int = 2

    @classmethod
    def from_fitted(cls, vectorizer: Any, model: Any, stack: Any) -> TextPrior:
        """From scikit-learn's fitted `TfidfVectorizer`, `LogisticRegression` (text) and the stack's regression."""
        import numpy as np

        # everything else the vectoriser can do (characters, stop words, binary counts, accents, custom callables)
        # changes its terms or counts, and the served arithmetic would silently differ
        settings = (vectorizer.analyzer, vectorizer.lowercase, vectorizer.token_pattern, vectorizer.sublinear_tf,
                    vectorizer.norm, vectorizer.binary, vectorizer.stop_words, vectorizer.strip_accents,
                    vectorizer.preprocessor, vectorizer.tokenizer)  # fmt: skip
        if settings != ("word", True, _TOKEN.pattern, True, "l2", False, None, None, None, None) or (
            vectorizer.ngram_range[0] != 1
        ):
            raise ValueError(
                f"a text prior serves word, lowercase, default-token, sublinear, l2 TF-IDF; got {settings}"
            )
        return cls(
            {str(term): int(column) for term, column in vectorizer.vocabulary_.items()},
            np.asarray(vectorizer.idf_, dtype=np.float64),
            np.asarray(model.coef_[0], dtype=np.float64),
            float(model.intercept_[0]),
            float(stack.coef_[0, 0]),
            float(stack.coef_[0, 1]),
            float(stack.intercept_[0]),
            int(vectorizer.ngram_range[1]),
        )

    def text_log_odds(self, texts: Sequence[str]) -> list[float]:
        """The text model's log-odds of each text (scikit-learn's `decision_function` on its TF-IDF row)."""
        scores = []
        for text in texts:
            counts = collections.Counter(
                column for term in _ngrams(text, self.ngram_max) if (column := self.vocabulary.get(term)) is not None
            )
            weights = {column: (1.0 + math.log(n)) * float(self.idf[column]) for column, n in counts.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            scores.append(sum(w * float(self.coef[c]) for c, w in weights.items()) / norm + self.intercept)
        return scores

    def stacked_log_odds(self, head_log_odds: Sequence[float], texts: Sequence[str]) -> list[float]:
        """`a · head + c · text + b` per unit: the decision's log-odds."""
        return [
            self.head_weight * h + self.text_weight * t + self.stack_intercept
            for h, t in zip(head_log_odds, self.text_log_odds(texts), strict=True)
        ]

    def write(self, folder: pathlib.Path) -> None:
        import numpy as np
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        save_file(
            {"idf": np.ascontiguousarray(self.idf, np.float64), "coef": np.ascontiguousarray(self.coef, np.float64)},
            str(folder / TEXT_PRIOR_WEIGHTS),
        )
        document = {
            "format": TEXT_PRIOR_FORMAT,
            "ngram_max": self.ngram_max,
            "intercept": self.intercept,
            "stack": {"head": self.head_weight, "text": self.text_weight, "intercept": self.stack_intercept},
            "vocabulary": terms,
        }
        (folder / TEXT_PRIOR_CONFIG).write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: pathlib.Path) -> TextPrior | None:
        """The prior saved in `folder`, or None where there is none; a clear error for a broken one."""
        path = folder / TEXT_PRIOR_CONFIG
        if not path.is_file():
            return None
        from safetensors.numpy import load_file

        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != TEXT_PRIOR_FORMAT:
                raise ValueError(f"not a {TEXT_PRIOR_FORMAT} file")
            tensors = load_file(str(folder / TEXT_PRIOR_WEIGHTS))
            terms, stack = document["vocabulary"], document["stack"]
            if not len(terms) == len(tensors["idf"]) == len(tensors["coef"]):
                raise ValueError("the vocabulary, idf and coefficients differ in length")
            return cls(
                {term: column for column, term in enumerate(terms)},
                tensors["idf"],
                tensors["coef"],
                float(document["intercept"]),
                float(stack["head"]),
                float(stack["text"]),
                float(stack["intercept"]),
                int(document["ngram_max"]),
            )
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise RuntimeError(f"{path} is not a valid text prior: {exc}") from exc


def _ngrams(text: str, ngram_max: int) -> list[str]:
    """scikit-learn's word n-grams (1..ngram_max) of the lowercased text's tokens."""
    tokens = _TOKEN.findall(text.lower())
    grams = list(tokens)
    for n in range(2, ngram_max + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams
