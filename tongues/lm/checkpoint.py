"""Training checkpoints: written under a temporary name and renamed, so a kill mid-write is harmless.

One checkpoint is a directory ``ROOT/step-00000100/``::

    model/              a Hugging Face model directory (config.json, model.safetensors,
                        generation_config.json): loadable by transformers from the first checkpoint
    optimizer.pt        the optimizer's full state dict (tensors and numbers; torch.load(weights_only=True))
    rng.json            every process's torch / numpy / python RNG states
    trainer_state.json  step, data position (global sample index), loss EMA, skip counters, settings

It is first written as ``ROOT/.step-00000100.tmp`` and renamed when complete; a directory without
trainer_state.json, or a temporary one, is never loaded. The last `keep` checkpoints are kept.
``ROOT/best/`` holds the weights (``model/``) and trainer state of the step with the lowest
validation loss so far, written the same way; it is exported, never resumed from.
Works for one process, DDP, FSDP (full state dicts gathered on rank 0) and DeepSpeed (its engine
writes its own optimizer shards under ``deepspeed/``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tongues.errors import DataError
from tongues.manifest import write_json

STATE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_path(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE).exists()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_state(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE).read_text(encoding="utf-8"))


def remove_partial(root: str | Path) -> None:
    """Delete temporaries left by a write that was killed (they are never loaded anyway)."""
    root = Path(root)
    if root.is_dir():
        for p in [*root.glob(".step-*.tmp"), *root.glob(f".{BEST}.tmp")]:
            shutil.rmtree(p, ignore_errors=True)
        old = root / f".{BEST}.old"
        if old.exists() and not (root / BEST).exists():  # killed between the two renames
            os.replace(old, root / BEST)
        shutil.rmtree(old, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    """This process's RNG states as JSON-able lists."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _is_fsdp(accelerator: Any) -> bool:
    return accelerator.distributed_type.name == "FSDP"


def _is_deepspeed(accelerator: Any) -> bool:
    return accelerator.distributed_type.name == "DEEPSPEED"


def _save_optimizer(accelerator: Any, model: Any, optimizer: Any, path: Path) -> None:
    if _is_deepspeed(accelerator):
        model.save_checkpoint(str(path / "deepspeed"), tag="state")  # every rank writes its shard
        return
    if _is_fsdp(accelerator):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(model, _inner(optimizer), options=_full_options())  # the FSDP-wrapped root
    else:
        state = optimizer.state_dict()
    if accelerator.is_main_process:
        torch.save(state, path / "optimizer.pt")


def full_state_dict(accelerator: Any, model: Any) -> dict[str, torch.Tensor]:
    """The whole model's weights, gathered from FSDP2 / ZeRO-3 shards (every process must call this;
    the main one gets full CPU tensors)."""
    from tongues.lm.sharding import is_sharded

    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model, options=_full_options())
    return plain_keys(accelerator.get_state_dict(model))


COMPILED = "_orig_mod."  # torch.compile's wrapper puts this in front of every weight name


def plain_keys(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weight names of the model itself: a compiled model's state dict (accelerate keeps the
    torch.compile wrapper) names every weight `_orig_mod.<name>`, which from_pretrained does not know."""
    return {k.replace(COMPILED, ""): v for k, v in weights.items()}


def _full_options() -> Any:
    """Whole (unsharded) state dicts, gathered to CPU on the main process."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _inner(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's wrapper (or the optimizer itself)."""
    return getattr(optimizer, "optimizer", optimizer)


