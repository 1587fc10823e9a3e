"""The RSafe user message → the model's input text, through the model's own chat template.

One copy for serving (`transforms.engines.vllm_engine`) and training (`training.dataset`), so the guard is trained on
exactly the token sequence it is served: one user message, no custom system prompt (the template's own default
applies), the generation prompt, then an optional assistant prefix (e.g. an opened `<think>`).
"""

from __future__ import annotations

from typing import Any

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>"
BOX_OPEN = "\\boxed{"
EMPTY_THOUGHT = "\n" + THINK_CLOSE + "\n" + BOX_OPEN  # after THINK_OPEN: `<think>\n\n</think>\n\boxed{`


def chat_prompt_text(tokenizer: Any, user_message: str, assistant_prefix: str = "") -> str:
    """The chat-templated text the engine generates from, for one RSafe user message."""
    chat = [{"role": "user", "content": user_message}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return text + assistant_prefix


def score_position_ids(tokenizer: Any, user_message: str) -> list[int]:
    """The token ids up to where the cascade's score pass reads P(unsafe): the chat-templated prompt with an
    opened thought, then the empty thought and the opened box, each encoded as the vLLM engine sends them (the
    prompt and the continuation are encoded separately and concatenated). The decision head is trained on the
    hidden state at the last of these tokens."""
    prompt = tokenizer.encode(chat_prompt_text(tokenizer, user_message, THINK_OPEN), add_special_tokens=False)
    return [*prompt, *tokenizer.encode(EMPTY_THOUGHT, add_special_tokens=False)]
