"""The planner: from a compute budget (and the team's data) to a model size, token count and shape.

`plan(...)` takes one budget — FLOPs, a parameter count, or GPUs × hours at an MFU — and returns
a `Plan`: the compute-optimal N and D under the chosen scaling law (and under every other
published law beside it), the data-constrained optimum when the team has fewer unique tokens than
the law wants (Muennighoff et al. 2023), a concrete Llama shape with its exact parameter count,
the training cost, the memory per device, and a batch-size / learning-rate suggestion.
`run_stage(ctx)` is the recipe stage "plan-<model>".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongues.errors import TonguesError
from tongues.manifest import atomic_path, write_json
from tongues.plan.hardware import GPU, get_gpu
from tongues.plan.memory import GIB, estimate_memory, max_micro_batch
from tongues.plan.scaling import LAWS, TOTAL, DataConstrainedLaw, ScalingLaw, extrapolation, get_law
from tongues.plan.shapes import ModelShape, shape_for_params

EPOCHS_FADE = 4.0  # Muennighoff et al.: up to ~4 epochs, repeated tokens are almost as good as new
EPOCHS_FUTILE = 16.0  # ... and past ~16 epochs further repetition adds almost nothing
SHAPE_TOLERANCE = 0.05
REFERENCE_GPU = "h100"
PRECISION = "bf16-mixed"
LOSS = "chunked"  # what `tongues pretrain` trains with (fused_loss: true)
# DeepSeek LLM (Bi et al. 2024, arXiv:2401.02954, Sec. 3.1): fits over 1e17..3e20 FLOPs.
_BATCH_LR_SOURCE = "DeepSeek LLM (Bi et al. 2024, arXiv:2401.02954): B_opt = 0.2920·C^0.3271 tokens, η_opt = 0.3118·C^-0.1250"
_DS_RANGE = (1e17, 3e20)


@dataclass
class Plan:
    """A training plan. `to_dict()` is JSON-able; `llama_config()` is the model to train."""

    law: str
    law_description: str
    law_source: str
    param_count: str  # how the law counts N: "total" or "non_embedding" (shape matched the same way)
    loss_unit: str
    budget: dict[str, Any]
    params: float
    tokens: float
    flops: float  # the budget in the law's convention (6 N D; the table's FLOPs for frontier laws)
    tokens_per_param: float
    epochs: float | None
    predicted_loss: float
    unique_tokens: float | None
    vocab_size: int
    seq_len: int
    compute_optimal: dict[str, Any]
    data_constrained: dict[str, Any] | None
    shape: ModelShape
    other_laws: list[dict[str, Any]]
    cost: dict[str, Any]
    memory: dict[str, Any]
    training: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # why predicted_loss is an extrapolation of the law (outside its fitted runs, or above ln V); [] if not
    extrapolation: list[str] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        return bool(self.extrapolation)

    @property
    def shape_params(self) -> int:
        return self.shape.param_count(include_embeddings=self.param_count == TOTAL)

    def headline(self) -> str:
        return (
            f"N={human(self.params)} params, D={human(self.tokens)} tokens, "
            f"{self.tokens_per_param:.1f} tok/param"
            + (f", {self.epochs:.1f} epochs" if self.epochs is not None and self.epochs > 1 else "")
        )

    def llama_config(self) -> Any:
        """The `transformers.LlamaConfig` of the planned shape."""
        return self.shape.llama_config()

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "tokens": self.tokens,
            "flops": self.flops,
            "tokens_per_param": self.tokens_per_param,
            "epochs": self.epochs,
            "predicted_loss": self.predicted_loss,
            "extrapolated": self.extrapolated,
            "extrapolation": self.extrapolation,
            "loss_unit": self.loss_unit,
            "law": self.law,
            "law_description": self.law_description,
            "law_source": self.law_source,
            "param_count": self.param_count,
            "budget": self.budget,
            "unique_tokens": self.unique_tokens,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "shape_params": self.shape_params,
            "compute_optimal": self.compute_optimal,
            "data_constrained": self.data_constrained,
            "shape": self.shape.to_dict(),
            "other_laws": self.other_laws,
            "cost": self.cost,
            "memory": self.memory,
            "training": self.training,
            "warnings": self.warnings,
            "notes": self.notes,
            "headline": self.headline(),
        }

    def recipe_fragment(self) -> dict[str, Any]:
        """`plan:` and `pretrain:` keys for a recipe's `models.<name>:` entry."""
        budget = {k: v for k, v in self.budget.items() if k in ("flops", "params", "gpus", "gpu", "hours", "mfu")
                  and v is not None}
        plan_block = {**budget, "law": self.budget["law_spec"]}
        if self.unique_tokens:
            plan_block["unique_tokens"] = self.unique_tokens
        t = self.training
        pretrain = {
            "seq_len": self.seq_len,
            "global_batch_tokens": t["global_batch_tokens"],
            "micro_batch_size": t["micro_batch_size"],
            "lr": float(f"{t['lr']:.3g}"),
            "warmup_steps": t["warmup_steps"],
            "max_steps": t["steps"],
            "precision": "bf16" if self.memory.get("bf16", True) and self.cost.get("gpu") else "auto",
        }
        return {"plan": plan_block, "pretrain": pretrain}

    def to_markdown(self) -> str:
        return render_markdown(self)


