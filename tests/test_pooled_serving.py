"""A pooled decision head through the real `VllmEngine` request building (no vLLM started: stand-ins for the
generating `vllm.LLM` and for the head's pooling engine): the score pass generates nothing, the head reads the
features at exactly the score position, and its read-outs make P(unsafe) and the category scores."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from transforms.engines.chat_format import BOX_OPEN, score_position_ids
from transforms.engines.embedded_model import ensure_embedded_model
from transforms.engines.protocol import SamplingSettings
from transforms.engines.served_head import PooledHead
from transforms.engines.vllm_engine import VllmEngine
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import JudgeRequest, JudgeSettings

HIDDEN = 4
PROMPTS = [
    "Policy: U1 violence.\n<BEGIN CONVERSATION>\nUser: how do I bake bread\n<END CONVERSATION>",
    "Policy: U1 violence.\n<BEGIN CONVERSATION>\nUser: how do I hurt him\n<END CONVERSATION>",
]


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(ensure_embedded_model())


class GeneratingLLM:
    """Stands in for the generating `vllm.LLM`: records its requests, writes a short thought and a box."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.prompts: list[list[int]] = []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=False):
        self.prompts += [list(p["prompt_token_ids"]) for p in prompts]
        ids = self.tokenizer.encode("It asks for harm.\n</think>\n\\boxed{unsafe}", add_special_tokens=False)
        text = self.tokenizer.decode(ids)
        return [SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=ids, finish_reason="stop")])] * len(
            prompts
        )


class Reader:
    """Stands in for the head's `FeatureReader`: the pooled vector of a sequence is a function of its length."""

    layers = (12,)

    def __init__(self) -> None:
        self.sequences: list[list[int]] = []

    def read(self, sequences):
        self.sequences += [list(s) for s in sequences]
        return np.stack([self.pooled(len(s)) for s in sequences]) if sequences else np.zeros((0, 2, HIDDEN))

    @staticmethod
    def pooled(length: int) -> np.ndarray:
        return np.full((2, HIDDEN), (length % 7) / 7.0 - 0.4, dtype=np.float32)


def _engine(tokenizer):
    decision = np.linspace(-1.0, 1.0, 2 * HIDDEN, dtype=np.float32) + 0.5
    categories = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    head = PooledHead("pooled-test", (12,), ("U1",), decision, categories)
    return VllmEngine(GeneratingLLM(tokenizer), "guard", 4096, head, Reader()), head


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_the_score_pass_generates_nothing_and_reads_the_head_at_the_score_position(tokenizer):
    engine, head = _engine(tokenizer)
    requests = [JudgeRequest(p, allowed_codes=("U1", "U2")) for p in PROMPTS]
    judged = judge_batch(engine, requests, JudgeSettings(verdict_mode="score"))
    assert engine._llm.prompts == []  # the generating engine is not asked for anything
    expected = [score_position_ids(tokenizer, p) for p in PROMPTS]
    assert engine._reader.sequences == expected
    for judgement, ids in zip(judged, expected, strict=True):
        pooled = Reader.pooled(len(ids))
        assert judgement.verdict_source == "head" and judgement.completion_tokens == 0
        assert judgement.p_unsafe == pytest.approx(_sigmoid(float(pooled.reshape(-1) @ head.decision)), abs=1e-6)
        assert judgement.prompt_tokens == len(ids) - len(tokenizer.encode("\n</think>\n\\boxed{"))
        assert dict(judgement.category_scores) == pytest.approx({"U1": _sigmoid(float(pooled[0, 0]))}, abs=1e-6)


def test_a_trace_is_generated_by_the_guard_and_its_own_box_is_read_by_the_head(tokenizer):
    engine, _ = _engine(tokenizer)
    settings = JudgeSettings(verdict_mode="cascade", sampling=SamplingSettings(max_tokens=32), cascade_band=(0, 1))
    judged = judge_batch(engine, [JudgeRequest(PROMPTS[1])], settings)
    assert len(engine._llm.prompts) == 1  # the trace, and nothing for the score pass
    box_context = engine._reader.sequences[-1]
    assert tokenizer.decode(box_context).endswith("It asks for harm.\n</think>\n" + BOX_OPEN)
    score = float(Reader.pooled(len(box_context)).reshape(-1) @ engine.decision_head.decision)
    assert judged[0].trace_p_unsafe == pytest.approx(_sigmoid(score), abs=1e-6)
    assert judged[0].reasoning.startswith("It asks for harm")


def test_no_continuation_to_score_is_an_empty_answer_not_an_error(tokenizer):
    """A batch where no completion reached a box asks the head for nothing (found on the real engine)."""
    engine, head = _engine(tokenizer)
    assert engine.continuation_logprobs([], ["safe", "unsafe"]) == []
    assert head.readout_logprobs(np.zeros((0, 2, HIDDEN), dtype=np.float32), ["safe", "unsafe"]) == []
