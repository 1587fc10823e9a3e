"""Policy + conversation → the RSafe prompt. Pure functions; the only I/O-free home of the templates.

Two templates:
- `rsafe` (default): the RSafe authors' prompt for the unit's level (prompt-level judges the last `User:` turn,
  response-level judges the `Agent:` reply), with each category's description so a tenant's wording counts.
- `rsafe-categories`: the same, plus a request to list the violated category codes after the boxed verdict.

Content never breaks the template: `neutralize_content` defuses the template's own delimiters (`<think>`,
`</think>`, `<BEGIN …>`/`<END …>` lines, `\\boxed`, line-leading `User:`/`Agent:` speaker tags) inside messages.
System messages are operator configuration, not conversation content, and are left out of the block. Context
messages (`tool` output, an assistant's `tool_call`, a message of an `other` role; see `transforms.io.normalise`)
are lines of their own (`Tool: …`, `Tool call: …`, `Other: …`), never `User:`/`Agent:` turns.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from transforms.engines.special_tokens import break_special_tokens
from transforms.records import Message

if TYPE_CHECKING:
    from policies import ResolvedPolicy

TEMPLATES: dict[str, str] = {"rsafe": "rsafe-v1", "rsafe-categories": "rsafe-categories-v1"}
"""Template name → template_version recorded with every verdict (bump the version when the wording changes)."""

SPEAKERS = {"user": "User", "assistant": "Agent", "tool": "Tool", "tool_call": "Tool call", "other": "Other"}

_PROMPT_ROLE = (
    "You are a policy expert trying to help determine whether a user prompt is in violation of the "
    "defined safety policies."
)
_TASK = (
    "Task: Check if there is unsafe content in '{speaker}' messages in conversation according to our "
    "safety policy with the below categories."
)
_ASK = {
    "prompt": "Provide your safety assessment for the User's last message in the above conversation.",
    "response": ("Provide your safety assessment for the Agent's last response to the User in the above conversation."),
}
_THINK = (
    "You FIRST go through a step-by-step reasoning process and then provide the final answer. "
    "The thinking process MUST BE enclosed within <think> </think> tags."
)
_ANSWER = "Your final answer MUST BE put in \\boxed{{}}: 'safe' or 'unsafe'."
_CATEGORIES_ASK = (
    "If your answer is 'unsafe', after the box write one line 'Categories: ' followed by the codes of the "
    "violated categories, comma-separated (for example 'Categories: {example}')."
)

# Delimiters of the template that content must not be able to produce.
_TAG = re.compile(r"<(\s*/?\s*(?:think|begin|end)\b[^<>\n]*)>", re.IGNORECASE)
_BOXED = re.compile(r"\\+\s*boxed", re.IGNORECASE)
_SPEAKER_TAG = re.compile(r"(?im)^(\s*)(user|agent|assistant|system|tool(?:\s+call)?|other)(\s*):")
# Chat-template special tokens (`<|im_end|>`, `<|im_start|>`, `<|eot_id|>` …): the engine tokenises the chat-
# templated text with special tokens parsed, so content spelling one would end the user turn and fake a reply.
_SPECIAL_TOKEN = re.compile(r"<\|([^<>\n]*?)\|>")
# Other model families' turn markers (`--model` takes any HF model): Gemma `<start_of_turn>`/`<end_of_turn>`,
# Llama 2/Mistral `<s>`, `</s>`, `[INST]`, `<<SYS>>`, DeepSeek's full-width `<｜end▁of▁sentence｜>`.
_ANGLE_MARKER = re.compile(r"<(\s*/?\s*(?:s|start_of_turn|end_of_turn|bos|eos|pad|unk)\s*)>", re.IGNORECASE)
_BRACKET_MARKER = re.compile(r"\[(\s*/?\s*(?:INST|SYS|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS)\s*)\]", re.IGNORECASE)
_SYS_MARKER = re.compile(r"<<(\s*/?\s*SYS\s*)>>", re.IGNORECASE)
_FULLWIDTH_MARKER = re.compile(r"<｜([^<>\n]*?)｜>")
_BEGIN_CONVERSATION, _END_CONVERSATION = "\n<BEGIN CONVERSATION>\n", "\n<END CONVERSATION>\n"
_OMITTED = "[… {n} characters omitted …]"
_CONTEXT_ROLES = ("tool", "tool_call", "other")  # shortened before the user's and agent's turns


def template_version(template: str) -> str:
    """The recorded version of a template name; a clear error for an unknown name."""
    try:
        return TEMPLATES[template]
    except KeyError:
        raise ValueError(f"unknown template {template!r}; choose one of {sorted(TEMPLATES)}") from None


def neutralize_content(text: str) -> str:
    """Defuse template delimiters inside message content, keeping the text readable.

    `<think>`/`<BEGIN …>`-style tags get guillemets instead of angle brackets, `\\boxed` loses its backslash,
    a line that starts with a speaker tag (`Agent:`) gets a full-width colon, and chat-template special tokens
    (`<|im_end|>`, and other families' `<end_of_turn>`, `</s>`, `<<SYS>>`, `<｜…｜>`) get guillemets (`[INST]`
    full-width brackets), so content can neither end the thought, open a verdict box, close the conversation
    block, fake a turn nor leave the user message, whichever model's chat template wraps it.
    """
    # Each pattern needs a character most messages lack; no replacement adds one, so testing the input is exact.
    if "<" in text:
        text = _SPECIAL_TOKEN.sub(lambda m: f"‹|{m.group(1)}|›", text)
        text = _FULLWIDTH_MARKER.sub(lambda m: f"‹｜{m.group(1)}｜›", text)
        text = _SYS_MARKER.sub(lambda m: f"‹‹{m.group(1)}››", text)
        text = _ANGLE_MARKER.sub(lambda m: f"‹{m.group(1)}›", text)
    if "[" in text:
        text = _BRACKET_MARKER.sub(lambda m: f"［{m.group(1)}］", text)
    if "<" in text:
        text = _TAG.sub(lambda m: f"‹{m.group(1)}›", text)
    if "\\" in text:
        text = _BOXED.sub("[boxed]", text)
    if ":" not in text:
        return text
    return _SPEAKER_TAG.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}：", text)


def render_category_lines(policy: ResolvedPolicy) -> list[str]:
    """One line per category: `CODE - Name: description`."""
    lines = []
    for category in policy.categories:
        line = f"{category.code} - {category.name}: {category.description.strip()}"
        if category.examples:
            line += " Examples: " + "; ".join(e.strip() for e in category.examples) + "."
        lines.append(line)
    return lines


_CATEGORY_LINES: dict[str, tuple[str, ...]] = {}


def _category_lines(policy: ResolvedPolicy) -> tuple[str, ...]:
    """`render_category_lines`, memoised by policy version (a content hash): every unit of a tenant shares it."""
    lines = _CATEGORY_LINES.get(policy.version)
    if lines is None:
        lines = _CATEGORY_LINES[policy.version] = tuple(render_category_lines(policy))
    return lines


def render_turn(message: Message) -> str:
    """A conversation line: `User: …`, `Agent: …` or a context line (`Tool: …`), content neutralised."""
    return f"{SPEAKERS[message.role]}: {neutralize_content(message.content)}"


def render_from_lines(policy: ResolvedPolicy, conversation_lines: Sequence[str], level: str, template: str) -> str:
    """The full RSafe user message around an already-rendered conversation block."""
    template_version(template)
    if level not in _ASK:
        raise ValueError(f"unknown level {level!r}; expected 'prompt' or 'response'")
    parts = [_PROMPT_ROLE] if level == "prompt" else []
    parts.append(_TASK.format(speaker="User" if level == "prompt" else "Agent"))
    parts += ["", "<BEGIN UNSAFE CONTENT CATEGORIES>", *_category_lines(policy)]
    parts += ["<END UNSAFE CONTENT CATEGORIES>", "", _BEGIN_CONVERSATION.strip("\n"), ""]
    parts += [line + "\n" for line in conversation_lines]
    parts += [_END_CONVERSATION.strip("\n"), "", _ASK[level], _THINK, _ANSWER.format()]
    if template == "rsafe-categories":
        codes = [c.code for c in policy.categories][:2]
        parts.append(_CATEGORIES_ASK.format(example=", ".join(codes)))
    return "\n".join(parts)


def conversation_block(user_message: str) -> str:
    """The conversation block of a rendered RSafe user message: its `User:`/`Agent:`/context lines, as the guard
    reads them (content can spell no delimiter line: `neutralize_content`). What a text model beside the head reads."""
    end = user_message.rfind(_END_CONVERSATION)  # the last pair: a tenant's category text comes before them
    start = user_message.rfind(_BEGIN_CONVERSATION, 0, max(end, 0))
    if start < 0 or end < start:
        raise ValueError("not a rendered RSafe user message: no conversation block")
    return user_message[start + len(_BEGIN_CONVERSATION) : end].strip("\n")


def render_prompt(policy: ResolvedPolicy, messages: Sequence[Message], level: str, template: str = "rsafe") -> str:
    """The RSafe prompt judging the last message of `messages` at `level`, with no token budget applied."""
    return render_from_lines(policy, [render_turn(m) for m in messages if m.role != "system"], level, template)


@dataclasses.dataclass(frozen=True)
class FittedConversation:
    """A conversation block fitted into a token budget, and what fitting it cost."""

    lines: tuple[str, ...]
    turns_dropped: int
    judged_turn_cut: bool


def shorten_middle(text: str, keep_chars: int) -> str:
    """Keep the first and last halves of `keep_chars` characters, with a marker saying how much went."""
    if keep_chars >= len(text):
        return text
    keep_chars = max(keep_chars, 0)
    head, tail = text[: (keep_chars + 1) // 2], text[len(text) - keep_chars // 2 :] if keep_chars // 2 else ""
    return f"{head}{_OMITTED.format(n=len(text) - keep_chars)}{tail}"


def fit_conversation(
    messages: Sequence[Message],
    level: str,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    special_tokens: Sequence[str] = (),
) -> FittedConversation:
    """Fit the turns up to the judged one (the last of `messages`) into `budget_tokens`.

    Oldest turns go first (a marker line says how many); the turns that must stay (the judged one and, at
    response level, the user turn it answers and the tool lines between them) are then shortened in the
    middle: tool and other context lines first (longest first), then the turns in order, the judged one
    last; cutting the judged turn is reported as `judged_turn_cut`. `special_tokens`: the loaded tokenizer's
    special/added token strings (`transforms.engines.special_tokens`), broken wherever content spells one.
    """
    turns = [m for m in messages if m.role != "system"]
    keep = 1
    if level == "response":
        users = [i for i, m in enumerate(turns[:-1]) if m.role == "user"]
        keep = len(turns) - users[-1] if users else min(2, len(turns))
    lines = [break_special_tokens(render_turn(m), special_tokens) for m in turns]

    def total(candidate: Sequence[str]) -> int:
        return count_tokens("\n\n".join(candidate))

    dropped, size = 0, total(lines)
    while size > budget_tokens and len(lines) > keep:
        lines.pop(0)
        dropped += 1
        size = total(_with_marker(lines, dropped))
    if size <= budget_tokens:  # the common case: counted once, nothing to shorten
        return FittedConversation(tuple(_with_marker(lines, dropped)), dropped, False)
    judged_cut = False
    roles = [m.role for m in turns[dropped:]]
    order = sorted((i for i, r in enumerate(roles[:-1]) if r in _CONTEXT_ROLES), key=lambda i: -len(lines[i]))
    order += [i for i in range(len(lines)) if i not in order]
    for index in order:
        if total(_with_marker(lines, dropped)) <= budget_tokens:
            break
        lines[index] = _shorten_to_fit(lines, index, dropped, budget_tokens, total)
        judged_cut = judged_cut or index == len(lines) - 1
    return FittedConversation(tuple(_with_marker(lines, dropped)), dropped, judged_cut)


def _with_marker(lines: list[str], dropped: int) -> list[str]:
    return ([f"[{dropped} earlier turn(s) omitted]"] if dropped else []) + lines


def _shorten_to_fit(
    lines: list[str], index: int, dropped: int, budget: int, total: Callable[[Sequence[str]], int]
) -> str:
    """The longest middle-shortened version of `lines[index]` that fits the budget (binary search)."""
    speaker, _, content = lines[index].partition(": ")
    low, high = 0, len(content)
    while low < high:
        mid = (low + high + 1) // 2
        trial = [*lines[:index], f"{speaker}: {shorten_middle(content, mid)}", *lines[index + 1 :]]
        if total(_with_marker(trial, dropped)) <= budget:
            low = mid
        else:
            high = mid - 1
    return f"{speaker}: {shorten_middle(content, low)}"
