"""The RSafe user message → the model's input text, through the model's own chat template.

One copy for serving (`transforms.vllm_engine`) and training (`training.dataset`), so the guard is trained on
exactly the token sequence it is served: one user message, no custom system prompt (the template's own default
applies), the generation prompt, then an optional assistant prefix (e.g. an opened `<think>`).
"""

from __future__ import annotations

from typing import Any


def chat_prompt_text(tokenizer: Any, user_message: str, assistant_prefix: str = "") -> str:
    """The chat-templated text the engine generates from, for one RSafe user message."""
    chat = [{"role": "user", "content": user_message}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return text + assistant_prefix
