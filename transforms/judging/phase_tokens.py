"""What each judging phase sends after the prompt, and the context a unit needs for every phase it may go through.

One copy for the phases (`transforms.judging.decisions`, `transforms.judging.cascade`) and the `prompt_too_long` check
(`transforms.judging.judge_dofn`), so the check counts exactly the token sequences the engine is sent:
- phase 1 (`forced`, the cascade's score pass): the prompt with an opened thought (`THINK_OPEN`); free and auto
  generation: the prompt alone. Then up to the generation limit.
- phase 2: the kept thought, then `verdict_opening`'s suffix (a thought the budget cut: `\\n</think>\\n\\boxed{`),
  then the verdict scored token by token (`unsafe` is two tokens in SmolLM2's vocabulary; one request with a
  decision head). The score pass sends `EMPTY_THOUGHT` instead of a thought.
- phase 3 (the categories template): the kept thought, `categories_suffix`, then `CATEGORY_TOKENS` generated.
vLLM rejects a request whose prompt plus its requested tokens exceed the model's context, so a unit fits when
every request it may send does (`context_passes`, `tokens_needed`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

from transforms.engines.chat_format import BOX_OPEN, EMPTY_THOUGHT, THINK_CLOSE, THINK_OPEN
from transforms.judging.verdict_parsing import VERDICTS

CATEGORIES_CUE = "\nCategories:"
CATEGORY_TOKENS = 24  # phase 3's generation limit


def verdict_opening(generated: str) -> tuple[int, str]:
    """Where phase 2 starts: (characters of the generated text to keep, text to append).

    The thought ends at the model's first `</think>` (text after it, which had no usable box, is dropped);
    an unclosed thought is closed. Either way the verdict box is opened. Only the model's own text is read
    here: message content sits in the prompt, neutralised, and cannot close the thought.
    """
    end = generated.find(THINK_CLOSE)
    if end != -1:
        return end + len(THINK_CLOSE), "\n" + BOX_OPEN
    return len(generated), "\n" + THINK_CLOSE + "\n" + BOX_OPEN


def categories_suffix(box_suffix: str) -> str:
    """What phase 3 appends after the kept thought: the box opening (`verdict_opening`'s suffix, or
    `EMPTY_THOUGHT` after the score pass), the `unsafe` verdict and the `Categories:` cue."""
    return box_suffix + "unsafe}" + CATEGORIES_CUE


@dataclasses.dataclass(frozen=True)
class ContextPass:
    """One generation a unit may go through: the assistant prefix its prompt is sent with, and the most tokens
    any request of that generation adds after the prompt (sent suffixes and requested tokens together)."""

    assistant_prefix: str
    tokens_after_prompt: int


@functools.lru_cache(maxsize=64)
def context_passes(
    verdict_mode: str,
    generation_limit: int,
    extract_categories: bool,
    count_tokens: Callable[[str], int],
    decision_head: bool,
) -> tuple[ContextPass, ...]:
    """The generations a unit may go through in `verdict_mode`. `generation_limit`: the reasoning budget in
    `forced` mode, the free-generation limit otherwise. `count_tokens`: the model's tokens in a text as the engine
    encodes a suffix (no special tokens). With a `decision_head` every verdict is scored in one request.

    The worst case is counted: the whole generation limit used, and a thought the budget cut (its closing suffix
    is the longer one; a thought the model closed keeps its `</think>` and sends only `\\n\\boxed{`).
    """
    scored = 1 if decision_head else max(count_tokens(choice) for choice in VERDICTS)
    cut_box = verdict_opening("")[1]  # the suffix after a thought the budget cut
    after_box = [count_tokens(cut_box) + scored]
    if extract_categories:
        after_box.append(count_tokens(categories_suffix(cut_box)) + CATEGORY_TOKENS)
    score_pass = [count_tokens(EMPTY_THOUGHT) + scored, 1]  # the probe generates one token
    if extract_categories:
        score_pass.append(count_tokens(categories_suffix(EMPTY_THOUGHT)) + CATEGORY_TOKENS)
    score = ContextPass(THINK_OPEN, max(score_pass))
    reasoned = {
        "forced": ContextPass(THINK_OPEN, generation_limit + max(after_box)),
        "free": ContextPass("", generation_limit),  # the model's own box is scored inside its text, which is longer
        "auto": ContextPass("", generation_limit + max(after_box)),  # a unit without a box is forced
    }
    if verdict_mode == "score":
        return (score,)
    if verdict_mode == "cascade":  # units in the band (with a head, flagged ones too) are reasoned in `auto`
        return (score, reasoned["auto"])
    if decision_head:  # a reasoned mode with a head: the head decides from the score pass, the reasoning is a trace
        return (score, reasoned[verdict_mode])
    return (reasoned[verdict_mode],)


def tokens_needed(
    prompts: Sequence[str],
    passes: Sequence[tuple[ContextPass, ...]],
    count_prompt_tokens: Callable[[Sequence[str], str], list[int]],
) -> list[int]:
    """The context each prompt needs: its longest request over its `passes` (one tuple per prompt), the prompt
    counted with each pass's assistant prefix by `count_prompt_tokens` (the engine's own, as it sends them)."""
    prefixes = sorted({p.assistant_prefix for unit_passes in passes for p in unit_passes})
    lengths = {prefix: count_prompt_tokens(prompts, prefix) for prefix in prefixes}
    return [
        max(lengths[p.assistant_prefix][i] + p.tokens_after_prompt for p in unit_passes)
        for i, unit_passes in enumerate(passes)
    ]
