"""Students: an existing model, a planner shape with a given tokenizer, or a copy of the teacher that
keeps K of its layers, evenly spaced (DistilBERT's initialization)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError
from tongues.lm.export import TOKENIZER_FILES
from tongues.manifest import atomic_path, write_json


def kept_layers(total: int, keep: int) -> list[int]:
    """`keep` of `total` layer indices, evenly spaced, first and last included (e.g. 4 of 8: 0, 2, 5, 7)."""
    if not 1 <= keep <= total:
        raise ConfigError(f"--student-layers {keep}: the teacher has {total} layers; keep between 1 and {total}")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def layer_dropped_student(teacher: Any, teacher_dir: Path | None, tokenizer: Any, keep: int, out_dir: Path) -> Path:
    """A student directory: the teacher's config with `keep` layers and the weights of the kept layers
    (embeddings, final norm and head copied), plus the teacher's tokenizer."""
    import torch

    config = teacher.config
    layers = kept_layers(config.num_hidden_layers, keep)
    state = teacher.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if "layers" in parts:
            at = parts.index("layers")
            index = int(parts[at + 1])
            if index not in layers:
                continue
            parts[at + 1] = str(layers.index(index))
        renamed[".".join(parts)] = value.detach().clone().float()
    student_config = type(config).from_dict({**config.to_dict(), "num_hidden_layers": keep})
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(student_config)
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    if unexpected or set(missing) - tied - {"lm_head.weight"}:
        raise ConfigError(f"layer-dropped student: weights do not fit (missing {sorted(missing)[:3]}, "
                          f"unexpected {sorted(unexpected)[:3]})")
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if teacher_dir is not None and (teacher_dir / "tokenizer.json").is_file():
            _copy_tokenizer_meta(teacher_dir, tmp)  # the very files: token shards check their sha256
        else:
            tokenizer.save_pretrained(tmp)
        write_json(tmp / "student.json", {"init": "layer-dropped", "teacher_layers": config.num_hidden_layers,
                                          "kept_layers": layers})
    return out_dir


def planned_student(params: float, tokenizer_dir: Path, seq_len: int, out_dir: Path) -> Path:
    """A student directory holding only the planner's shape for `params` with this tokenizer (random
    init at training time) and the tokenizer files."""
    from tokenizers import Tokenizer

    from tongues.plan.shapes import shape_for_params

    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    shape = shape_for_params(params, vocab, seq_len)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_json(tmp / "config.json", {**shape.llama_config().to_dict(), "architectures": ["LlamaForCausalLM"]})
        _copy_tokenizer_meta(tokenizer_dir, tmp)
        write_json(tmp / "student.json", {"init": "planned", "params": params, "shape": shape.to_dict()})
    return out_dir


def _copy_tokenizer_meta(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).exists() and not (target / name).exists():
            shutil.copy2(source / name, target / name)


def student_config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "config.json").read_text(encoding="utf-8"))


__all__ = ["kept_layers", "layer_dropped_student", "planned_student", "student_config"]
