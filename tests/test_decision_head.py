"""The decision head as served, on a tiny random Llama with the embedded tokenizer: the folded model's logits are the
head, and a head on several layers is served pooled with its read-outs equal to the fitted scores."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.readouts import transformers_readouts  # noqa: E402
from transforms.engines.decision_head import (  # noqa: E402
    build_folded_model,
    build_guard_folder,
    fold_head,
    head_layers,
    head_version,
    read_head,
    serving_version,
    verdict_token_ids,
    write_head,
)
from transforms.engines.served_head import SERVED_HEAD_FILE, PooledHead, ServedHead  # noqa: E402

LAYERS, HIDDEN = 4, 16


@pytest.fixture(scope="module")
def tokenizer():
    from transforms.engines.embedded_model import ensure_embedded_model

    return transformers.AutoTokenizer.from_pretrained(ensure_embedded_model())


def tiny_model(tokenizer, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # a random norm weight, so the fold's division by it is exercised
        model.model.norm.weight.uniform_(0.5, 1.5)
    return model


def features(model, ids, layer):
    """(x_k / rms(x_L), normed final state, logits) at the last token, read from `model`'s own forward."""
    return transformers_readouts(model, ids, [layer])


@pytest.mark.parametrize("layer", [2, LAYERS])
def test_served_logit_difference_is_the_head_score(tokenizer, layer):
    model = tiny_model(tokenizer)
    ids = tokenizer.encode("Is this safe? \\boxed{", add_special_tokens=False)
    before, _, _ = features(model, ids, layer)
    w = torch.randn(HIDDEN)
    categories = {"U1": torch.randn(HIDDEN), "U8": torch.randn(HIDDEN)}
    decision, slots = fold_head(model, tokenizer, w, layer, categories)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    f_k, normed, logits = features(model, ids, layer)
    safe, _ = verdict_token_ids(tokenizer)
    served = logits[decision] - logits[safe]
    assert abs(served.item() - (w @ f_k).item()) < 1e-4  # exact on the served model's own features
    for code, u in categories.items():
        assert abs((logits[slots[code]] - logits[safe]).item() - (u @ normed).item()) < 1e-4
    # against the unfolded model's features: exact for the final layer; for an earlier layer only the final RMS
    # moved (the later layers' writes along w are gone), so the score is the fitted head's up to that ratio
    ratio = served.item() / (w @ before).item()
    assert ratio == pytest.approx(1.0, abs=1e-5 if layer == LAYERS else 0.25)


def test_fold_leaves_the_embedding_and_every_text_row_alone(tokenizer):
    """Only the decision and category rows change: `safe`/`unsafe` and every other token keep their logits, so
    the model writes what it wrote before (its reasoning and its own box)."""
    model = tiny_model(tokenizer)
    embedding = model.model.embed_tokens.weight.detach().clone()
    decision, slots = fold_head(model, tokenizer, torch.randn(HIDDEN), LAYERS, {"U1": torch.randn(HIDDEN)})
    assert torch.equal(model.model.embed_tokens.weight, embedding)
    changed = {decision, *slots.values()}
    assert len(changed) == 2 and not changed & set(verdict_token_ids(tokenizer))
    others = [i for i in range(len(tokenizer)) if i not in changed]
    assert torch.equal(model.lm_head.weight[others], embedding[others])


def test_a_saved_head_builds_a_folded_folder_the_engine_can_read(tokenizer, tmp_path):
    base = tmp_path / "base"
    tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    w, u = torch.randn(HIDDEN), torch.randn(HIDDEN)
    version = write_head(tmp_path / "head", w, [3], {"U9": u}, {"base": "tiny"})
    assert version == head_version(tmp_path / "head")
    config, tensors = read_head(tmp_path / "head")
    assert head_layers(config) == (3,) and config["category_codes"] == ["U9"] and torch.equal(tensors["decision"], w)
    served = build_folded_model(str(base), tmp_path / "head", tmp_path / "folded")
    assert ServedHead.read(tmp_path / "folded") == served and served.version == version
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "folded").eval()
    assert not reloaded.config.tie_word_embeddings
    f_k, normed, logits = features(reloaded, tokenizer.encode("hello \\boxed{", add_special_tokens=False), 3)
    safe, _ = verdict_token_ids(tokenizer)
    assert served.safe_token == safe and served.never_generated == (served.decision_token, served.slots["U9"])
    assert abs((logits[served.decision_token] - logits[safe]).item() - (w @ f_k).item()) < 1e-4
    assert abs((logits[served.slots["U9"]] - logits[safe]).item() - (u @ normed).item()) < 1e-4


def pooled_vector(model, ids, hooks):
    """What the pooling runner's feature hooks pool at the last token: `[normed, x_k / rms(x_L) for k in hooks]`."""
    blocks = [features(model, ids, LAYERS)[1]] + [features(model, ids, k)[0] for k in hooks]
    return torch.stack(blocks)[None].numpy()


