"""The head's read-outs computed independently of vLLM, from a transformers forward: what tests compare served
scores with."""

from __future__ import annotations

from collections.abc import Sequence


def transformers_readouts(model, ids: Sequence[int], layers: Sequence[int]):
    """(`x_k / rms(x_L)` for each of `layers`, concatenated; the normed final state; the logits) at the last token of
    `ids`. Hidden state k is the output of layer k; k = L is the final residual stream (the final norm's input)."""
    import torch

    captured = {}
    hook = model.model.norm.register_forward_hook(lambda m, args, out: captured.update(stream=args[0], normed=out))
    with torch.no_grad():
        out = model(torch.tensor([list(ids)]), output_hidden_states=True)
    hook.remove()
    stream = captured["stream"][0, -1]
    rms = torch.sqrt(stream.pow(2).mean() + model.config.rms_norm_eps)
    last = model.config.num_hidden_layers
    blocks = [(stream if k == last else out.hidden_states[k][0, -1]) / rms for k in layers]
    return torch.cat(blocks), captured["normed"][0, -1], out.logits[0, -1]
