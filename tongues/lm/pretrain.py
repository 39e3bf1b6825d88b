"""Pretraining: a Hugging Face LlamaForCausalLM on packed token shards, in one loop you can read.

The same code runs on a laptop CPU, one GPU, and many nodes (accelerate: DDP, FSDP, DeepSpeed)::

    tongues pretrain --data TOKENS --tokenizer TOK --out DIR                 # one process
    torchrun --nproc_per_node 2 -m tongues pretrain --data TOKENS ...        # N processes (gloo on CPU)
    accelerate launch --config_file recipes/accelerate/fsdp.yaml -m tongues pretrain --data TOKENS ...
    tongues launch slurm --nodes 4 --gpus-per-node 8 --recipe recipes/ko.yaml   # writes an sbatch script

Re-running the same command resumes from the last checkpoint. The data position is the global
step, so a run resumes exactly (on CPU every later loss is bit-identical to an uninterrupted run)
and with any number of processes (the global batch and the data order do not change).

Reading order: `pretrain` sets up (data, model, optimizer, resume), then the loop: one optimizer
step = `accum` micro-batches per process -> loss check -> clip -> step -> log / eval / checkpoint.
There is one host sync per optimizer step (not per micro-batch): the all-reduced loss and gradient
norm, which decide whether the step is applied (a NaN or a loss spike is skipped and counted).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tongues.data.tokenize import check_tokenizer, load_split, read_meta
from tongues.errors import ConfigError, TonguesError
from tongues.lm import checkpoint as ckpt
from tongues.lm.config import PretrainConfig
from tongues.lm.export import RUN_INFO
from tongues.lm.loss import install_chunked_loss
from tongues.lm.lr_schedule import lr_at
from tongues.lm.metrics_log import MetricsLog, steady_throughput
from tongues.lm.packing import EvalSet, PackedMixture, document_positions, eval_set, micro_batch
from tongues.manifest import write_json
from tongues.plan.flops import fast_bf16, flops_per_token, mfu_text, peak_flops
from tongues.plan.memory import default_chunk

PAD_ID, BOS_ID, EOS_ID, IM_END_ID = 0, 2, 3, 5
# A small model for when neither the recipe nor a plan gives a shape.
DEFAULT_SHAPE = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "num_key_value_heads": 4}
_DROP_KEYS = ("architectures", "model_type", "transformers_version", "_name_or_path", "dtype", "torch_dtype")


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM: a checkpoint was written; the same command resumes."""


class TrainingDiverged(TonguesError):
    """Too many non-finite or spiking losses in a row."""


def model_config(cfg: PretrainConfig, vocab_size: int, plan_dir: Path | None = None) -> Any:
    """The LlamaConfig to train: `model_config_file`, else `model` kwargs, else the plan's config.json,
    else DEFAULT_SHAPE; vocabulary, special ids and context length follow the tokenizer and seq_len."""
    from transformers import LlamaConfig

    if cfg.model_config_file:
        path = Path(cfg.model_config_file)
        if not path.exists():
            raise ConfigError(f"pretrain.model_config_file: {path} does not exist")
        shape = json.loads(path.read_text(encoding="utf-8"))
    elif cfg.model:
        shape = dict(cfg.model)
    elif plan_dir is not None and (Path(plan_dir) / "config.json").exists():
        shape = json.loads((Path(plan_dir) / "config.json").read_text(encoding="utf-8"))
    else:
        shape = dict(DEFAULT_SHAPE)
    shape = {k: v for k, v in shape.items() if k not in _DROP_KEYS}
    if shape.get("vocab_size", vocab_size) < vocab_size:
        raise ConfigError(f"pretrain.model.vocab_size={shape['vocab_size']} is smaller than the tokenizer's {vocab_size}")
    shape.setdefault("vocab_size", vocab_size)
    shape.setdefault("tie_word_embeddings", shape.get("hidden_size", 4096) <= 1024)  # tied when small
    shape["max_position_embeddings"] = max(cfg.seq_len, shape.get("max_position_embeddings", 0))
    shape.update(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, use_cache=False)
    try:
        return LlamaConfig(**shape, attn_implementation="sdpa")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"pretrain.model: not a valid LlamaConfig: {err}") from None


