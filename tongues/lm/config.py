"""Config of the pretraining stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tongues.schema import StrictModel

Quant = Literal["f16", "q8_0", "q4_0"]  # GGUF weight types tongues writes (tongues.lm.gguf_export)


class PretrainConfig(StrictModel):
    """The pretraining loop's knobs; anything left out is derived from the plan.

    The model shape is `model_config_file` (a Hugging Face LlamaConfig config.json), else `model`
    (LlamaConfig keyword arguments), else the plan's config.json, else a small default; the
    vocabulary size and special token ids always follow the tokenizer.
    """

    model: dict[str, Any] | None = None  # LlamaConfig kwargs, e.g. {hidden_size: 256, num_hidden_layers: 4}
    model_config_file: str | None = None  # path of a Hugging Face LlamaConfig config.json
    init_from: str | None = None  # a model directory (safetensors) whose weights start the run (e.g. a distillation student)
    seq_len: int = Field(256, ge=8)
    global_batch_tokens: int = Field(8192, gt=0)
    micro_batch_size: int = Field(8, gt=0)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    schedule: Literal["cosine", "wsd"] = "cosine"
    weight_decay: float = Field(0.1, ge=0)
    # residual dropout while training (GPT-2's resid_pdrop): on each attention and MLP output and the
    # embeddings; regularizes many epochs over little data. The exported model is unchanged.
    dropout: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    decay_fraction: float = Field(0.2, gt=0, le=1)  # wsd: share of the steps spent decaying
    max_steps: int | None = Field(None, gt=0)
    train_tokens: int | None = Field(None, gt=0)  # budget when max_steps is unset (else the plan's, else one pass)
    doc_mask: bool = False  # document-masked attention: no token attends across an EOS
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where bf16 matmuls are fast
    compile: bool = False
    # ddp: every process holds the whole model (accelerate / DDP); fsdp: PyTorch FSDP2 `fully_shard`
    # per decoder layer, then the root, on an explicit device mesh (gloo on CPU, NCCL on GPUs)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    reshard_after_forward: bool = True  # fsdp: free gathered parameters after forward (FULL_SHARD)
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (less memory)
    attention: Literal["auto", "sdpa", "eager"] = "auto"  # auto: sdpa, or eager when compiled on a CPU
    # LM head + cross-entropy in chunks of tokens, without materializing the logits (tongues.lm.loss);
    # off: the plain logits path. loss_chunk_tokens: tokens per chunk (default: by device and vocabulary).
    fused_loss: bool = True
    loss_chunk_tokens: int | None = Field(None, gt=0)
    eval_every: int = Field(50, gt=0)
    # export the checkpoint with the lowest validation loss (best) or the last step's (last)
    export: Literal["best", "last"] = "best"
    # stop when this many evaluations in a row bring no lower validation loss (None: train to the end)
    patience: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, ge=1)
    eval_tokens: int = Field(65536, gt=0)  # validation tokens per corpus (whole documents)
    log_every: int = Field(10, gt=0)
    tensorboard: bool = True
    spike_factor: float | None = Field(3.0, gt=1)  # skip a step whose loss exceeds this x the running mean
    max_bad_steps: int = Field(5, ge=1)  # this many skipped steps in a row stop the run
    num_threads: int | None = Field(None, gt=0)  # torch CPU threads (default: torch's choice)
    peak_flops: float | None = Field(None, gt=0)  # per device, for MFU (default: GPU table / CPU measurement)


class GgufConfig(StrictModel):
    """`gguf:` in a recipe: GGUF files of a model (its last stage, or `model:stage`) or of a student."""

    quants: list[Quant] = Field(default_factory=lambda: ["q8_0"], min_length=1)
