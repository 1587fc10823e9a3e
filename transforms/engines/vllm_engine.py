"""The vLLM engine behind the seam: one in-process `vllm.LLM` per worker, fed whole batches.

Prompts go through the model's chat template and are sent as token ids, so a continuation (phase 2) is the
exact token sequence of phase 1 plus a suffix and hits vLLM's prefix cache instead of being re-tokenised.
Verdict probabilities are computed over the full words (`safe` / `unsafe`, whatever their tokenisation) by
teacher forcing: one single-token request per distinct token prefix of the choices, asking only for the
log-probability of the next token of each choice (`logprob_token_ids`), all sharing the cached context. With
SmolLM2's vocabulary that is two requests per unit (`safe` | `uns`, then `afe` after `uns`). Each request costs
about one engine step whatever its size, so the closing `}` is not scored (it would double the requests).

A model folder with a decision head (`rsafe_head.json`, `transforms.engines.served_head`) is scored at the box by
one request per unit. A folded head's score is the difference of the decision token's and `safe`'s logits there,
and the decision and category tokens are never generated (`logit_bias`). A pooled head is read by a second,
pooling engine on the same folder (`transforms.engines.feature_reader`), started beside the generating one; its
score pass then needs no generation at all (`open_prompts`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

from transforms.engines.chat_format import chat_prompt_text
from transforms.engines.cpu_serving import bind_model_threads, cpu_has_native_bf16, serving_dtype
from transforms.engines.protocol import Completion, Continuation, EngineError, SamplingSettings, one_token_probes
from transforms.engines.served_head import POOLED, PooledHead, ServedHead
from transforms.engines.vllm_requests import choice_trie, sampling_params

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VllmEngineSpec:
    """How to build the vLLM engine on a worker. `model=None` means the embedded default model."""

    model: str | None = None
    dtype: str = "auto"
    max_model_len: int = 4096
    enforce_eager: bool = True
    kv_cache_gib: float = 1.0  # CPU backend: explicit KV cache size (vLLM otherwise reserves 92% of RAM)
    max_num_seqs: int = 256
    enable_prefix_caching: bool = True
    seed: int = 0
    # KV block size; only full blocks are prefix-cached, so phase 2 recomputes up to block_size-1 tokens per
    # scoring request. The CPU backend's default is 128; None keeps the platform default.
    block_size: int | None = 32

    @property
    def cache_key(self) -> str:
        return f"vllm:{dataclasses.astuple(self)}"

    def resolved_model(self) -> str:
        from transforms.engines.embedded_model import resolve_model

        return resolve_model(self.model)

    @property
    def model_label(self) -> str:
        """The model as recorded on verdicts: the embedded guard as base + adapter version."""
        from transforms.engines.embedded_model import model_label

        return model_label(self.model)

    def load(self) -> VllmEngine:
        from vllm import LLM

        model = self.resolved_model()
        dtype = serving_dtype(self.dtype, _is_embedded(self.model), _is_cpu_build() and not cpu_has_native_bf16())
        kwargs: dict[str, Any] = dict(
            model=model,
            dtype=dtype,
            max_model_len=self.max_model_len,
            enforce_eager=self.enforce_eager,
            enable_prefix_caching=self.enable_prefix_caching,
            max_num_seqs=self.max_num_seqs,
            seed=self.seed,
        )
        if self.block_size is not None:
            kwargs["block_size"] = self.block_size
        if _is_cpu_build():
            kwargs["kv_cache_memory_bytes"] = int(self.kv_cache_gib * (1 << 30))
            bind_model_threads()
        log.info("starting vLLM engine: %s", kwargs)
        try:
            llm = LLM(**kwargs)
        except Exception as exc:
            raise EngineError(f"could not start the vLLM engine for {model!r}: {type(exc).__name__}: {exc}") from exc
        head = ServedHead.read(model)
        reader = self._feature_reader(model, head, dtype) if head is not None and head.kind == POOLED else None
        return VllmEngine(llm, self.model_label, self.max_model_len, head, reader)

    def _feature_reader(self, model: str, head: PooledHead, dtype: str) -> Any:
        """The pooling engine that reads a pooled head's features, with the generating engine's settings."""
        from transforms.engines.feature_reader import FeatureReader, ReaderSettings

        settings = ReaderSettings(dtype, self.kv_cache_gib, self.max_model_len, self.block_size or 32)
        log.info("starting the decision head's pooling engine (layers %s)", head.layers)
        try:
            return FeatureReader(model, head.layers, settings)
        except Exception as exc:
            raise EngineError(f"could not start the head's pooling engine for {model!r}: {exc}") from exc

    def load_token_counter(self) -> Callable[[str], int]:
        tokenizer = self._tokenizer()
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))

    def load_special_tokens(self) -> tuple[str, ...]:
        from transforms.engines.special_tokens import special_token_strings

        return special_token_strings(self._tokenizer())

    def _tokenizer(self):
        return _load_tokenizer(self.resolved_model())


@functools.lru_cache(maxsize=4)
def _load_tokenizer(model_dir: str):
    """The HF tokenizer of a model folder, loaded once per process (counting and special tokens share it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _is_embedded(model: str | None) -> bool:
    from transforms.engines.embedded_model import is_embedded

    return is_embedded(model)


def _is_cpu_build() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


class VllmEngine:
    """`VerdictEngine` over an in-process `vllm.LLM`."""

    def __init__(
        self,
        llm: Any,
        model_name: str,
        max_len: int,
        decision_head: ServedHead | PooledHead | None = None,
        feature_reader: Any = None,
    ) -> None:
        self._llm = llm
        self._tokenizer = llm.get_tokenizer()
        self.model_name = model_name
        self.max_context_tokens = max_len
        self.decision_head = decision_head
        self._reader = feature_reader  # a pooled head's features (`FeatureReader`), None for a folded head
        # a folded head's decision and category tokens are read-outs, not text: never generated
        self._banned = {t: -100.0 for t in decision_head.never_generated} if decision_head else {}

    def _encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, user_message: str, assistant_prefix: str) -> list[int]:
        return self._encode(chat_prompt_text(self._tokenizer, user_message, assistant_prefix))

    def count_prompt_tokens(self, user_messages: Sequence[str], assistant_prefix: str = "") -> list[int]:
        return [len(self._prompt_ids(m, assistant_prefix)) for m in user_messages]

    def complete(
        self,
        user_messages: Sequence[str],
        sampling: SamplingSettings,
        max_tokens: Sequence[int],
        *,
        assistant_prefix: str = "",
        stop: Sequence[str] = (),
    ) -> list[Completion]:
        from vllm.inputs import TokensPrompt

        prompts = [self._prompt_ids(m, assistant_prefix) for m in user_messages]
        params = [sampling_params(sampling, limit, stop, True, self._banned) for limit in max_tokens]
        outputs = self._llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)
        completions = []
        for ids, output in zip(prompts, outputs, strict=True):
            generated = output.outputs[0]
            completions.append(
                Completion(
                    text=generated.text,
                    finish_reason=generated.finish_reason or "stop",
                    prompt_tokens=len(ids),
                    completion_tokens=len(generated.token_ids),
                    handle=(tuple(ids), tuple(generated.token_ids)),
                )
            )
        return completions

    def open_prompts(self, user_messages: Sequence[str], assistant_prefix: str = "") -> list[Completion]:
        """A handle on each prompt to score at the box or continue from, its text dropped (`keep_chars=0`).

        With a pooled head nothing runs here: the head's own engine prefills the scoring context. Otherwise one
        token is generated, so the prompt's prefill fills the prefix cache that the scoring request then hits."""
        if self._reader is None:
            return one_token_probes(self, user_messages, assistant_prefix)
        prompts = [self._prompt_ids(m, assistant_prefix) for m in user_messages]
        return [Completion("", "length", len(ids), 0, handle=(tuple(ids), ())) for ids in prompts]

    def _context_ids(self, continuation: Continuation) -> list[int]:
        """Prompt ids + the generated ids that make up the kept text + the suffix's ids."""
        prompt_ids, output_ids = continuation.completion.handle
        keep = continuation.completion.text[: continuation.keep_chars]
        if continuation.keep_chars == 0:
            kept_ids = []
        elif keep == continuation.completion.text:
            kept_ids = list(output_ids)
        else:  # longest run of generated tokens whose text is a prefix of `keep`, then the rest re-encoded
            kept_ids, text = [], ""
            for token in output_ids:
                piece = self._tokenizer.decode([*kept_ids, token])
                if not keep.startswith(piece):
                    break
                kept_ids.append(token)
                text = piece
            kept_ids += self._encode(keep[len(text) :]) if len(text) < len(keep) else []
        return [*prompt_ids, *kept_ids, *self._encode(continuation.suffix)]

    def continue_text(
        self, continuations: Sequence[Continuation], sampling: SamplingSettings, max_tokens: int, stop: Sequence[str]
    ) -> list[str]:
        from vllm.inputs import TokensPrompt

        params = sampling_params(sampling, max_tokens, stop, False, self._banned)
        prompts = [TokensPrompt(prompt_token_ids=self._context_ids(c)) for c in continuations]
        return [o.outputs[0].text for o in self._llm.generate(prompts, params, use_tqdm=False)]

    def continuation_logprobs(
        self, continuations: Sequence[Continuation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        head = self.decision_head
        if head is not None and set(choices) <= set(head.readouts):
            if self._reader is not None:  # a pooled head: its engine reads the features at each context's end
                features = self._reader.read([self._context_ids(c) for c in continuations])
                return head.readout_logprobs(features, choices)
            return self._head_logprobs(continuations, choices, head)
        choice_ids = {choice: self._encode(choice) for choice in choices}
        requests: list[tuple[int, tuple[int, ...], list[int]]] = []  # (unit, prefix within choice, next ids)
        for unit in range(len(continuations)):
            for prefix, next_ids in choice_trie(choice_ids).items():
                requests.append((unit, prefix, next_ids))
        contexts = [self._context_ids(c) for c in continuations]
        prompts = [TokensPrompt(prompt_token_ids=contexts[u] + list(p)) for u, p, _ in requests]
        params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=ids) for _, _, ids in requests]
        outputs = self._llm.generate(prompts, params, use_tqdm=False)
        step_logprob: dict[tuple[int, tuple[int, ...], int], float] = {}
        for (unit, prefix, next_ids), output in zip(requests, outputs, strict=True):
            scored = output.outputs[0].logprobs[0]
            for token in next_ids:
                step_logprob[(unit, prefix, token)] = scored[token].logprob
        results = []
        for unit in range(len(continuations)):
            totals = {}
            for choice, ids in choice_ids.items():
                totals[choice] = sum(step_logprob[(unit, tuple(ids[:i]), ids[i])] for i in range(len(ids)))
            results.append(totals)
        return results

    def _head_logprobs(
        self, continuations: Sequence[Continuation], choices: Sequence[str], head: ServedHead
    ) -> list[dict[str, float]]:
        """Log-probabilities at the box of the head's read-outs (`ServedHead.readout_tokens`), in one request per
        unit: `unsafe` minus `safe` is the decision head's score, `category:<code>` minus `safe` a category head's."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        token = head.readout_tokens
        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=[token[c] for c in choices])
        prompts = [TokensPrompt(prompt_token_ids=self._context_ids(c)) for c in continuations]
        results = []
        for output in self._llm.generate(prompts, params, use_tqdm=False):
            scored = output.outputs[0].logprobs[0]
            results.append({c: scored[token[c]].logprob for c in choices})
        return results