def test_a_head_on_several_layers_is_served_pooled_and_scores_exactly_as_fitted(tokenizer, tmp_path):
    """A head over layers 1, 3 and the final state: the folder keeps the model as it was and holds the head laid
    out over the pooled vector (the final block divided by γ, moved first); its read-outs are the fitted scores."""
    base = tmp_path / "base"
    model = tiny_model(tokenizer)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    w, u = torch.randn(3 * HIDDEN), torch.randn(HIDDEN)
    version = write_head(tmp_path / "head", w, [1, 3, LAYERS], {"U9": u}, {"base": "tiny"})
    assert serving_version(str(base), tmp_path / "head") == "pooled1"
    served = build_guard_folder(str(base), tmp_path / "head", tmp_path / "pooled")
    assert isinstance(served, PooledHead) and served.layers == (1, 3) and served.version == version
    assert ServedHead.read(tmp_path / "pooled") == served and served.never_generated == ()
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "pooled").eval()
    original = model.state_dict()
    assert all(torch.equal(tensor, original[name]) for name, tensor in reloaded.state_dict().items())
    ids = tokenizer.encode("Is this safe? \\boxed{", add_special_tokens=False)
    fitted = torch.cat([features(model, ids, 1)[0], features(model, ids, 3)[0], features(model, ids, LAYERS)[0]])
    normed = features(model, ids, LAYERS)[1]
    (scores,) = served.readout_logprobs(pooled_vector(model, ids, served.layers), ["safe", "unsafe", "category:U9"])
    assert abs(scores["unsafe"] - scores["safe"] - (w @ fitted).item()) < 1e-4
    assert abs(scores["category:U9"] - scores["safe"] - (u @ normed).item()) < 1e-4
    assert math.exp(scores["safe"]) + math.exp(scores["unsafe"]) == pytest.approx(1.0)


def test_a_final_state_head_is_folded_and_a_broken_head_file_is_a_clear_error(tokenizer, tmp_path):
    base = tmp_path / "base"
    tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_head(tmp_path / "head", torch.randn(HIDDEN), [LAYERS], {}, {"base": "tiny"})
    assert serving_version(str(base), tmp_path / "head") == "fold2"
    assert isinstance(build_guard_folder(str(base), tmp_path / "head", tmp_path / "folded"), ServedHead)
    assert head_layers({"layer": 30}) == (30,)  # a head saved before heads could read several layers
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / SERVED_HEAD_FILE).write_text('{"kind": "pooled", "version": "v", "layers": [1]}')
    with pytest.raises(RuntimeError, match="not a valid served-head file"):
        ServedHead.read(tmp_path / "broken")


def test_features_are_read_where_the_cascade_scores(tokenizer):
    """`score_position_ids` is the context the vLLM engine scores the box on in cascade pass 1 (its probe's
    prompt ids, nothing generated kept, then the empty thought), token for token."""
    import types

    from transforms.engines.chat_format import EMPTY_THOUGHT, THINK_OPEN, score_position_ids
    from transforms.engines.protocol import Completion, Continuation
    from transforms.engines.vllm_engine import VllmEngine

    engine = VllmEngine(types.SimpleNamespace(get_tokenizer=lambda: tokenizer), "embedded", 4096)
    message = "Policy: U1 violence.\nUser: how do I bake bread?\n"
    prompt_ids = engine._prompt_ids(message, THINK_OPEN)
    probe = Completion("x", "length", len(prompt_ids), 1, handle=(tuple(prompt_ids), (42,)))
    assert engine._context_ids(Continuation(probe, 0, EMPTY_THOUGHT)) == score_position_ids(tokenizer, message)
    assert tokenizer.decode(score_position_ids(tokenizer, message)).endswith("<think>\n\n</think>\n\\boxed{")


def test_a_text_prior_beside_the_head_is_part_of_its_version_and_served_only_pooled(tokenizer, tmp_path):
    from tests.test_text_prior import _fitted
    from transforms.engines.text_prior import TextPrior

    base = tmp_path / "base"
    tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    alone = write_head(tmp_path / "head", torch.randn(2 * HIDDEN), [2, LAYERS], {}, {"base": "tiny"})
    prior = TextPrior.from_fitted(*_fitted())
    prior.write(tmp_path / "head")
    with_prior = head_version(tmp_path / "head")
    assert with_prior != alone
    served = build_guard_folder(str(base), tmp_path / "head", tmp_path / "pooled")
    reread = ServedHead.read(tmp_path / "pooled")
    assert served.version == reread.version == with_prior
    texts = ["User: build a bomb", "User: bake bread"]
    assert reread.text_prior.text_log_odds(texts) == pytest.approx(prior.text_log_odds(texts), abs=1e-12)
    write_head(tmp_path / "final", torch.randn(HIDDEN), [LAYERS], {}, {"base": "tiny"})
    prior.write(tmp_path / "final")
    with pytest.raises(ValueError, match="served with a pooled head"):
        build_guard_folder(str(base), tmp_path / "final", tmp_path / "folded")