def save_checkpoint(
    accelerator: Any, model: Any, optimizer: Any, root: str | Path, step: int, state: dict[str, Any], keep: int,
    sharded: bool = False,
) -> Path:
    """Write checkpoint `step` under `root` (all processes call this); returns its path. `sharded`
    (FSDP2): model and optimizer as torch.distributed.checkpoint shards in dcp/ (each process writes
    its own), plus the gathered full weights in model/ for export."""
    from accelerate.utils import gather_object

    root = Path(root)
    final, tmp = checkpoint_path(root, step), root / f".step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    weights = full_state_dict(accelerator, model)
    rngs = gather_object([rng_state()])
    if accelerator.is_main_process:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a "Writing model shards" bar at every checkpoint is noise
        try:
            accelerator.unwrap_model(model).save_pretrained(tmp / "model", state_dict=weights)
        finally:
            hf_logging.enable_progress_bar()
    if sharded:
        _save_sharded(model, optimizer, tmp)
    else:
        _save_optimizer(accelerator, model, optimizer, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "rng.json").write_text(json.dumps(rngs), encoding="utf-8")
        write_json(tmp / STATE, {**state, "step": step, "world_size": accelerator.num_processes})
        if final.exists():  # the same step written again (a resumed run stopping where it started)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


BEST = "best"


def best_checkpoint(root: str | Path) -> Path | None:
    path = Path(root) / BEST
    return path if (path / STATE).exists() else None


def save_weights(accelerator: Any, model: Any, root: str | Path, name: str, state: dict[str, Any]) -> Path:
    """Write only the weights and `state` as ``root/name`` (all processes call this), atomically."""
    root = Path(root)
    final, tmp = root / name, root / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    weights = full_state_dict(accelerator, model)
    if accelerator.is_main_process:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            accelerator.unwrap_model(model).save_pretrained(tmp / "model", state_dict=weights)
        finally:
            hf_logging.enable_progress_bar()
        write_json(tmp / STATE, state)
        old = root / f".{name}.old"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_model_weights(path: str | Path, model: torch.nn.Module, subdir: str = "model") -> None:
    """Load checkpoint `path`'s safetensors (in `subdir`; "" for a model directory itself) into an
    unprepared model (before accelerator.prepare)."""
    from safetensors.torch import load_file

    where = Path(path) / subdir if subdir else Path(path)
    files = sorted(where.glob("*.safetensors"))
    if not files:
        raise DataError(f"{where}: no .safetensors weights here")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(f))
    weights = plain_keys(weights)  # checkpoints of compiled runs written before the names were fixed
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ()) if model.config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise DataError(
            f"{where}: weights do not match the model (missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}): was the model shape changed since this checkpoint?"
        )


def _save_sharded(model: Any, optimizer: Any, path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, _inner(optimizer))
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(path / "dcp"))


def _load_sharded(model: Any, optimizer: Any, path: Path) -> None:
    """Model and optimizer from dcp/ shards, resharded to this run's processes (any world size)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    inner = _inner(optimizer)
    model_sd, optim_sd = get_state_dict(model, inner)
    state = {"model": model_sd, "optimizer": optim_sd}
    dcp.load(state, checkpoint_id=str(path / "dcp"))
    set_state_dict(model, inner, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def load_training_state(path: str | Path, accelerator: Any, model: Any, optimizer: Any) -> dict[str, Any]:
    """Restore optimizer and RNG states of checkpoint `path` into prepared objects; returns its trainer state."""
    from tongues.lm.sharding import is_sharded

    path = Path(path)
    if (path / "dcp").is_dir():
        _load_sharded(model, optimizer, path)
    elif _is_deepspeed(accelerator):
        model.load_checkpoint(str(path / "deepspeed"), tag="state", load_module_strict=False)
    else:
        state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        if _is_fsdp(accelerator) or is_sharded(model):  # a full optimizer state into FSDP shards
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(model, _inner(optimizer), state, options=_full_options())
        else:
            optimizer.load_state_dict(state)
    rngs = json.loads((path / "rng.json").read_text(encoding="utf-8"))
    # Same process count: each process gets its own states back; otherwise rank 0's are shared.
    index = accelerator.process_index if len(rngs) == accelerator.num_processes else 0
    set_rng_state(rngs[index])
    return read_state(path)
