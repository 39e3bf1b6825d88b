"""Packed training sequences from token shards, addressed by one number: the global sample index.

A corpus's train tokens (documents joined by EOS, see `tongues.data.tokenize`) are cut into
non-overlapping windows of `seq_len + 1` tokens sharing one token at each seam, so window j's
inputs are tokens[j*L : j*L+L] and its targets tokens[j*L+1 : j*L+L+1]: every token is predicted
exactly once per epoch (the tail shorter than a window is the only part left out). Each epoch
visits the windows in its own seeded permutation.

Several corpora are mixed by weight in blocks: every block of `block` samples holds a fixed number
of each corpus's samples (the weights, rounded by largest remainder) in a seeded order. So sample
number i of the whole run is a pure function of (i, seed, corpora, weights, seq_len): there is no
per-rank iterator state. A checkpoint stores only the step; any number of processes can resume it,
each taking its slice of every global batch (`micro_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from tongues.data.tokenize import TokenSplit
from tongues.errors import DataError

_MIX_STREAM = 0x6D6978  # keeps the block-order RNG stream apart from the per-corpus epoch streams


def block_counts(weights: Sequence[float], block: int) -> list[int]:
    """Samples per corpus in a block of `block`: weights normalized, rounded by largest remainder,
    and at least one for every corpus (so no corpus with a weight is starved)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or (w <= 0).any():
        raise DataError(f"corpus weights must be positive, got {list(weights)}")
    exact = w / w.sum() * block
    counts = np.maximum(np.floor(exact).astype(np.int64), 1)
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if counts.sum() >= block:
            break
        counts[i] += 1
    return counts.tolist()


@dataclass
class Sample:
    corpus: int  # index into the mixture's corpora
    window: int  # window number inside that corpus
    epoch: int  # how many times that corpus has been gone through before this sample


class PackedMixture:
    """Global sample index -> training window, for one or more weighted corpora."""

    def __init__(
        self, splits: Sequence[TokenSplit], weights: Sequence[float], seq_len: int, seed: int, block: int = 1024
    ) -> None:
        self.splits = list(splits)
        self.seq_len = seq_len
        self.seed = seed
        self.windows = [(s.num_tokens - 1) // seq_len for s in self.splits]
        for i, n in enumerate(self.windows):
            if n < 1:
                raise DataError(
                    f"corpus #{i} has {self.splits[i].num_tokens} train tokens, fewer than one sequence of "
                    f"seq_len+1 = {seq_len + 1}: lower seq_len or add data"
                )
        self.counts = block_counts(weights, block)
        self.block = sum(self.counts)
        self._epoch_order = lru_cache(maxsize=2 * len(self.splits) + 2)(self._permutation)
        self._block_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _permutation(self, corpus: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, corpus, epoch]).permutation(self.windows[corpus])

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Corpus of each slot in block b, and each slot's rank among its corpus's slots."""
        if self._block_cache is None or self._block_cache[0] != b:
            order = np.repeat(np.arange(len(self.counts)), self.counts)
            order = np.random.default_rng([self.seed, _MIX_STREAM, b]).permutation(order)
            ranks = np.empty_like(order)
            for c in range(len(self.counts)):
                slots = order == c
                ranks[slots] = np.arange(int(slots.sum()))
            self._block_cache = (b, order, ranks)
        return self._block_cache[1], self._block_cache[2]

    def locate(self, index: int) -> Sample:
        """Which corpus, window and epoch global sample `index` is."""
        b, slot = divmod(index, self.block)
        order, ranks = self._block(b)
        corpus = int(order[slot])
        within = b * self.counts[corpus] + int(ranks[slot])  # sample number inside the corpus
        epoch, pos = divmod(within, self.windows[corpus])
        return Sample(corpus, int(self._epoch_order(corpus, epoch)[pos]), epoch)

    def window_tokens(self, sample: Sample) -> np.ndarray:
        start = sample.window * self.seq_len
        return self.splits[sample.corpus].tokens[start : start + self.seq_len + 1]

    def batch(self, start: int, count: int) -> torch.Tensor:
        """Samples start..start+count-1 as a LongTensor [count, seq_len + 1] (inputs = [:, :-1])."""
        rows = np.stack([self.window_tokens(self.locate(i)) for i in range(start, start + count)])
        return torch.from_numpy(rows.astype(np.int64))

    def epochs_at(self, samples: int) -> list[float]:
        """How many epochs of each corpus the first `samples` samples cover."""
        full, rest = divmod(samples, self.block)
        order, _ = self._block(full)
        return [
            (full * n + int((order[:rest] == c).sum())) / self.windows[c] for c, n in enumerate(self.counts)
        ]


def micro_batch(step: int, micro: int, rank: int, *, global_batch: int, world_size: int, size: int) -> tuple[int, int]:
    """(first global sample index, count) of micro-step `micro` of `step` on process `rank`.

    A step covers samples [step*global_batch, (step+1)*global_batch); within it, micro-step a hands
    consecutive runs of `size` samples to ranks 0..W-1. The union over ranks and micro-steps is the
    same for any W, so changing the process count keeps the data order.
    """
    return step * global_batch + (micro * world_size + rank) * size, size


def document_positions(inputs: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Position ids that restart after every EOS, for document-masked attention.

    transformers turns position ids that restart inside a row into a block-diagonal causal mask
    (packed-sequence detection), so no token attends across a document boundary.
    """
    length = inputs.shape[1]
    arange = torch.arange(length, device=inputs.device).expand_as(inputs)
    starts = torch.zeros_like(inputs, dtype=torch.bool)
    starts[:, 1:] = inputs[:, :-1] == eos_id
    starts[:, 0] = True
    last_start = torch.where(starts, arange, torch.zeros_like(arange)).cummax(dim=1).values
    return arange - last_start


@dataclass
class EvalSet:
    """The first whole documents of a validation split, up to a token budget, as padded windows."""

    windows: torch.Tensor  # [n, seq_len + 1]; -1 marks padding in the last window
    num_bytes: int  # UTF-8 bytes of the documents covered (for bits per byte)
    num_targets: int


def eval_set(split: TokenSplit, seq_len: int, max_tokens: int) -> EvalSet | None:
    """Non-overlapping windows over the first documents of `split` totalling at most `max_tokens`
    tokens (at least one document); None when the split is empty."""
    if split.num_tokens < 2:
        return None
    offsets = np.asarray(split.offsets)
    docs = max(1, int(np.searchsorted(offsets, max_tokens, side="right")) - 1)
    docs = min(docs, len(offsets) - 1)
    tokens = np.asarray(split.tokens[: offsets[docs]], dtype=np.int64)
    n = -(-(len(tokens) - 1) // seq_len)  # ceil: the last window is padded
    padded = np.full(n * seq_len + 1, -1, dtype=np.int64)
    padded[: len(tokens)] = tokens
    rows = np.lib.stride_tricks.sliding_window_view(padded, seq_len + 1)[::seq_len]
    return EvalSet(torch.from_numpy(rows.copy()), int(np.asarray(split.doc_bytes[:docs]).sum()), len(tokens) - 1)
