"""The distillation loss of the pretraining loop, chunked like the LM loss so no N x V logits are kept.

    loss = alpha * CE(student, targets) + (1 - alpha) * T^2 * D(teacher_T || student_T)

over every target position, where the teacher is given by its cached top-k log-probabilities at
temperature T plus the log of the mass left over (`tongues.lm.teacher_cache`), and the student's
distribution is compared on the same k + 1 buckets (its probabilities of the teacher's k tokens and
the rest). D is the objective: "fkl" (forward KL, Hinton et al.), "rkl" (reverse KL, mode seeking,
as MiniLLM), or "jsd:beta" (generalized Jensen-Shannon, GKD's beta: beta=0.5 symmetric).

Each chunk of positions runs under activation checkpointing: its logits are recomputed in
backward instead of stored, so memory stays one chunk of logits (the price is one more head matmul
per chunk). Under torch.no_grad (validation) only the cross-entropy is computed: validation loss and
bits per byte stay the student's own, comparable with a model trained without a teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tongues.errors import ConfigError

OBJECTIVES = ("fkl", "rkl", "jsd")


@dataclass(frozen=True)
class KDSettings:
    alpha: float = 0.5  # weight of the cross-entropy on the true next token
    temperature: float = 1.0
    objective: str = "fkl"  # fkl | rkl | jsd:beta
    chunk: int = 1024

    @property
    def kind(self) -> str:
        return self.objective.split(":", 1)[0]

    @property
    def beta(self) -> float:
        return float(self.objective.split(":", 1)[1]) if ":" in self.objective else 0.5

    def check(self) -> KDSettings:
        if self.kind not in OBJECTIVES or (self.kind != "jsd" and ":" in self.objective):
            raise ConfigError(f"distill objective {self.objective!r}: use fkl, rkl or jsd:BETA (e.g. jsd:0.5)")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0 or not 0 < self.beta < 1:
            raise ConfigError(f"distill: alpha in [0, 1], temperature > 0 and jsd beta in (0, 1) "
                              f"(got alpha={self.alpha}, temperature={self.temperature}, beta={self.beta})")
        return self


def _log_rest(logp_k: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(logp_k))) per row, safe when the k tokens hold (almost) all the mass."""
    mass = logp_k.exp().sum(-1).clamp(max=1.0 - 1e-6)
    return torch.log1p(-mass)


def divergence(teacher: torch.Tensor, student: torch.Tensor, kind: str, beta: float) -> torch.Tensor:
    """Per-row divergence between two (k + 1)-bucket log-distributions (last bucket: the rest)."""
    p, q = teacher.exp(), student.exp()
    if kind == "fkl":
        return (p * (teacher - student)).sum(-1)
    if kind == "rkl":
        return (q * (student - teacher)).sum(-1)
    m = (beta * p + (1 - beta) * q).clamp_min(1e-12).log()
    return beta * (p * (teacher - m)).sum(-1) + (1 - beta) * (q * (student - m)).sum(-1)


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, t_ids: torch.Tensor,
                t_logp: torch.Tensor, t_rest: torch.Tensor, settings: KDSettings) -> torch.Tensor:
    logits = (hidden @ weight.t()).float()
    valid = targets != -100
    ce = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")
    logq_t = F.log_softmax(logits / settings.temperature, dim=-1)
    student_k = logq_t.gather(1, t_ids.long())
    student = torch.cat([student_k, _log_rest(student_k).unsqueeze(-1)], dim=-1)
    teacher = torch.cat([t_logp.float(), t_rest.float().unsqueeze(-1)], dim=-1)
    kl = divergence(teacher, student, settings.kind, settings.beta)
    per_token = settings.alpha * ce + (1 - settings.alpha) * settings.temperature**2 * kl
    return (per_token * valid).sum()


def kd_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, teacher: tuple | None,
            settings: KDSettings) -> torch.Tensor:
    """Sum over valid positions of the distillation loss (cross-entropy only without a teacher or
    under no_grad). hidden [.., d], weight [V, d], targets [..] (-100 ignored); teacher: (ids [.., k]
    int, logprobs [.., k], rest [..]) aligned with targets."""
    hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    if teacher is None or not torch.is_grad_enabled():
        total = hidden.new_zeros((), dtype=torch.float32)
        for s in range(0, len(targets), settings.chunk):
            logits = (hidden[s:s + settings.chunk] @ weight.t()).float()
            total = total + F.cross_entropy(logits, targets[s:s + settings.chunk], ignore_index=-100, reduction="sum")
        return total
    n = len(targets)
    t_ids, t_logp, t_rest = teacher[0].reshape(n, -1), teacher[1].reshape(n, -1), teacher[2].reshape(n)
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, len(targets), settings.chunk):
        e = s + settings.chunk
        total = total + checkpoint(_chunk_loss, hidden[s:e], weight, targets[s:e], t_ids[s:e], t_logp[s:e],
                                   t_rest[s:e], settings, use_reentrant=False)
    return total


class TeacherSlot:
    """Where the training loop puts the current micro-batch's teacher signal before the forward."""

    def __init__(self) -> None:
        self.batch: tuple | None = None


def _passthrough(hidden_states: torch.Tensor) -> torch.Tensor:
    return hidden_states


def install_kd_loss(model: Any, settings: KDSettings) -> TeacherSlot:
    """Make the Hugging Face causal LM `model` return the distillation loss (a sum) as `.loss` when
    called with shifted `labels`, reading the teacher from the returned slot (set it per batch;
    None: cross-entropy only). Parameter names and the state dict do not change."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise ValueError(f"{type(model).__name__}: the distillation loss needs a bias-free output embedding")
    slot = TeacherSlot()

    def loss_function(logits: torch.Tensor, labels: torch.Tensor, **_: Any) -> torch.Tensor:
        return kd_loss(logits, head.weight, labels, slot.batch, settings)  # `logits` are the hidden states

    head.forward = _passthrough
    model.loss_function = loss_function
    return slot


def reference_kd_loss(logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor, k: int,
                      settings: KDSettings) -> torch.Tensor:
    """The same loss from full logits (for tests): the teacher's top-k at temperature T + rest."""
    logp_t = F.log_softmax(teacher_logits.float() / settings.temperature, -1)
    top, ids = logp_t.topk(k, dim=-1)
    rest = torch.log1p(-top.exp().sum(-1).clamp(max=1 - 1e-6))
    logq = F.log_softmax(logits.float() / settings.temperature, -1)
    student_k = logq.gather(-1, ids)
    student = torch.cat([student_k, _log_rest(student_k).unsqueeze(-1)], -1)
    teacher = torch.cat([top, rest.unsqueeze(-1)], -1)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    kl = divergence(teacher.reshape(-1, k + 1), student.reshape(-1, k + 1), settings.kind, settings.beta)
    return (settings.alpha * ce + (1 - settings.alpha) * settings.temperature**2 * kl).sum()


__all__ = ["KDSettings", "OBJECTIVES", "TeacherSlot", "divergence", "install_kd_loss", "kd_loss", "reference_kd_loss"]
