"""Pure parts of the stage validation: metrics of judged records, and which prompts are worth a GRPO group."""

import pytest

from training.validate import informative, score_records

RIGHT_UNSAFE = "<think>x</think>\n\\boxed{unsafe}"
RIGHT_SAFE = "<think>x</think>\n\\boxed{safe}"


def test_score_records_reward_format_f1_auroc():
    records = [{"label": "unsafe"}, {"label": "unsafe"}, {"label": "safe"}, {"label": "safe"}]
    outputs = [
        (RIGHT_UNSAFE, "unsafe", 0.9),
        ("no box at all", "parse_error", None),
        (RIGHT_SAFE, "safe", 0.2),
        (RIGHT_UNSAFE, "unsafe", 0.6),
    ]
    report = score_records(records, outputs)
    assert report["mean_reward"] == pytest.approx((1.0 + 0.0 + 1.0 + 0.1) / 4)
    assert report["format_rate"] == pytest.approx(0.75)
    assert report["boxed_rate"] == pytest.approx(0.75)
    assert report["f1"] == pytest.approx(0.5)  # tp 1, fn 1 (the unparsed one), fp 1
    assert report["auroc"] == pytest.approx(1.0)  # ranks: unsafe 0.9 above both safe items


def test_informative_prompts_are_wrong_unparsed_or_uncertain():
    assert not informative({"label": "unsafe"}, (RIGHT_UNSAFE, "unsafe", 0.97))
    assert informative({"label": "unsafe"}, (RIGHT_UNSAFE, "unsafe", 0.6))  # uncertain: sampled answers differ
    assert informative({"label": "safe"}, (RIGHT_UNSAFE, "unsafe", 0.97))  # confidently wrong
    assert informative({"label": "safe"}, ("garbage", "parse_error", None))
