"""The chunked LM-head loss: same nats and gradients as the plain logits path, in any chunking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tongues.lm.loss import install_chunked_loss, linear_cross_entropy
from tongues.plan.memory import default_chunk


def _case(seed: int = 0, n: int = 37, h: int = 16, v: int = 50):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, n, h, generator=g, requires_grad=True)
    weight = torch.randn(v, h, generator=g, requires_grad=True)
    targets = torch.randint(0, v, (2, n), generator=g)
    targets[0, :5] = -100  # ignored positions (padding in evaluation windows)
    return hidden, weight, targets


def tiny_llama(tied: bool = True):
    from tongues.lm.config import PretrainConfig
    from tongues.lm.pretrain import build_model, model_config

    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "tie_word_embeddings": tied}
    return build_model(model_config(PretrainConfig(model=shape, seq_len=32), vocab_size=90), seed=0)


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("chunk", [1, 10, 37, 74, 1000])
def test_nats_and_gradients_equal_plain_cross_entropy(chunk):
    hidden, weight, targets = _case()
    plain = F.cross_entropy((hidden @ weight.T).flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")
    chunked = linear_cross_entropy(hidden, weight, targets, chunk=chunk)
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-4)
    # a non-unit upstream gradient is applied in backward (the loss is divided by a token count)
    for got, want in zip(_grads(chunked * 0.37, hidden, weight), _grads(plain * 0.37, hidden, weight), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_no_grad_computes_the_loss_alone():
    """Under torch.no_grad (evaluation) only the head's forward matmul runs: a third of the FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    hidden, weight, targets = _case()
    counted = {}
    for grad in (True, False):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            value = linear_cross_entropy(hidden, weight, targets, chunk=10)
        counted[grad] = (counter.get_total_flops(), value.detach())
    forward = 2 * hidden.shape[0] * hidden.shape[1] * hidden.shape[2] * weight.shape[0]
    assert counted[False][0] == forward and counted[True][0] == 3 * forward
    torch.testing.assert_close(counted[False][1], counted[True][1])


def test_ignored_targets_get_no_gradient():
    hidden, weight, targets = _case()
    targets[1] = -100
    (grad_h,) = _grads(linear_cross_entropy(hidden, weight, targets, chunk=8), hidden)
    assert grad_h[1].abs().max() == 0 and grad_h[0, 5:].abs().max() > 0


def test_bf16_autocast_matches_the_autocast_logits_path():
    hidden, weight, targets = _case(n=64, h=32, v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.cross_entropy((hidden @ weight.T).float().flatten(0, 1), targets.flatten(), reduction="sum")
        chunked = linear_cross_entropy(hidden, weight, targets, chunk=16)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, plain, rtol=2e-3, atol=0)
    got, want = _grads(chunked, weight), _grads(plain, weight)
    assert got[0].dtype == torch.float32  # the master weight's dtype, not bf16
    torch.testing.assert_close(got[0], want[0], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("tied", [True, False])
def test_installed_on_a_llama_it_matches_the_logits_path_and_keeps_the_state_dict(tied):
    plain, fused = tiny_llama(tied), tiny_llama(tied)
    keys = list(fused.state_dict())
    install_chunked_loss(fused, chunk=7)
    assert list(fused.state_dict()) == keys  # checkpoints and exports are unaffected
    ids = torch.randint(0, plain.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(1))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    want = F.cross_entropy(plain(input_ids=inputs).logits.flatten(0, 1), targets.flatten(), reduction="sum")
    got = fused(input_ids=inputs, labels=targets).loss
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    want.backward()
    got.backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_default_chunk_scales_with_vocabulary_and_device():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert default_chunk(cpu, 8000) == 256 and default_chunk(cpu, 256_000) == 64
    assert default_chunk(gpu, 32000) == 2048 > default_chunk(cpu, 32000)


def test_bad_arguments_are_refused():
    hidden, weight, targets = _case()
    with pytest.raises(ValueError, match="chunk must be positive"):
        linear_cross_entropy(hidden, weight, targets, chunk=0)
    model = tiny_llama()
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
    with pytest.raises(ValueError, match="bias-free"):
        install_chunked_loss(model)
