"""Teachers: any Hugging Face causal LM directory or hub name, or a GGUF file (llama.cpp's format,
read by transformers' GGUF loader with the `gguf` package and dequantized on the CPU)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tongues.errors import DataError, TonguesError


def is_gguf(spec: str | Path) -> bool:
    return str(spec).lower().endswith(".gguf")


def load_teacher(spec: str | Path, dtype: Any = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a teacher: a model directory, a hub name, or a .gguf file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or torch.float32
    if is_gguf(spec):
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"--teacher {path}: no such GGUF file")
        try:
            import gguf  # noqa: F401  (transformers' GGUF loader needs it)
        except ImportError:
            raise TonguesError('a GGUF teacher needs the gguf package: pip install gguf') from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        except Exception as err:  # a truncated or foreign file: the loader raises many kinds
            raise DataError(f"--teacher {path}: not a readable GGUF model ({str(err).splitlines()[0][:200]})") from None
        return model.eval(), tokenizer
    from tongues.hub import resolve_model_dir

    directory = resolve_model_dir(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True, trust_remote_code=False,
                                                     dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DataError(f"--teacher {directory}: cannot load it as a causal LM ({str(err).splitlines()[0]})") from None
    return model.eval(), tokenizer


def teacher_id(spec: str | Path) -> str:
    """A stable id of the teacher's weights (sha256 of its weight files' sizes and names, fast)."""
    path = Path(spec)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) if path.is_dir() else []
    digest = hashlib.sha256(str(spec).encode())
    for f in files:
        digest.update(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}".encode())
    return digest.hexdigest()


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers map every token to the same id (logit distillation needs it)."""
    return a.get_vocab() == b.get_vocab()


__all__ = ["is_gguf", "load_teacher", "same_vocabulary", "teacher_id"]
