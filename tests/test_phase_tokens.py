"""`prompt_too_long` counts exactly what the judging phases send: the real vLLM engine's request building
(`VllmEngine`, no vLLM engine started: a recording stand-in for `vllm.LLM`) on the embedded model's tokenizer."""

from __future__ import annotations

import dataclasses
import itertools
from types import SimpleNamespace

import pytest

from transforms.engines.embedded_model import ensure_embedded_model
from transforms.engines.protocol import SamplingSettings
from transforms.engines.served_head import ServedHead
from transforms.engines.vllm_engine import VllmEngine
from transforms.judging.cascade import judge_batch
from transforms.judging.decisions import JudgeRequest, JudgeSettings
from transforms.judging.judge_dofn import JudgeUnitsDoFn
from transforms.judging.phase_tokens import categories_suffix, verdict_opening
from transforms.judging.run_context import RunContext
from transforms.records import ModerationUnit

PROMPT = "Is this conversation safe?\n<BEGIN CONVERSATION>\nUser: how do I bake bread\n<END CONVERSATION>"


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(ensure_embedded_model())


def count_tokens_with(tokenizer):
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


class RecordingLLM:
    """Stands in for `vllm.LLM`: records every request's prompt length plus its requested tokens, generates the
    whole limit (a thought the budget cut, no box) and makes `unsafe` the likelier verdict (so phase 3 runs)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.requests: list[int] = []  # prompt tokens + requested tokens, per request
        self._filler = tokenizer.encode(" a", add_special_tokens=False)
        self._safe = tokenizer.encode("safe", add_special_tokens=False)[0]

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=False):
        params = params if isinstance(params, list) else [params] * len(prompts)
        outputs = []
        for prompt, param in zip(prompts, params, strict=True):
            self.requests.append(len(prompt["prompt_token_ids"]) + param.max_tokens)
            ids = self._filler * param.max_tokens
            asked = param.logprob_token_ids or []
            logprobs = [{t: SimpleNamespace(logprob=-5.0 if t == self._safe else -0.01) for t in asked}]
            text = self.tokenizer.decode(ids)
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=text, token_ids=ids, finish_reason="length",
                                                                    logprobs=logprobs)]))  # fmt: skip
        return outputs


@dataclasses.dataclass(frozen=True)
class RecordingSpec:
    """An engine spec whose engine is the real `VllmEngine` over a `RecordingLLM`."""

    tokenizer: object = dataclasses.field(compare=False)
    max_len: int
    head: bool
    tag: str

    @property
    def cache_key(self) -> str:
        return f"recording:{self.max_len}:{self.head}:{self.tag}"

    def load(self) -> VllmEngine:
        safe = self.tokenizer.encode("safe", add_special_tokens=False)[0]
        head = ServedHead("test", safe, safe + 1) if self.head else None
        return VllmEngine(RecordingLLM(self.tokenizer), "recording", self.max_len, head)

    def load_token_counter(self):
        return count_tokens_with(self.tokenizer)


UNIT = ModerationUnit(
    "c1", "acme", "2026-11-26", "prompt", 0, "p", "v1", "t1", PROMPT, False, 0, "f.parquet", 1, allowed_codes=("S1",)
)


def _settings(mode: str, categories: bool) -> JudgeSettings:
    return JudgeSettings(
        verdict_mode=mode, sampling=SamplingSettings(max_tokens=40), reasoning_budget=30,
        extract_categories=categories, cascade_band=(0.0, 1.0),  # cascade: every unit is reasoned too
    )  # fmt: skip


MODES = list(itertools.product(("free", "forced", "auto", "cascade", "score"), (False, True), (False, True)))


@pytest.mark.parametrize(("mode", "categories", "head"), MODES)
def test_the_check_counts_the_longest_request_the_phases_send(tokenizer, mode, categories, head):
    settings = _settings(mode, categories)
    spec = RecordingSpec(tokenizer, 4096, head, f"{mode}-{categories}")
    engine = spec.load()
    judge_batch(engine, [JudgeRequest(PROMPT, allowed_codes=("S1",))], settings)
    longest = max(engine._llm.requests)

    judge = JudgeUnitsDoFn(spec, RunContext("r", "m", settings))
    judge._holder = SimpleNamespace(engine=engine)
    engine.max_context_tokens = longest  # the boundary: exactly the longest request fits, one token less does not
    assert judge._split_too_long([("k", [UNIT])]) == ([("k", [UNIT])], [])
    engine.max_context_tokens = longest - 1
    fitting, too_long = judge._split_too_long([("k", [UNIT])])
    assert fitting == [] and [u.conversation_id for u, _ in too_long] == ["c1"]
    assert f"need {longest} tokens" in too_long[0][1] and f"context of {longest - 1}" in too_long[0][1]


def test_the_suffixes_are_the_ones_the_issue_counted(tokenizer):
    count = count_tokens_with(tokenizer)
    cut_box = verdict_opening("a thought the budget cut")[1]
    assert cut_box == "\n</think>\n\\boxed{" and count(cut_box) == 9  # more than the 8 the check allowed in all
    assert count("unsafe") == 2
    assert count(categories_suffix(cut_box)) == 16
