"""RSafe's reward: format, accuracy only under format, 0.9/0.1 weights, last box, pre-filled <think>."""

import pytest

from training.rewards import (
    accuracy_reward_func,
    boxed_answer,
    format_reward_func,
    format_score,
    rsafe_reward,
    rsafe_reward_func,
)


@pytest.mark.parametrize(
    ("completion", "label", "expected"),
    [
        ("<think>it asks for a bomb</think>\n\\boxed{unsafe}", "unsafe", 1.0),
        ("<think>x</think>\\boxed{safe}", "unsafe", 0.1),
        ("<think>x</think>\\boxed{Unsafe}", "unsafe", 1.0),  # the authors lower-case the box
        ("<think>x</think>\\boxed{ unsafe }", "unsafe", 1.0),
        ("\\boxed{unsafe}", "unsafe", 0.0),  # no thought: malformed, accuracy does not count
        (" <think>x</think>\\boxed{unsafe}", "unsafe", 0.0),  # text before <think> fails the format
        ("Sure. <think>x</think>\\boxed{unsafe}", "unsafe", 0.0),
        ("<think>x\\boxed{unsafe}", "unsafe", 0.0),  # unclosed thought
        ("<think>x</think>unsafe", "unsafe", 0.0),  # no box
        ("<think>x</think>\\boxed{safe} then \\boxed{unsafe}", "unsafe", 1.0),  # the last box counts
        ("<think>x</think>\\boxed{unsafe} then \\boxed{safe}", "unsafe", 0.1),
        ("<think>x</think>\\boxed{\\text{unsafe}}", "unsafe", 0.1),  # nested braces: content is \text{unsafe}
        ("<think>a\nb</think>\n\n\\boxed{safe}\nCategories: none", "safe", 1.0),  # DOTALL, text after the box
        ("<think></think>\\boxed{}", "safe", 0.1),  # well-formed, empty answer
        ("<think>x</think>\\boxed{maybe}", "safe", 0.1),
    ],
)
def test_reward_semantics(completion, label, expected):
    assert rsafe_reward(completion, label) == pytest.approx(expected)


def test_prefilled_think_is_put_back():
    completion = "the user asks for weather</think>\n\\boxed{safe}"
    assert format_score(completion) == 0.0
    assert format_score(completion, think_prefilled=True) == 1.0
    assert rsafe_reward(completion, "safe", think_prefilled=True) == pytest.approx(1.0)
    assert rsafe_reward(completion, "unsafe", think_prefilled=True) == pytest.approx(0.1)


def test_an_unclosed_last_box_is_no_answer_as_in_the_authors_scorer():
    # the format regex still matches the earlier closed box, but the answer is the last `\boxed{`: unclosed
    completion = "<think>x</think>\\boxed{safe} \\boxed{uns"
    assert format_score(completion) == 1.0
    assert boxed_answer(completion) is None
    assert rsafe_reward(completion, "safe") == pytest.approx(0.1)
    assert boxed_answer("no box") is None


def test_trl_reward_functions_take_batches_and_messages():
    completions = [
        "<think>x</think>\\boxed{unsafe}",
        [{"role": "assistant", "content": "<think>x</think>\\boxed{safe}"}],
        "\\boxed{safe}",
    ]
    labels = ["unsafe", "unsafe", "safe"]
    assert rsafe_reward_func(completions, label=labels, prompts=["p"] * 3) == pytest.approx([1.0, 0.1, 0.0])
    assert format_reward_func(completions) == [1.0, 1.0, 0.0]
    assert accuracy_reward_func(completions, label=labels) == [1.0, 0.0, 0.0]
