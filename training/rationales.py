"""Stage-1 targets: a short thought grounded in the judged text and the policy, then the verdict box.

No reasoning traces can be had offline, so the thought is built from the example itself: it quotes the start of
the judged message and names the policy's categories it is checked against, and it does **not** state the
decision. The decision is taken at the box. That is deliberate: after a templated thought that already says
"violates U3" or "no category applies", P(unsafe) read at the box is ~0 or ~1 and AUROC collapses toward
accuracy (measured in a probe: AUROC 0.44 / 0.66 on OpenAI Mod / ToxicChat); with the decision at the box, the
box's log-probabilities are the model's graded belief. With the `rsafe-categories` template an unsafe target
also names the violated codes after the box, which is where that template asks for them.
"""

from __future__ import annotations

import re

from transforms.prompts.render import neutralize_content

QUOTE_WORDS = 12
_SPACE = re.compile(r"\s+")


def quote(text: str, words: int = QUOTE_WORDS) -> str:
    """The first `words` words of a message on one line, neutralised (…-marked when cut)."""
    parts = _SPACE.sub(" ", neutralize_content(text)).strip().replace('"', "'").split(" ")
    head = " ".join(parts[:words])
    return head + ("…" if len(parts) > words else "")


def describe_codes(codes: tuple[str, ...]) -> str:
    """`U1–U18` for a run of the default codes in order, else the codes comma-separated."""
    expected = tuple(f"U{i}" for i in range(1, len(codes) + 1))
    if len(codes) > 3 and codes == expected:
        return f"{codes[0]}–{codes[-1]}"
    return ", ".join(codes)


def thought(level: str, judged_text: str, codes: tuple[str, ...]) -> str:
    """The thought's text (without tags): what is judged, against which categories."""
    who = "The User's last message" if level == "prompt" else "The Agent's reply"
    return (
        f'{who}: "{quote(judged_text)}". I check it against each of the policy\'s {len(codes)} categories '
        f"({describe_codes(codes)}), reading their descriptions and exclusions."
    )


def target(level: str, judged_text: str, codes: tuple[str, ...], label: str, violated: tuple[str, ...] = ()) -> str:
    """The full stage-1 completion: `<think>…</think>`, the box, and for the categories template the codes."""
    text = f"<think>\n{thought(level, judged_text, codes)}\n</think>\n\\boxed{{{label}}}"
    if violated and label == "unsafe":
        text += "\nCategories: " + ", ".join(violated)
    return text
