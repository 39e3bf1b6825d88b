"""Build the teacher cache of `tongues.lm.teacher_cache`: the teacher runs once over every training
window of a token directory and keeps its top-k log-probabilities (at temperature T) and the log of
the rest of the mass per position. Written under a temporary name, then renamed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tongues.lm.teacher_cache import FORMAT, META
from tongues.manifest import atomic_path, write_json


def build_teacher_cache(teacher: Any, token_dir: str | Path, out_dir: str | Path, *, seq_len: int, k: int = 32,
                        temperature: float = 1.0, batch_size: int = 8, teacher_sha: str = "",
                        progress: bool = True) -> Path:
    """Cache `teacher`'s distributions over the train windows of `token_dir` into `out_dir`."""
    from tongues.data.tokenize import load_split, read_meta
    from tongues.progress import progress_bar

    out_dir = Path(out_dir)
    meta_tokens = read_meta(token_dir)
    split = load_split(token_dir, "train")
    windows = (split.num_tokens - 1) // seq_len
    meta = {"format": FORMAT, "teacher_sha256": teacher_sha, "tokenizer_sha256": meta_tokens["tokenizer_sha256"],
            "seq_len": seq_len, "k": k, "temperature": temperature, "windows": windows,
            "train_tokens": split.num_tokens, "token_dir": str(token_dir)}
    if (out_dir / META).is_file() and json.loads((out_dir / META).read_text(encoding="utf-8")) == meta:
        return out_dir  # already built for this teacher and these windows
    rows = windows * seq_len
    device = next(teacher.parameters()).device
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        ids = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=np.int32, shape=(rows, k))
        logp = np.lib.format.open_memmap(tmp / "logprobs.npy", mode="w+", dtype=np.float16, shape=(rows, k))
        rest = np.lib.format.open_memmap(tmp / "rest.npy", mode="w+", dtype=np.float16, shape=(rows,))
        tokens = np.asarray(split.tokens)
        bar = progress_bar(total=windows, desc="teacher cache", unit="win", disable=not progress)
        with torch.no_grad():
            for start in range(0, windows, batch_size):
                n = min(batch_size, windows - start)
                batch = np.stack([tokens[(start + i) * seq_len:(start + i) * seq_len + seq_len] for i in range(n)])
                logits = teacher(input_ids=torch.from_numpy(batch.astype(np.int64)).to(device)).logits.float()
                lp = torch.log_softmax(logits / temperature, dim=-1)
                top, top_ids = lp.topk(k, dim=-1)
                left = torch.log1p(-top.exp().sum(-1).clamp(max=1 - 1e-6))
                s, e = start * seq_len, (start + n) * seq_len
                ids[s:e] = top_ids.reshape(-1, k).cpu().numpy().astype(np.int32)
                logp[s:e] = top.reshape(-1, k).cpu().numpy().astype(np.float16)
                rest[s:e] = left.reshape(-1).cpu().numpy().astype(np.float16)
                bar.update(n)
        bar.close()
        for name, array in (("ids", ids), ("logprobs", logp), ("rest", rest)):
            array.flush()
            _raw(tmp / f"{name}.npy", tmp / f"{name}.bin")
        write_json(tmp / META, meta)
    return out_dir


def _raw(npy: Path, raw: Path) -> None:
    """The .npy's data as a headerless file (what TeacherCache memory-maps)."""
    array = np.load(npy, mmap_mode="r")
    array.tofile(raw)
    npy.unlink()


__all__ = ["build_teacher_cache"]