def build_model(config: Any, seed: int) -> torch.nn.Module:
    """A freshly initialized LlamaForCausalLM (fp32 master weights), seeded; generation settings included."""
    from transformers import GenerationConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=BOS_ID, eos_token_id=[EOS_ID, IM_END_ID], pad_token_id=PAD_ID, do_sample=False
    )
    return model


def install_dropout(model: torch.nn.Module, p: float) -> list[Any]:
    """Residual dropout while training: forward hooks on the embeddings and on every decoder layer's
    attention and MLP outputs (before they join the residual stream), active only in train mode.
    Hooks leave the parameters and the exported model as they are. Returns the hook handles."""
    if p <= 0:
        return []

    def drop(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    modules = [body.embed_tokens] + [m for layer in body.layers for m in (layer.self_attn, layer.mlp)]
    return [m.register_forward_hook(drop) for m in modules]


def attention_kernel(cfg: PretrainConfig, device: torch.device) -> str:
    """`pretrain.attention`; "auto" is SDPA, except eager attention when compiled on a CPU: inductor
    fuses its matmul-softmax-matmul, while SDPA stays an opaque CPU flash kernel whose backward
    dominates at short context (benchmarks/pretrain.py). Not saved: the exported config is the same."""
    if cfg.attention != "auto":
        return cfg.attention
    return "eager" if cfg.compile and device.type == "cpu" else "sdpa"


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused where the build supports it; no weight decay on norms (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def forward_logits(model: Any, inputs: torch.Tensor, doc_mask: bool) -> torch.Tensor:
    positions = document_positions(inputs, EOS_ID) if doc_mask else None
    return model(input_ids=inputs, position_ids=positions, use_cache=False).logits


def token_nats(model: Any, inputs: torch.Tensor, targets: torch.Tensor, doc_mask: bool, fused: bool) -> torch.Tensor:
    """Sum of next-token nats over the targets that are not -100, in fp32. `fused`: the model has
    `install_chunked_loss` (no logits materialized); else from the logits."""
    if not fused:
        logits = forward_logits(model, inputs, doc_mask)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
    positions = document_positions(inputs, EOS_ID) if doc_mask else None
    return model(input_ids=inputs, position_ids=positions, labels=targets, use_cache=False).loss


def lm_loss(model: Any, inputs: torch.Tensor, targets: torch.Tensor, doc_mask: bool, fused: bool) -> torch.Tensor:
    """Mean next-token cross-entropy of one micro-batch (the training loss)."""
    return token_nats(model, inputs, targets, doc_mask, fused) / targets.ne(-100).sum().clamp(min=1)


@torch.no_grad()
def evaluate(model: Any, sets: dict[str, EvalSet], accelerator: Any, micro: int, doc_mask: bool,
             fused: bool) -> dict[str, Any]:
    """Validation loss (nats/token) and bits per UTF-8 byte, per corpus and overall; all processes call."""
    model.eval()
    world, rank = accelerator.num_processes, accelerator.process_index
    out: dict[str, Any] = {}
    total = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # nats, targets, bytes
    for name, es in sets.items():
        rows = es.windows
        pad = (-len(rows)) % (world * micro)  # equal batch counts on every rank (FSDP needs it)
        rows = torch.cat([rows, rows.new_full((pad, rows.shape[1]), -1)])[rank::world]
        nats = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for i in range(0, len(rows), micro):
            batch = rows[i : i + micro].to(accelerator.device)
            inputs, targets = batch[:, :-1].clamp(min=PAD_ID), batch[:, 1:].masked_fill(batch[:, 1:] < 0, -100)
            with accelerator.autocast():
                nats += token_nats(model, inputs, targets, doc_mask, fused)
        nats = accelerator.reduce(nats, "sum").item()
        out[name] = {"loss": nats / es.num_targets, "bpb": nats / math.log(2) / max(1, es.num_bytes)}
        total += torch.tensor([nats, es.num_targets, es.num_bytes], dtype=torch.float64, device=total.device)
    model.train()
    out["val_loss"] = (total[0] / total[1]).item()
    out["val_bpb"] = (total[0] / math.log(2) / total[2]).item()
    return out


@contextmanager
def stop_signals(accelerator: Any):
    """SIGINT/SIGTERM set accelerate's trigger; the loop checkpoints and stops at the end of the step.
    A second signal stops at once (a checkpoint being written is left as a temporary, never loaded)."""
    received = []

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        accelerator.set_trigger()

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals stay with their owner
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def total_steps(cfg: PretrainConfig, train_tokens: int, plan_dir: Path | None) -> int:
    """`max_steps`, else `train_tokens` (the recipe's, else the plan's budget), else one pass over the data."""
    if cfg.max_steps:
        return cfg.max_steps
    budget = cfg.train_tokens
    if budget is None and plan_dir is not None and (Path(plan_dir) / "plan.json").exists():
        plan = json.loads((Path(plan_dir) / "plan.json").read_text(encoding="utf-8"))
        budget = next((plan[k] for k in ("train_tokens", "tokens", "token_budget") if isinstance(plan.get(k), int | float)), None)
    return max(1, math.ceil((budget or train_tokens) / cfg.global_batch_tokens))


def pretrain(
    cfg: PretrainConfig,
    data: dict[str, tuple[str | Path, float]],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    plan_dir: str | Path | None = None,
    stop_after: int | None = None,
    export: bool = True,
    plan_stats: dict[str, Any] | None = None,
    teacher: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a model on token directories `data` ({corpus: (dir, weight)}) into `out_dir`.

    `teacher`: distill from cached teacher distributions — {"caches": {corpus: cache dir}
    (`tongues.lm.teacher_cache`), "settings": KDSettings, "name": the teacher}; the loss becomes
    `tongues.lm.distill_loss` (validation stays the student's own cross-entropy).

    Writes out_dir/checkpoints/, train.jsonl, eval.jsonl, tensorboard/ and, when the run completes
    and `export` is on, the Hugging Face model in out_dir/model. `stop_after=k` stops after step k
    with a checkpoint (status "stopped"), as a time-limited job would. Returns the run's metrics.
    """
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _pretrain(cfg, data, tokenizer_dir, Path(out_dir), seed, Path(plan_dir) if plan_dir else None,
                         stop_after, export, plan_stats, teacher)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process's thread count changed


def _pretrain(cfg: PretrainConfig, data: dict[str, tuple[str | Path, float]], tokenizer_dir: str | Path,
              out_dir: Path, seed: int, plan_dir: Path | None, stop_after: int | None, export: bool,
              plan_stats: dict[str, Any] | None, teacher: dict[str, Any] | None = None) -> dict[str, Any]:
    from accelerate import Accelerator, PartialState
    from accelerate.utils import GradientAccumulationPlugin, broadcast_object_list, gather_object

    from tongues.progress import progress_bar as tqdm

    # --- data: token shards of every corpus, checked against the tokenizer --------------------
    metas = {name: check_tokenizer(d, tokenizer_dir) for name, (d, _) in data.items()}
    vocab_size = max(m["vocab_size"] for m in metas.values())
    mixture = PackedMixture([load_split(d, "train") for d, _ in data.values()], [w for _, w in data.values()],
                            cfg.seq_len, seed)
    evals = {n: es for n, (d, _) in data.items()
             if (es := eval_set(load_split(d, "validation"), cfg.seq_len, cfg.eval_tokens)) is not None}
    # --- processes and batch geometry: global batch in sequences = micro * processes * accum ---
    _reset_accelerate_singletons()
    cpu = not torch.cuda.is_available()  # accelerate only sees torchrun's processes as MULTI_CPU when told
    # DeepSpeed (accelerate launch with a DeepSpeed config) on CPU processes: accelerate drops DeepSpeed
    # when told cpu=True, and without an explicit backend it counts every rank as rank 0 of 1; gloo fixes both.
    backend = {}
    if cpu and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cpu, backend = False, {"backend": "gloo"}
    state = PartialState(cpu=cpu, **backend)
    world, micro = state.num_processes, cfg.micro_batch_size
    global_batch = cfg.global_batch_tokens // cfg.seq_len
    if global_batch * cfg.seq_len != cfg.global_batch_tokens or global_batch % (micro * world):
        raise ConfigError(
            f"pretrain.global_batch_tokens={cfg.global_batch_tokens} must be a multiple of seq_len x micro_batch_size "
            f"x processes = {cfg.seq_len} x {micro} x {world} = {cfg.seq_len * micro * world}"
        )
    accum = global_batch // (micro * world)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and fast_bf16())
    from accelerate.utils import InitProcessGroupKwargs

    accelerator = Accelerator(
        cpu=cpu,
        kwargs_handlers=[InitProcessGroupKwargs(**backend)] if backend else None,
        mixed_precision="bf16" if bf16 else "no",
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=accum, sync_with_dataloader=False),
        dynamo_backend="inductor" if cfg.compile else None,
    )
    main = accelerator.is_main_process
    if accelerator.distributed_type.name == "DEEPSPEED":  # no prepared DataLoader tells DeepSpeed these
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=micro, gradient_clipping=cfg.grad_clip)
    steps = total_steps(cfg, sum(m["splits"]["train"]["tokens"] for m in metas.values()), plan_dir)
    run_key = {"seq_len": cfg.seq_len, "global_batch": global_batch, "seed": seed, "block": mixture.block,
               "corpora": {n: [m["tokenizer_sha256"], m["splits"]["train"]["tokens"], w]
                           for (n, (_, w)), m in zip(data.items(), metas.values(), strict=True)}}
    caches = _teacher_caches(teacher, data, metas, mixture) if teacher else None
    if caches:
        run_key["teacher"] = {"caches": [c.meta.get("teacher_sha256") for c in caches],
                              "settings": vars(teacher["settings"])}
    # --- resume: the main process picks the checkpoint (shared filesystems lag), all load it ---
    ckpt_root = out_dir / "checkpoints"
    found = [None]
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / RUN_INFO, {
            "tokenizer_dir": str(tokenizer_dir), "seed": seed, "plan_dir": str(plan_dir) if plan_dir else None,
            "corpora": {n: {"token_dir": str(d), "weight": w, "prepared_dir": metas[n].get("prepared_dir")}
                        for n, (d, w) in data.items()},
            "config": cfg.model_dump(mode="json"),
            "settings": {"seq_len": cfg.seq_len, "global_batch_tokens": cfg.global_batch_tokens, "lr": cfg.lr,
                         "schedule": cfg.schedule, "warmup_steps": cfg.warmup_steps, "precision": cfg.precision},
        })
        ckpt.remove_partial(ckpt_root)
        latest = ckpt.latest_checkpoint(ckpt_root)
        found = [str(latest) if latest else None]
    broadcast_object_list(found)
    resume = Path(found[0]) if found[0] else None
    model_cfg = model_config(cfg, vocab_size, plan_dir)
    model = build_model(model_cfg, seed)
    model.set_attn_implementation(attention_kernel(cfg, accelerator.device))
    install_dropout(model, cfg.dropout)
    if cfg.init_from and resume is None:
        ckpt.load_model_weights(Path(cfg.init_from), model, subdir="")
    fused, slot = cfg.fused_loss, None
    chunk = cfg.loss_chunk_tokens or default_chunk(accelerator.device, vocab_size)
    if caches:  # the distillation loss, chunked and checkpointed like the plain one
        from dataclasses import replace

        from tongues.lm.distill_loss import install_kd_loss

        slot, fused = install_kd_loss(model, replace(teacher["settings"], chunk=chunk)), True
    elif fused:  # before the wrappers (DDP, FSDP, compile), which then see the loss inside the forward
        install_chunked_loss(model, chunk)
    if resume is not None:
        saved = ckpt.read_state(resume)
        if saved["run_key"] != run_key:
            raise ConfigError(f"{resume} was written by a run with different data settings ({saved['run_key']}); "
                              f"now {run_key}: use another --out directory, or delete {ckpt_root}")
        ckpt.load_model_weights(resume, model)
    from tongues.lm.sharding import apply_fsdp, enable_activation_checkpointing, local_parameter_count

    if cfg.activation_checkpointing:
        enable_activation_checkpointing(model, use_reentrant=False)
    fsdp = cfg.strategy == "fsdp" and world > 1
    if fsdp:  # sharded before the optimizer is made: it then holds the shards' states
        apply_fsdp(model, world, accelerator.device, cfg.reshard_after_forward, bf16)
        optimizer = accelerator.prepare(make_optimizer(model, cfg))
    else:
        optimizer = make_optimizer(model, cfg)
        model, optimizer = accelerator.prepare(model, optimizer)
    step, skipped, bad_run, ema = 0, 0, 0, None
    best = {"val_loss": None, "step": None, "since": 0}  # the lowest validation loss so far, for export/patience
    early = False  # stopped by `patience`: the run is over
    if resume is not None:
        saved = ckpt.load_training_state(resume, accelerator, model, optimizer)
        step, skipped, bad_run, ema = saved["step"], saved["skipped"], saved["bad_in_a_row"], saved["loss_ema"]
        best = saved.get("best", best)
        early = bool(saved.get("early_stopped"))
    log = MetricsLog(out_dir, main, cfg.tensorboard, step)
    local = gather_object([local_parameter_count(model)])
    if main:  # a DTensor's numel() is its global size: `parameters` is the whole model's either way
        write_json(out_dir / "parallel.json", {"strategy": cfg.strategy if world > 1 else "single", "processes": world,
                                               "local_parameters": local,
                                               "parameters": sum(p.numel() for p in model.parameters())})
    tokens_per_step = global_batch * cfg.seq_len
    fpt = flops_per_token(model_cfg, cfg.seq_len)
    peak = cfg.peak_flops or (peak_flops(accelerator.device, torch.bfloat16 if bf16 else torch.float32) if main else None)
    if main:
        n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
        print(f"pretrain: {n_params / 1e6:.2f}M params, {steps} steps x {tokens_per_step:,} tokens "
              f"({world} process(es) x {micro} seqs x {accum} accum), {'bf16' if bf16 else 'fp32'}"
              + (f", resuming at step {step} from {resume}" if resume else ""), flush=True)

    def save(at: int) -> Path:
        extra = {"skipped": skipped, "bad_in_a_row": bad_run, "loss_ema": ema, "run_key": run_key,
                 "total_steps": steps, "tokens": at * tokens_per_step, "samples": at * global_batch,
                 "best": best, "early_stopped": early}
        return ckpt.save_checkpoint(accelerator, model, optimizer, ckpt_root, at, extra, cfg.keep_checkpoints,
                                    sharded=cfg.strategy == "fsdp")

    # --- the loop -----------------------------------------------------------------------------
    status, last_eval, loss_val = "complete", None, float("nan")
    bar = tqdm(total=steps, initial=step, disable=not main, desc="pretrain", dynamic_ncols=True)
    t_log, tokens_since = time.perf_counter(), 0
    pin = accelerator.device.type == "cuda"  # pinned host memory makes the copy to the GPU asynchronous
    model.train()
    with stop_signals(accelerator):
        while step < steps and not early:
            lr = lr_at(step, lr=cfg.lr, total_steps=steps, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule,
                       min_lr_ratio=cfg.min_lr_ratio, decay_fraction=cfg.decay_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # sums over this process's micro-batches: loss, and a checksum of the token ids seen
            sums = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
            for a in range(accum):
                first, count = micro_batch(step, a, accelerator.process_index, global_batch=global_batch,
                                           world_size=world, size=micro)
                batch = mixture.batch(first, count)
                batch = (batch.pin_memory() if pin else batch).to(accelerator.device, non_blocking=True)
                if slot is not None:
                    from tongues.lm.teacher_cache import teacher_batch

                    signal = teacher_batch(caches, [mixture.locate(i) for i in range(first, first + count)])
                    slot.batch = tuple(t.to(accelerator.device, non_blocking=True) for t in signal)
                inputs, targets = batch[:, :-1], batch[:, 1:]
                with accelerator.accumulate(model):
                    loss = lm_loss(model, inputs, targets, cfg.doc_mask, fused)
                    accelerator.backward(loss)
                    sums[0] += loss.detach().double()
                    sums[1] += batch.sum().double()
                    if accelerator.sync_gradients:
                        grad_norm = (clip_sharded_grads(model, cfg.grad_clip) if fsdp
                                     else accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                        sums[2] = torch.as_tensor(grad_norm).detach().double() if grad_norm is not None else 0.0  # DeepSpeed: a float
                        loss_val, checksum, gnorm = accelerator.reduce(sums, "sum").tolist()  # the one sync
                        loss_val, gnorm = loss_val / (accum * world), gnorm / world
                        spike = ema is not None and cfg.spike_factor is not None and loss_val > cfg.spike_factor * ema
                        bad = not (math.isfinite(loss_val) and math.isfinite(gnorm)) or spike
                        if not bad:
                            optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
            step += 1
            if bad:
                skipped, bad_run = skipped + 1, bad_run + 1
            else:
                bad_run, ema = 0, loss_val if ema is None else 0.9 * ema + 0.1 * loss_val
            tokens_since += tokens_per_step
            record = {"step": step, "loss": loss_val, "lr": lr, "grad_norm": gnorm, "skipped": bad,
                      "data_checksum": int(checksum)}
            if step % cfg.log_every == 0 or step == steps or bad:
                elapsed = time.perf_counter() - t_log
                tps = tokens_since / elapsed
                record.update(tokens_per_s=tps, mfu=tps * fpt / (peak * world) if peak else None)
                t_log, tokens_since = time.perf_counter(), 0
                bar.set_postfix(loss=f"{loss_val:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}",
                                mfu=mfu_text(record["mfu"]), skipped=skipped, refresh=False)
            log.write("train", record, ("loss", "lr", "grad_norm", "tokens_per_s", "mfu"))
            bar.update(1)
            if bad_run >= cfg.max_bad_steps:
                last = ckpt.latest_checkpoint(ckpt_root)
                raise TrainingDiverged(
                    f"stopped at step {step}: the last {bad_run} steps had a non-finite or spiking loss "
                    f"(last loss {loss_val:.4g}, running mean {ema if ema is None else round(ema, 4)}); their updates "
                    f"were skipped. Last checkpoint: {last or 'none'}. Lower pretrain.lr or raise warmup_steps."
                )
            if step % cfg.eval_every == 0 or step == steps:
                if slot is not None:
                    slot.batch = None  # validation is the student's own cross-entropy
                last_eval = evaluate(model, evals, accelerator, micro, cfg.doc_mask, fused) if evals else None
                if last_eval and main:
                    log.write("eval", {"step": step, **last_eval}, ("val_loss", "val_bpb"))
                    bar.write(f"step {step}: val loss {last_eval['val_loss']:.4f}, {last_eval['val_bpb']:.4f} bits/byte")
                if last_eval:  # the same numbers on every process (reduced), so every process decides alike
                    if best["val_loss"] is None or last_eval["val_loss"] < best["val_loss"]:
                        best = {"val_loss": last_eval["val_loss"], "step": step, "since": 0}
                        if cfg.export == "best":
                            ckpt.save_weights(accelerator, model, ckpt_root, ckpt.BEST, {
                                "step": step, "val_loss": last_eval["val_loss"], "val_bpb": last_eval["val_bpb"],
                                "tokens": step * tokens_per_step, "skipped": skipped})
                    else:
                        best["since"] += 1
                    early = cfg.patience is not None and best["since"] >= cfg.patience and step < steps
            interrupted = accelerator.check_trigger()
            if step % cfg.checkpoint_every == 0 or step == steps or interrupted or step == stop_after or early:
                save(step)
            if early and main:
                bar.write(f"step {step}: stopping early, validation loss has not improved for {best['since']} "
                          f"evaluations (best {best['val_loss']:.4f} at step {best['step']})")
            if interrupted:
                bar.close()
                log.close()
                raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved, run again to resume")
            if step == stop_after:
                status = "stopped"
                break
    bar.close()
    log.close()
    if last_eval is None and main and (out_dir / "eval.jsonl").exists():  # nothing left to train: report the log
        evals = [json.loads(line) for line in (out_dir / "eval.jsonl").read_text().splitlines() if line]
        last_eval = evals[-1] if evals else None
        loss_val = json.loads((out_dir / "train.jsonl").read_text().splitlines()[-1])["loss"]
    last_ckpt = ckpt.checkpoint_path(ckpt_root, step)
    best_ckpt = ckpt.best_checkpoint(ckpt_root) if cfg.export == "best" else None
    result: dict[str, Any] = {
        "status": status, "steps": step, "total_steps": steps, "final_loss": loss_val, "skipped_steps": skipped,
        "tokens": step * tokens_per_step, "params": sum(p.numel() for p in accelerator.unwrap_model(model).parameters()),
        "checkpoint": str(last_ckpt), "processes": world, "device": accelerator.device.type,
        "epochs": dict(zip(data, (round(e, 3) for e in mixture.epochs_at(step * global_batch)), strict=True)),
    }
    if early:
        result["early_stopped_at"] = step
    if best["step"] is not None:
        result.update(best_step=best["step"], best_val_loss=best["val_loss"])
    if last_eval:
        result.update(val_loss=last_eval["val_loss"], val_bpb=last_eval["val_bpb"],
                      val={k: v for k, v in last_eval.items() if isinstance(v, dict)})
    export_from = best_ckpt or last_ckpt
    result["exported"] = "best" if best_ckpt else "last"
    if best_ckpt and main and (out_dir / "eval.jsonl").exists():  # report the exported step's validation
        chosen = [json.loads(line) for line in (out_dir / "eval.jsonl").read_text().splitlines() if line]
        chosen = [r for r in chosen if r["step"] == best["step"]]
        if chosen:
            result.update(val_loss=chosen[-1]["val_loss"], val_bpb=chosen[-1]["val_bpb"],
                          val={k: v for k, v in chosen[-1].items() if isinstance(v, dict)})
    result.update(steady_throughput(out_dir / "train.jsonl", fpt, peak, world) if main else {})
    if status == "complete" and export and main:
        from tongues.lm.export import export_model

        export_model(export_from, out_dir / "model", tokenizer_dir, run_dir=out_dir,
                     prepared_dirs=[m.get("prepared_dir") for m in metas.values()], plan=plan_stats, metrics=result)
        result["model_dir"] = str(out_dir / "model")
    accelerator.wait_for_everyone()
    return result


def clip_sharded_grads(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip an FSDP2 model's gradients (DTensor shards) by their global norm; returns that norm."""
    from torch.distributed.tensor import DTensor

    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


def _teacher_caches(teacher: dict[str, Any], data: dict[str, Any], metas: dict[str, Any], mixture: Any) -> list[Any]:
    """The teacher caches of the mixture's corpora, in its order, checked against their windows."""
    from tongues.lm.teacher_cache import TeacherCache, check_cache

    missing = [n for n in data if n not in teacher["caches"]]
    if missing:
        raise ConfigError(f"distillation: no teacher cache for corpus {', '.join(missing)}")
    caches = []
    for i, name in enumerate(data):
        cache = TeacherCache.open(teacher["caches"][name])
        check_cache(cache, mixture.seq_len, mixture.windows[i], metas[name]["tokenizer_sha256"], name)
        caches.append(cache)
    teacher["settings"].check()
    return caches


def _reset_accelerate_singletons() -> None:
    """Forget a previous run's Accelerator settings in this process (mixed precision, accumulation),
    keeping the process group; accelerate refuses to change them otherwise."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def run_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stage "pretrain-<model>": train on ctx.inputs["tokenize-<model>"], export to out_dir/model.

    ctx.stage.extra: {"corpora": {name: weight}, "tokenizer": name, "sample_prompts": [...]};
    optional inputs "plan-<model>" (config.json, plan.json) and "tokenizer-<t>".
    """
    extra = ctx.stage.extra
    model_name = ctx.stage.name.removeprefix("pretrain-")
    token_root = ctx.inputs[f"tokenize-{model_name}"]
    tokenizer_dir = ctx.inputs.get(f"tokenizer-{extra['tokenizer']}") or Path(read_meta(
        token_root / next(iter(extra["corpora"])))["tokenizer_dir"])
    plan_dir = ctx.inputs.get(f"plan-{model_name}")
    plan = None
    if plan_dir is not None and (Path(plan_dir) / "plan.json").exists():
        plan = json.loads((Path(plan_dir) / "plan.json").read_text(encoding="utf-8"))
    data = {name: (token_root / name, weight) for name, weight in extra["corpora"].items()}
    result = pretrain(ctx.config, data, tokenizer_dir, ctx.out_dir, seed=ctx.seed, plan_dir=plan_dir, plan_stats=plan)
    if "model_dir" in result:
        from tongues.lm.export import sample_generations

        result["samples"] = sample_generations(result["model_dir"], extra.get("sample_prompts") or [])
    bpb = result.get("val_bpb")
    result["headline"] = (f"val {bpb:.3f} bits/byte, " if bpb is not None else "") + (
        f"{result['params'] / 1e6:.1f}M params, {result['steps']} steps, {result.get('tokens_per_s', 0):,.0f} tok/s")
    return result
