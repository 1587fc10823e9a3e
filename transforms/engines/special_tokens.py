"""The loaded tokenizer's own special and added token strings, and content that can no longer spell them.

vLLM tokenises the chat-templated prompt with special tokens parsed, and a tokenizer matches its added tokens
literally anywhere in the text, so content that spells one (`<|im_end|>`, SmolLM2's `<filename>`, Qwen's
`<tool_call>`) would become that token: end the user turn, fake a reply or a tool call. `transforms.prompts.render`
already defuses the common chat-template markers of every family by pattern; this covers whatever else the model
actually loaded defines. A word joiner (U+2060, invisible) after a token's first character breaks the literal
match while the text stays readable.
"""

from __future__ import annotations

from collections.abc import Iterable

WORD_JOINER = "\u2060"


def special_token_strings(tokenizer) -> tuple[str, ...]:
    """Every special and added token string of an HF tokenizer that content could spell, longest first.

    Plain words and whitespace-only tokens are left out (a tokenizer that adds the word `hello` does not make the
    word dangerous; breaking it would only garble text)."""
    found = set(getattr(tokenizer, "all_special_tokens", ()) or ())
    for token in getattr(tokenizer, "added_tokens_decoder", {}).values():
        found.add(getattr(token, "content", str(token)))
    return tuple(sorted((t for t in found if _could_be_markup(t)), key=lambda t: (-len(t), t)))


def _could_be_markup(token: str) -> bool:
    return len(token) >= 2 and not token.isspace() and not token.replace("_", "").isalnum()


def break_special_tokens(text: str, tokens: Iterable[str]) -> str:
    """`text` with every occurrence of each token string broken by a word joiner after its first character."""
    for token in tokens:
        if token in text:
            text = text.replace(token, token[0] + WORD_JOINER + token[1:])
    return text