# ---------------------------------------------------------------------------------------------
# Planning


def plan(
    flops: float | None = None,
    params: float | None = None,
    gpus: int | None = None,
    gpu: str | None = None,
    hours: float | None = None,
    mfu: float = 0.4,
    unique_tokens: float | None = None,
    vocab_size: int = 32000,
    seq_len: int = 2048,
    law: str = "chinchilla",
) -> Plan:
    """Plan a pretraining run for one budget: `flops`, or `params`, or `gpus` × `gpu` × `hours`.

    `gpus`/`gpu` without `hours` only describe the hardware for the cost and memory estimates.
    `unique_tokens`: the team's corpus size in its tokenizer's tokens (enables the
    data-constrained optimum). `law`: a name from `tongues.plan.scaling.LAWS` or ``fitted:PATH``.
    Raises TonguesError (one line) for bad input.
    """
    for name, value in (("flops", flops), ("params", params), ("hours", hours), ("unique_tokens", unique_tokens)):
        _check_positive(name, value)
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1):
        raise TonguesError(f"--gpus must be a positive whole number, got {gpus!r}")
    if not (isinstance(mfu, (int, float)) and 0 < mfu <= 1):
        raise TonguesError(f"--mfu must be in (0, 1], e.g. 0.4, got {mfu!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise TonguesError(f"--vocab-size must be a whole number >= 2, got {vocab_size!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise TonguesError(f"--seq-len must be a positive whole number, got {seq_len!r}")
    given = [f"--{n}" for n, v in (("flops", flops), ("params", params), ("hours", hours)) if v is not None]
    if len(given) > 1:
        raise TonguesError(f"give one budget, not {' and '.join(given)} (--flops C, --params N, or --gpus N --gpu TYPE --hours H)")
    if not given:
        raise TonguesError("no budget: give --flops C, --params N, or --gpus N --gpu TYPE --hours H")
    if gpus is not None and gpu is None:
        raise TonguesError("--gpus needs --gpu TYPE (e.g. --gpu h100)")
    if hours is not None and (gpu is None or gpus is None):
        raise TonguesError("--hours needs --gpus N and --gpu TYPE")
    device = get_gpu(gpu) if gpu is not None else None
    n_gpus = gpus or 1
    scaling_law = get_law(law)
    unit = scaling_law.unit

    budget: dict[str, Any] = {"kind": "flops" if flops else "params" if params else "gpu-hours",
                              "flops": flops, "params": params, "gpus": gpus, "gpu": device.name if device else None,
                              "hours": hours, "mfu": mfu, "law_spec": law}
    warnings: list[str] = []
    if hours is not None:
        assert device is not None
        available = n_gpus * device.peak_flops * mfu * hours * 3600.0
        budget["available_flops"] = available
        compute = available
        # The hours pay for the real FLOPs (attention included); the law speaks in 6ND. Solve for
        # the 6ND budget whose planned model's full cost matches what the GPUs deliver.
        for _ in range(6):
            alloc = _allocate(scaling_law, compute, None, unique_tokens)
            shape = _shape(alloc["params"], vocab_size, seq_len, scaling_law.param_count, [])
            full = shape.flops_per_token(seq_len) * alloc["tokens"]
            compute *= available / full
    elif params is not None:
        compute = scaling_law.flops_for_params(params)
    else:
        compute = float(flops)  # type: ignore[arg-type]

    alloc = _allocate(scaling_law, compute, params, unique_tokens)
    n, d = alloc["params"], alloc["tokens"]
    shape = _shape(n, vocab_size, seq_len, scaling_law.param_count, warnings)
    if hours is not None:
        # The shape's exact size differs from N by a few percent: trim or extend D so that the
        # run takes exactly the hours given, and predict the loss of that run.
        d = budget["available_flops"] / shape.flops_per_token(seq_len)
        alloc["tokens"] = d
        alloc["predicted_loss"] = _loss(scaling_law, n, d, unique_tokens)
    epochs = d / unique_tokens if unique_tokens else None
    if epochs is not None and epochs > EPOCHS_FUTILE:
        warnings.append(
            f"{epochs:.1f} epochs over {human(unique_tokens)} unique tokens: past ~{EPOCHS_FUTILE:.0f} epochs repeated "
            "data adds almost nothing (Muennighoff et al. 2023); collect more text or spend less compute"
        )
    elif epochs is not None and epochs > EPOCHS_FADE:
        warnings.append(
            f"{epochs:.1f} epochs over {human(unique_tokens)} unique tokens: beyond ~{EPOCHS_FADE:.0f} epochs the value of "
            f"repeated tokens fades (R*_D ≈ 15.4, towards nothing at ~{EPOCHS_FUTILE:.0f}); more unique text would help more"
        )

    cost = _cost(shape, d, seq_len, device, n_gpus, mfu, hours)
    training = _training(shape, d, seq_len, device, n_gpus, warnings)
    memory = _memory(shape, seq_len, device, n_gpus, training["micro_batch_size"], training["accumulation_steps"])
    if training.get("fits") is False:
        warnings.append(
            f"the model does not fit on one {memory['device']} even at micro-batch 1 with DDP; "
            "use FSDP and/or activation checkpointing (see memory)"
        )
    extrapolated = extrapolation(scaling_law.parametric, n, d, alloc["predicted_loss"], vocab_size)
    if extrapolated:
        warnings.append(f"the predicted loss is an extrapolation of {scaling_law.name}, not a forecast: "
                        + "; ".join(extrapolated))
    notes = [
        f"Published laws were fitted on English web text with other tokenizers; their absolute losses "
        f"({unit}) are not your language's. Fit your own with `tongues scaling fit`.",
        "Training FLOPs count 6 × matmul parameters + attention (PaLM, App. B); the law's budget is 6·N·D.",
    ]
    if not hasattr(scaling_law, "E"):
        notes.append(f"{scaling_law.name} is a frontier without a loss function; its predicted loss "
                     f"uses {scaling_law.parametric.name}.")
    return Plan(
        law=scaling_law.name,
        law_description=scaling_law.describe(),
        law_source=scaling_law.source,
        param_count=scaling_law.param_count,
        loss_unit=unit,
        budget=budget,
        params=n,
        tokens=d,
        flops=compute,
        tokens_per_param=d / n,
        epochs=epochs,
        predicted_loss=alloc["predicted_loss"],
        unique_tokens=unique_tokens,
        vocab_size=vocab_size,
        seq_len=seq_len,
        compute_optimal=alloc["compute_optimal"],
        data_constrained=alloc["data_constrained"],
        shape=shape,
        other_laws=[_law_summary(other, compute, unique_tokens, vocab_size) for name, other in LAWS.items() if name != scaling_law.name],
        cost=cost,
        memory=memory,
        training=training,
        warnings=warnings,
        notes=notes,
        extrapolation=extrapolated,
    )


def _check_positive(name: str, value: Any) -> None:
    if value is None:
        return
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise TonguesError(f"{flag} must be a positive number, got {value!r}")


def _allocate(law: ScalingLaw, compute: float, fixed_params: float | None, unique: float | None) -> dict[str, Any]:
    """N, D and loss for `compute`; with scarce `unique` tokens, the data-constrained optimum."""
    n0, d0 = law.optimal(compute)
    if fixed_params is not None:
        n0 = fixed_params
    optimal = {"params": n0, "tokens": d0, "tokens_per_param": d0 / n0, "predicted_loss": law.loss(n0, d0)}
    if not unique or unique >= d0:
        return {"params": n0, "tokens": d0, "predicted_loss": optimal["predicted_loss"],
                "compute_optimal": optimal, "data_constrained": None}
    constrained = DataConstrainedLaw(law.parametric)
    nd, dd = constrained.optimal(6.0 * n0 * d0, unique)
    data_constrained = {
        "params": nd, "tokens": dd, "tokens_per_param": dd / nd, "epochs": dd / unique,
        "predicted_loss": constrained.loss(nd, dd, unique),
        # what repeating the data to reach the unconstrained optimum would give instead
        "loss_at_compute_optimal": constrained.loss(n0, d0, unique),
        "epochs_at_compute_optimal": d0 / unique,
        "law": f"Muennighoff et al. 2023 on {law.parametric.name} (R*_D = {constrained.rd_star}, R*_N = {constrained.rn_star})",
    }
    if fixed_params is not None:  # the user named the size: keep it, predict its loss with repeated data
        return {"params": n0, "tokens": d0, "predicted_loss": data_constrained["loss_at_compute_optimal"],
                "compute_optimal": optimal, "data_constrained": data_constrained}
    return {"params": nd, "tokens": dd, "predicted_loss": data_constrained["predicted_loss"],
            "compute_optimal": optimal, "data_constrained": data_constrained}


def _loss(law: ScalingLaw, params: float, tokens: float, unique: float | None) -> float:
    if unique and unique < tokens:
        return DataConstrainedLaw(law.parametric).loss(params, tokens, unique)
    return law.loss(params, tokens)


def _shape(params: float, vocab_size: int, seq_len: int, count: str, warnings: list[str]) -> ModelShape:
    shape = shape_for_params(params, vocab_size, seq_len, count=count, tolerance=SHAPE_TOLERANCE)
    got = shape.param_count(include_embeddings=count == TOTAL)
    if abs(got / params - 1) > SHAPE_TOLERANCE:
        embed = shape.vocab_size * shape.d_model
        warnings.append(
            f"no shape within {SHAPE_TOLERANCE:.0%} of {human(params)} parameters with a {vocab_size}-token vocabulary "
            f"(closest: {human(got)}; its embedding table alone is {human(embed)}); use a smaller vocabulary "
            "or a larger budget"
        )
    return shape


def _law_summary(law: ScalingLaw, compute: float, unique: float | None, vocab_size: int | None = None) -> dict[str, Any]:
    n, d = law.optimal(compute)
    out: dict[str, Any] = {"law": law.name, "params": n, "tokens": d, "tokens_per_param": d / n,
                           "predicted_loss": law.loss(n, d), "loss_unit": law.unit, "param_count": law.param_count,
                           "source": law.source}
    if unique and unique < d:
        constrained = DataConstrainedLaw(law.parametric)
        nd, dd = constrained.optimal(6.0 * n * d, unique)
        out["data_constrained"] = {"params": nd, "tokens": dd, "epochs": dd / unique,
                                   "predicted_loss": constrained.loss(nd, dd, unique)}
        n, d = nd, dd
    final = out.get("data_constrained", out)["predicted_loss"]
    out["extrapolated"] = bool(extrapolation(law.parametric, n, d, final, vocab_size))
    return out


def _cost(shape: ModelShape, tokens: float, seq_len: int, device: GPU | None, gpus: int, mfu: float,
          hours: float | None) -> dict[str, Any]:
    per_token = shape.flops_per_token(seq_len)
    attention = 12.0 * shape.n_layers * seq_len * shape.n_heads * shape.head_dim
    cost: dict[str, Any] = {
        "flops_per_token": per_token,
        "training_flops": per_token * tokens,
        "flops_6nd": 6.0 * shape.param_count() * tokens,
        "attention_share": attention / per_token,
        "mfu": mfu,
        "gpu": device.name if device else None,
        "gpus": gpus if device else None,
    }
    if device is not None:
        rate = gpus * device.peak_flops * mfu / per_token
        cost.update(
            peak_flops_per_gpu=device.peak_flops,
            peak_source=device.source,
            tokens_per_second=rate,
            tokens_per_second_per_gpu=rate / gpus,
            wall_clock_hours=tokens / rate / 3600.0,
            gpu_hours=gpus * tokens / rate / 3600.0,
        )
        if hours is not None:
            cost["tokens_per_second_needed"] = tokens / (hours * 3600.0)
    else:
        cost["gpu_hours_at_mfu"] = {
            name: per_token * tokens / (get_gpu(name).peak_flops * mfu) / 3600.0 for name in ("a100", "h100", "h200")
        }
    return cost


def _training(shape: ModelShape, tokens: float, seq_len: int, device: GPU | None, gpus: int,
              warnings: list[str]) -> dict[str, Any]:
    # DeepSeek's C is non-embedding FLOPs per token (theirs: 72·L·d² + 6·L·d·seq) times tokens.
    per_token = 6.0 * shape.param_count(include_embeddings=False) + 6.0 * shape.n_layers * shape.d_model * seq_len
    compute = per_token * tokens
    batch_opt = 0.2920 * compute**0.3271
    lr = 0.3118 * compute**-0.1250
    sequences = max(1, round(batch_opt / seq_len))
    per_gpu = math.ceil(sequences / gpus)
    memory_bytes = (device or get_gpu(REFERENCE_GPU)).memory_bytes
    fit = max_micro_batch(shape, seq_len, memory_bytes, precision=PRECISION, strategy="ddp", gpus=gpus, loss=LOSS)
    micro = max(1, min(fit, per_gpu))
    accumulation = math.ceil(per_gpu / micro)
    global_sequences = gpus * micro * accumulation
    global_tokens = global_sequences * seq_len
    steps = max(1, math.ceil(tokens / global_tokens))
    warmup = max(1, min(2000, steps // 20))
    if steps < 50:
        warnings.append(
            f"only {steps} optimizer steps of {human(global_tokens)} tokens: the batch is large for this token "
            "budget; consider a smaller seq_len"
        )
    in_range = _DS_RANGE[0] <= compute <= _DS_RANGE[1]
    return {
        "global_batch_tokens": global_tokens,
        "global_batch_sequences": global_sequences,
        "micro_batch_size": micro,
        "accumulation_steps": accumulation,
        "gpus": gpus,
        "steps": steps,
        "warmup_steps": warmup,
        "lr": lr,
        "optimal_batch_tokens": batch_opt,
        "fits": fit > 0,
        "source": _BATCH_LR_SOURCE + (
            "" if in_range else f" — extrapolated: their fits span {_DS_RANGE[0]:.0e}–{_DS_RANGE[1]:.0e} FLOPs, "
            f"this run is {compute:.1e}"),
        "warmup_source": "5% of the steps, at most 2000 (Llama 2 warmed up for 2000 steps)",
    }


def _memory(shape: ModelShape, seq_len: int, device: GPU | None, gpus: int, micro: int, accumulation: int) -> dict[str, Any]:
    target = device or get_gpu(REFERENCE_GPU)
    out: dict[str, Any] = {
        "device": target.name,
        "device_memory_gb": target.memory_gb,
        "assumed_device": device is None,
        "bf16": target.bf16,
        "precision": PRECISION,
        "loss": LOSS,
        "usable_fraction": 0.9,
        "micro_batch_size": micro,
        "grads_live": True,
    }
    for strategy in ("ddp", "fsdp"):
        kwargs = {"precision": PRECISION, "strategy": strategy, "gpus": gpus, "loss": LOSS}
        out[strategy] = {
            "gpus": gpus,
            "max_micro_batch": max_micro_batch(shape, seq_len, target.memory_bytes, **kwargs),
            "max_micro_batch_checkpointed": max_micro_batch(shape, seq_len, target.memory_bytes, checkpointing=True, **kwargs),
            "estimate": estimate_memory(shape, micro, seq_len, **kwargs).to_dict(),
            "estimate_checkpointed": estimate_memory(shape, micro, seq_len, checkpointing=True, **kwargs).to_dict(),
        }
    return out


# ---------------------------------------------------------------------------------------------
# Output


def human(x: float | None) -> str:
    """1234567 -> '1.2M'; 2.1e12 -> '2.1T'."""
    if x is None:
        return "-"
    for unit, scale in (("Q", 1e15), ("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            value = x / scale
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{x:.3g}"


def _loss_text(loss: float, unit: str, extrapolated: bool) -> str:
    if extrapolated:
        return f"extrapolated: {loss:.3f} {unit} (outside the law's fitted range, see the warnings)"
    return f"{loss:.3f} {unit}"


def render_markdown(p: Plan) -> str:
    """The plan as Markdown tables (what `tongues plan` prints and plan.md holds)."""
    b = p.budget
    if b["kind"] == "gpu-hours":
        budget = (f"{b['gpus']} × {b['gpu']} × {b['hours']:g} h at MFU {b['mfu']:.0%} = "
                  f"{b['available_flops']:.3g} FLOPs (6ND budget {p.flops:.3g})")
    elif b["kind"] == "params":
        budget = f"{human(b['params'])} parameters → {p.flops:.3g} FLOPs (6ND)"
    else:
        budget = f"{p.flops:.3g} FLOPs (6ND)"
    lines = [
        f"# Plan: {p.headline()}",
        "",
        f"- law: **{p.law}** — {p.law_description}",
        f"- source: {p.law_source}",
        f"- budget: {budget}",
        f"- parameters are counted as **{p.param_count.replace('_', '-')}** (the law's convention; the shape is matched the same way)",
        "",
        "| | value |",
        "|---|---|",
        f"| parameters (N) | {human(p.params)} ({p.params:.4g}) |",
        f"| tokens (D) | {human(p.tokens)} ({p.tokens:.4g}) |",
        f"| tokens per parameter | {p.tokens_per_param:.1f} |",
        f"| epochs | {'-' if p.epochs is None else f'{p.epochs:.2f} over {human(p.unique_tokens)} unique tokens'} |",
        f"| predicted final loss | {_loss_text(p.predicted_loss, p.loss_unit, p.extrapolated)} |",
        "",
        "## Under every law",
        "",
        "| law | N_opt | D_opt | tok/param | loss | data-constrained N / D / epochs / loss |",
        "|---|---|---|---|---|---|",
    ]
    rows = [{"law": p.law, **p.compute_optimal, "loss_unit": p.loss_unit, "data_constrained": p.data_constrained,
             "extrapolated": p.extrapolated}]
    for r in rows + p.other_laws:
        dc = r.get("data_constrained")
        dc_text = (f"{human(dc['params'])} / {human(dc['tokens'])} / {dc['epochs']:.1f} / {dc['predicted_loss']:.3f}"
                   if dc else "-")
        mark = (" (chosen)" if r["law"] == p.law else "") + (" (extrapolated)" if r.get("extrapolated") else "")
        lines.append(f"| {r['law']}{mark} | {human(r['params'])} | {human(r['tokens'])} | {r['tokens_per_param']:.1f} | "
                     f"{r['predicted_loss']:.3f} | {dc_text} |")
    if p.data_constrained:
        dc = p.data_constrained
        lines += [
            "",
            "## Data-constrained optimum",
            "",
            f"Only {human(p.unique_tokens)} unique tokens, fewer than the {human(p.compute_optimal['tokens'])} the law "
            f"wants. {dc['law']}: at the same compute the best split is **{human(dc['params'])} parameters on "
            f"{human(dc['tokens'])} tokens ({dc['epochs']:.1f} epochs), loss {dc['predicted_loss']:.3f}**; repeating "
            f"the data {dc['epochs_at_compute_optimal']:.1f}× to train the unconstrained optimum would give "
            f"{dc['loss_at_compute_optimal']:.3f}.",
        ]
    s = p.shape
    lines += [
        "",
        "## Shape (Hugging Face LlamaConfig)",
        "",
        "| layers | d_model | heads | kv heads | head_dim | FFN (SwiGLU) | vocab | tied | parameters | d_model/layers |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {s.n_layers} | {s.d_model} | {s.n_heads} | {s.n_kv_heads} | {s.head_dim} | {s.ffn_dim} | {s.vocab_size} | "
        f"{'yes' if s.tie_embeddings else 'no'} | {p.shape_params:,} ({p.shape_params / p.params - 1:+.1%} vs N; "
        f"{s.param_count(include_embeddings=False):,} non-embedding) | {s.aspect_ratio:.0f} |",
    ]
    c = p.cost
    lines += [
        "",
        "## Cost",
        "",
        "| | value |",
        "|---|---|",
        f"| training FLOPs | {c['training_flops']:.3g} ({c['attention_share']:.0%} attention; 6ND = {c['flops_6nd']:.3g}) |",
        f"| FLOPs per token | {c['flops_per_token']:.3g} |",
    ]
    if c.get("gpu"):
        lines += [
            f"| hardware | {c['gpus']} × {c['gpu']} at {c['peak_flops_per_gpu'] / 1e12:.0f} TFLOP/s bf16 peak, MFU {c['mfu']:.0%} |",
            f"| throughput | {c['tokens_per_second']:,.0f} tokens/s ({c['tokens_per_second_per_gpu']:,.0f} per GPU) |",
            f"| wall-clock | {c['wall_clock_hours']:.3g} h ({c['gpu_hours']:.3g} GPU-hours) |",
        ]
        if "tokens_per_second_needed" in c:
            lines.append(f"| tokens/s needed for the budget | {c['tokens_per_second_needed']:,.0f} |")
    else:
        hours = ", ".join(f"{k}: {v:.3g}" for k, v in c["gpu_hours_at_mfu"].items())
        lines.append(f"| GPU-hours at MFU {c['mfu']:.0%} | {hours} |")
    m = p.memory
    lines += [
        "",
        f"## Memory per device ({m['device']}, {m['device_memory_gb']:g} GB{' assumed' if m['assumed_device'] else ''}, "
        f"{m['precision']}, {m.get('loss', 'logits')} loss, AdamW, micro-batch {m['micro_batch_size']} × {p.seq_len} tokens)",
        "",
        "| strategy | GPUs | weights | grads | AdamW | buffers | activations | loss transients | peak | peak, checkpointed | max micro-batch (checkpointed) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy in ("ddp", "fsdp"):
        e, ec = m[strategy]["estimate"], m[strategy]["estimate_checkpointed"]
        lines.append(
            f"| {strategy.upper()} | {m[strategy]['gpus']} | {e['weights_gib']:.2f} | {e['gradients_gib']:.2f} | "
            f"{e['optimizer_gib']:.2f} | {e['buffers_gib']:.2f} | {e['activations_gib']:.2f} | {e['logits_gib']:.2f} | "
            f"{e['peak_gib']:.2f} | {ec['peak_gib']:.2f} | {m[strategy]['max_micro_batch']} "
            f"({m[strategy]['max_micro_batch_checkpointed']}) |"
        )
    lines.append("\n(GiB; peak must fit in 90% of the device memory.)")
    t = p.training
    lines += [
        "",
        "## Training",
        "",
        f"- global batch {t['global_batch_tokens']:,} tokens = {t['global_batch_sequences']} sequences "
        f"({t['gpus']} GPU × micro-batch {t['micro_batch_size']} × {t['accumulation_steps']} accumulation steps)",
        f"- learning rate {t['lr']:.3g}, {t['steps']:,} steps, {t['warmup_steps']:,} warmup",
        f"- source: {t['source']}; warmup: {t['warmup_source']}",
    ]
    if p.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in p.warnings]
    if p.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in p.notes]
    return "\n".join(lines) + "\n"


def write_plan(p: Plan, out_dir: str | Path) -> dict[str, Path]:
    """Write plan.json, config.json (LlamaConfig), plan.md and recipe.yaml into `out_dir`, atomically."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("plan.json", "config.json", "plan.md", "recipe.yaml")}
    write_json(paths["plan.json"], p.to_dict())
    with atomic_path(paths["config.json"]) as tmp:
        p.llama_config().to_json_file(str(tmp))
    with atomic_path(paths["plan.md"]) as tmp:
        tmp.write_text(p.to_markdown(), encoding="utf-8")
    fragment = yaml.safe_dump(p.recipe_fragment(), sort_keys=False, allow_unicode=True)
    with atomic_path(paths["recipe.yaml"]) as tmp:
        tmp.write_text(
            f"# tongues plan: {p.headline()} (law {p.law})\n"
            "# Paste under `models.<name>:` in a recipe, next to its `tokenizer:` and `corpora:`.\n" + fragment,
            encoding="utf-8",
        )
    return paths


def run_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stage "plan-<model>": ctx.config is a PlanConfig.

    ctx.stage.extra may carry "vocab_size" (else the tokenizer input's, else 32000), "seq_len"
    (default 2048) and "unique_tokens" (PlanConfig.unique_tokens wins). Writes plan.json,
    config.json, plan.md and recipe.yaml into ctx.out_dir; returns the plan's numbers.
    """
    cfg = ctx.config
    extra = dict(getattr(ctx.stage, "extra", None) or {})
    vocab = extra.get("vocab_size") or _tokenizer_vocab(getattr(ctx, "inputs", {}) or {}) or 32000
    p = plan(
        flops=cfg.flops, params=cfg.params, gpus=cfg.gpus, gpu=cfg.gpu, hours=cfg.hours, mfu=cfg.mfu,
        unique_tokens=getattr(cfg, "unique_tokens", None) or extra.get("unique_tokens")
        or _tokenized_train_tokens(getattr(ctx, "inputs", {}) or {}),
        vocab_size=int(vocab), seq_len=int(extra.get("seq_len") or 2048), law=cfg.law,
    )
    write_plan(p, ctx.out_dir)
    return {
        "params": p.params, "tokens": p.tokens, "flops": p.flops, "tokens_per_param": p.tokens_per_param,
        "epochs": p.epochs, "predicted_loss": p.predicted_loss, "loss_unit": p.loss_unit, "law": p.law,
        "shape_params": p.shape_params, "shape": p.shape.to_dict(), "warnings": p.warnings, "headline": p.headline(),
        "extrapolated": p.extrapolated, "extrapolation": p.extrapolation,
    }


def _tokenized_train_tokens(inputs: dict[str, Path]) -> int | None:
    """Unique training tokens of a `tokenize-*` input (its manifest's metrics), if there is one."""
    for name, directory in inputs.items():
        manifest = Path(directory) / "manifest.json"
        if name.startswith("tokenize-") and manifest.exists():
            try:
                return int(json.loads(manifest.read_text(encoding="utf-8"))["metrics"]["train_tokens"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


def _tokenizer_vocab(inputs: dict[str, Path]) -> int | None:
    for name, directory in inputs.items():
        meta = Path(directory) / "tongues_tokenizer.json"
        if name.startswith("tokenizer-") and meta.exists():
            try:
                return int(json.loads(meta.read_text(encoding="utf-8"))["vocab_size"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


__all__ = ["Plan", "plan", "run_stage", "write_plan", "render_markdown", "human", "GIB"]
