"""Model shapes: exact parameter counts (what transformers instantiates) and the shape rules."""

from __future__ import annotations

import pytest
import torch

from tongues.errors import TonguesError
from tongues.plan.shapes import ASPECT_MAX, ASPECT_MIN, ModelShape, shape_for_params


def _instantiated_params(shape: ModelShape) -> int:
    from transformers import LlamaForCausalLM

    with torch.device("meta"):  # parameters with shapes but no storage: exact count, no memory
        model = LlamaForCausalLM(shape.llama_config())
    return sum(p.numel() for p in model.parameters())  # tied weights are one Parameter, counted once


@pytest.mark.parametrize(
    "shape",
    [
        shape_for_params(2e5, 512, 128),
        shape_for_params(1.5e6, 2000, 256),
        shape_for_params(2e7, 8000, 512, tie_embeddings=False),
        shape_for_params(4.5e7, 32000, 1024),
        ModelShape(3, 256, 4, 2, 704, 1000, False, 128),  # grouped-query attention
    ],
    ids=["0.2M", "1.5M", "20M-untied", "45M", "gqa"],
)
def test_param_count_equals_transformers(shape):
    assert shape.param_count() == _instantiated_params(shape)
    assert shape.param_count(include_embeddings=False) == shape.param_count() - shape.embedding_params


def _check_rules(shape: ModelShape) -> None:
    tiny = shape.d_model < 512
    assert shape.d_model % (64 if tiny else 128) == 0
    assert shape.head_dim in ((32,) if tiny else (64, 128))
    assert shape.ffn_dim % (64 if tiny else 256) == 0
    assert (2 if tiny else 8 / 3) <= shape.ffn_dim / shape.d_model <= 4 + 256 / shape.d_model
    assert shape.n_heads * shape.head_dim == shape.d_model
    assert shape.n_heads % shape.n_kv_heads == 0
    assert ASPECT_MIN <= shape.aspect_ratio <= ASPECT_MAX


@pytest.mark.parametrize("vocab", [512, 8000, 32000])
def test_shapes_hit_targets_within_5_percent_and_follow_the_rules(vocab):
    targets = [t for t in (2e5, 6e5, 7e5, 2e6, 3e6, 1e7, 3e7, 1.2e8, 4e8, 1e9, 3e9, 7e9, 7e10, 4e11)
               if t > 4 * 64 * vocab]  # below that the embedding table alone is most of the target
    for target in targets:
        shape = shape_for_params(target, vocab, 2048)
        assert shape.param_count() == pytest.approx(target, rel=0.05), (target, shape)
        _check_rules(shape)
        if target >= 1e9:
            assert shape.n_kv_heads == 8
        assert shape.tie_embeddings == (target < 3.5e9)
    # deeper-and-narrower for small models, wider per layer for large ones (published families)
    assert shape_for_params(1e7, vocab, 2048).aspect_ratio < shape_for_params(7e10, vocab, 2048).aspect_ratio


def test_non_embedding_count_and_impossible_targets():
    shape = shape_for_params(1e8, 32000, 2048, count="non_embedding")
    assert shape.param_count(include_embeddings=False) == pytest.approx(1e8, rel=0.05)
    assert shape.param_count() > 1.1e8
    with pytest.raises(TonguesError, match="smaller vocabulary"):
        shape_for_params(1e5, 32000, 2048, strict=True)
    with pytest.raises(TonguesError, match="positive"):
        shape_for_params(-5, 32000, 2048)


def test_flops_per_token_matches_the_pretraining_loop():
    flops = pytest.importorskip("tongues.plan.flops")
    shape = ModelShape(3, 256, 4, 2, 704, 1000, False, 128)
    assert shape.flops_per_token(128) == pytest.approx(flops.flops_per_token(shape.llama_config(), 128))
    assert shape.matmul_params == shape.param_count() - 1000 * 256 - (2 * 3 + 1) * 256  # no input table, no norms
