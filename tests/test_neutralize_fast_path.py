"""`neutralize_content` skips the patterns whose trigger character is absent: same output as running them all."""

from __future__ import annotations

import random

from transforms.prompts import render as p

PIECES = ["<", "|", "im_end", ">", "[", "INST", "]", "<<", "SYS", ">>", "<｜", "｜>", "\\", "boxed", "\n", "User", ":"]
PIECES += [" ", "think", "/", "s", "end_of_turn", "Agent", "tool call", "x"]


def _every_pattern(text: str) -> str:
    text = p._SPECIAL_TOKEN.sub(lambda m: f"‹|{m.group(1)}|›", text)
    text = p._FULLWIDTH_MARKER.sub(lambda m: f"‹｜{m.group(1)}｜›", text)
    text = p._SYS_MARKER.sub(lambda m: f"‹‹{m.group(1)}››", text)
    text = p._ANGLE_MARKER.sub(lambda m: f"‹{m.group(1)}›", text)
    text = p._BRACKET_MARKER.sub(lambda m: f"［{m.group(1)}］", text)
    text = p._TAG.sub(lambda m: f"‹{m.group(1)}›", text)
    text = p._BOXED.sub("[boxed]", text)
    return p._SPEAKER_TAG.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}：", text)


def test_fast_path_matches_every_pattern() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        assert p.neutralize_content(text) == _every_pattern(text), text
