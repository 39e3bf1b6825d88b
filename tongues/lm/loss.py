"""Next-token loss computed with the LM head, chunk by chunk, without materializing the logits.

A causal LM's last step turns hidden states (N tokens x H) into logits (N x V) and then into a
cross-entropy. With V in the tens of thousands the logits dominate activation memory (N=16k tokens,
V=32k: 2 GiB in fp32, and autograd keeps them for the backward pass) and their softmax passes
dominate the non-matmul time. Here the head's matmul, the log-sum-exp and the gradient are done
for `chunk` tokens at a time, inside the forward pass: what is kept for backward is the gradient
of the hidden states and of the head's weight, never the logits. The backward pass only scales
them. Same FLOPs as the plain path (one matmul forward, two for the gradient).

`install_chunked_loss(model)` makes a Hugging Face causal LM compute this loss in its own forward
(through DDP, FSDP and torch.compile wrappers, which must see the head's weight used inside the
model's forward): `model(input_ids=x, labels=targets).loss` is then the *sum* of nats over the
targets that are not -100, and `.logits` holds no logits.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The matmul dtype: autocast's where it is on (bf16 in mixed precision), else the input's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows i with targets[i] != -100 of -log softmax(hidden[i] @ weight.T)[targets[i]]."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                dtype: torch.dtype, grads: bool) -> torch.Tensor:
        h, w = hidden.to(dtype), weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(h) if grads else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if grads else None
        for start in range(0, h.shape[0], chunk):
            hc, tc = h[start : start + chunk], targets[start : start + chunk]
            valid = tc != IGNORE
            tc = tc.masked_fill(~valid, 0)
            logits = (hc @ w.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, tc[:, None]).squeeze(1)
            total = total + torch.where(valid, lse - picked, 0.0).sum()
            if grads:  # d(sum of nats)/d logits = softmax - one_hot, zero on ignored rows
                g = torch.exp_(logits.sub_(lse[:, None]))
                g.scatter_add_(1, tc[:, None], torch.full_like(lse[:, None], -1.0))
                g = g.mul_(valid[:, None]).to(dtype)
                grad_h[start : start + chunk] = g @ w
                grad_w += (g.T @ hc).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple:
        grad_h, grad_w = ctx.saved_tensors
        dh = (grad_h * grad_total).to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        dw = (grad_w * grad_total).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return dh, dw, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = 1024) -> torch.Tensor:
    """Sum of next-token nats of `hidden` (..., H) under the head `weight` (V, H) against `targets`
    (...; -100 = ignored), in fp32; matmuls in autocast's dtype when autocast is on."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    dtype = _compute_dtype(hidden.device, hidden.dtype)
    # Inside forward grad mode is off and needs_input_grad ignores no_grad: decide here whether the
    # gradient is wanted (not under torch.no_grad, as in evaluation: the loss alone, a third of the work).
    grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(hidden.flatten(0, -2), weight, targets.flatten(), chunk, dtype, grads)


def _passthrough(hidden_states: torch.Tensor) -> torch.Tensor:
    return hidden_states


def install_chunked_loss(model: Any, chunk: int = 1024) -> Any:
    """Make the Hugging Face causal LM `model` return the chunked loss (sum of nats) as `.loss` when
    called with `labels` (already shifted: labels[t] is the target of position t). Parameter
    names and the state dict are unchanged; only this model object's forward behaves differently."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError(f"{type(model).__name__}: the chunked loss needs a bias-free output embedding")

    def loss_function(logits: torch.Tensor, labels: torch.Tensor, **_: Any) -> torch.Tensor:
        return linear_cross_entropy(logits, head.weight, labels, chunk)  # `logits` are the hidden states

    head.forward = _passthrough
    model.loss_function = loss_function
    return model
