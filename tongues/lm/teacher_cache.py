"""A teacher's next-token distributions over a corpus's training windows, cached once, memory-mapped.

Layout of one cache directory (one per corpus of the student's mixture)::

    meta.json      teacher, tokenizer sha256, seq_len, k, temperature, windows, the token dir's size
    ids.bin        int32   [windows * seq_len, k]  the teacher's top-k token ids per target position
    logprobs.bin   float16 [windows * seq_len, k]  their log-probabilities at the temperature
    rest.bin       float16 [windows * seq_len]     log of the probability left to the other tokens

Row `window * seq_len + t` is the teacher's prediction of target t of training window `window`
(`tongues.lm.packing`: inputs tokens[w*L : w*L+L], targets shifted by one), computed from the same
window the student sees, so the student is distilled with exactly its own context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tongues.errors import DataError

META = "meta.json"
FORMAT = 1


@dataclass
class TeacherCache:
    directory: Path
    meta: dict[str, Any]
    ids: np.ndarray
    logprobs: np.ndarray
    rest: np.ndarray

    @classmethod
    def open(cls, directory: str | Path) -> TeacherCache:
        directory = Path(directory)
        path = directory / META
        if not path.is_file():
            raise DataError(f"{directory}: not a teacher cache (no {META}); build one with `tongues distill`")
        meta = json.loads(path.read_text(encoding="utf-8"))
        rows, k = meta["windows"] * meta["seq_len"], meta["k"]
        try:
            ids = np.memmap(directory / "ids.bin", dtype=np.int32, mode="r", shape=(rows, k))
            logprobs = np.memmap(directory / "logprobs.bin", dtype=np.float16, mode="r", shape=(rows, k))
            rest = np.memmap(directory / "rest.bin", dtype=np.float16, mode="r", shape=(rows,))
        except (OSError, ValueError) as err:
            raise DataError(f"{directory}: incomplete teacher cache ({err}); delete it to rebuild") from None
        return cls(directory, meta, ids, logprobs, rest)

    def window(self, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        L = self.meta["seq_len"]
        s = slice(window * L, (window + 1) * L)
        return self.ids[s], self.logprobs[s], self.rest[s]


def teacher_batch(caches: list[TeacherCache], samples: list[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher signal of packed samples (`PackedMixture.locate` results), stacked [n, L, k] / [n, L]."""
    parts = [caches[s.corpus].window(s.window) for s in samples]
    ids = torch.from_numpy(np.stack([p[0] for p in parts]).astype(np.int64))
    logp = torch.from_numpy(np.stack([p[1] for p in parts]).astype(np.float32))
    rest = torch.from_numpy(np.stack([p[2] for p in parts]).astype(np.float32))
    return ids, logp, rest


def check_cache(cache: TeacherCache, seq_len: int, windows: int, tokenizer_sha: str, corpus: str) -> None:
    """DataError unless `cache` was made for this corpus's windows and tokenizer."""
    m = cache.meta
    if m["seq_len"] != seq_len or m["windows"] != windows or m["tokenizer_sha256"] != tokenizer_sha:
        raise DataError(f"{cache.directory}: teacher cache for seq_len {m['seq_len']}, {m['windows']} windows, "
                        f"tokenizer {m['tokenizer_sha256'][:12]}; corpus {corpus} now has seq_len {seq_len}, "
                        f"{windows} windows, tokenizer {tokenizer_sha[:12]}: rebuild it")


__all__ = ["FORMAT", "META", "TeacherCache", "check_cache", "teacher_batch"]
