"""Data position: packed windows, epochs, corpus mixing and the split of a global batch over processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tongues.data.tokenize import TokenSplit
from tongues.lm.lr_schedule import lr_at
from tongues.lm.packing import PackedMixture, block_counts, document_positions, eval_set, micro_batch


def split_of(tokens: np.ndarray, doc_lengths: list[int] | None = None) -> TokenSplit:
    lengths = doc_lengths or [len(tokens)]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenSplit(tokens, offsets, np.asarray([3 * n for n in lengths], dtype=np.int64))


def test_an_epoch_predicts_every_token_once_in_a_seeded_order():
    seq_len, n_tokens = 8, 8 * 25 + 5  # 25 windows, a 4-token tail that no window can hold
    mix = PackedMixture([split_of(np.arange(n_tokens, dtype=np.uint32))], [1.0], seq_len, seed=3)
    assert mix.windows == [25]
    batch = mix.batch(0, 25).numpy()
    targets = np.sort(batch[:, 1:].ravel())
    assert targets.tolist() == list(range(1, 25 * 8 + 1))  # each token predicted once, none skipped
    assert (batch[:, 1:] == batch[:, :-1] + 1).all()  # windows are contiguous text
    second = mix.batch(25, 25).numpy()
    assert sorted(second[:, 0]) == sorted(batch[:, 0])  # epoch 2 covers the same windows ...
    assert second[:, 0].tolist() != batch[:, 0].tolist()  # ... in a different order
    assert [mix.locate(i).epoch for i in (0, 24, 25, 49, 50)] == [0, 0, 1, 1, 2]
    again = PackedMixture([split_of(np.arange(n_tokens, dtype=np.uint32))], [1.0], seq_len, seed=3)
    assert torch.equal(again.batch(0, 25), mix.batch(0, 25))  # seed fixes the order
    other = PackedMixture([split_of(np.arange(n_tokens, dtype=np.uint32))], [1.0], seq_len, seed=4)
    assert not torch.equal(other.batch(0, 25), mix.batch(0, 25))


def test_corpora_mix_by_weight_and_each_keeps_its_own_epochs():
    a = split_of(np.arange(0, 8 * 50 + 1, dtype=np.uint32))
    b = split_of(np.arange(10_000, 10_000 + 8 * 400 + 1, dtype=np.uint32))
    mix = PackedMixture([a, b], [0.25, 0.75], seq_len=8, seed=0, block=64)
    assert mix.counts == [16, 48]
    samples = [mix.locate(i) for i in range(640)]
    share_a = sum(s.corpus == 0 for s in samples) / len(samples)
    assert share_a == pytest.approx(0.25)
    windows_a = [s.window for s in samples if s.corpus == 0]
    assert len(windows_a) == 160 and sorted(windows_a[:50]) == list(range(50))  # a's first epoch: all 50 once
    assert mix.epochs_at(640) == pytest.approx([160 / 50, 480 / 400])
    assert block_counts([1, 1, 1], 10) == [4, 3, 3] and block_counts([1000, 1], 8) == [7, 1]


def test_global_batch_is_split_the_same_way_for_any_process_count():
    global_batch = 24

    def samples(world: int, micro: int) -> list[int]:
        accum = global_batch // (micro * world)
        got = []
        for step in range(3):
            for a in range(accum):
                for rank in range(world):
                    first, count = micro_batch(step, a, rank, global_batch=global_batch, world_size=world, size=micro)
                    got += range(first, first + count)
        return got

    one = samples(1, 4)
    assert one == list(range(72))
    assert sorted(samples(2, 4)) == one and sorted(samples(3, 2)) == one and sorted(samples(4, 6)) == one


def test_document_positions_restart_after_eos():
    x = torch.tensor([[5, 6, 3, 7, 8, 9, 3, 4], [3, 1, 1, 1, 1, 3, 3, 2]])
    assert document_positions(x, 3).tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], [0, 0, 1, 2, 3, 4, 0, 0]]


def test_eval_set_takes_whole_documents_and_pads_the_last_window():
    tokens = np.arange(1, 31, dtype=np.uint16)
    es = eval_set(split_of(tokens, [10, 10, 10]), seq_len=8, max_tokens=20)
    assert es.num_bytes == 60 and es.num_targets == 19  # two whole documents, 20 tokens
    assert es.windows.shape == (3, 9)
    flat = es.windows[:, 1:].flatten()
    assert flat[flat >= 0].tolist() == list(range(2, 21)) and (flat[19:] == -1).all()


def test_lr_schedules():
    kw = dict(lr=1.0, total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1) and lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(99, **kw) == pytest.approx(0.1)
    cos = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(x >= y for x, y in zip(cos, cos[1:], strict=False))
    wsd = [lr_at(s, schedule="wsd", decay_fraction=0.2, **kw) for s in range(100)]
    assert wsd[10:80] == [1.0] * 70 and wsd[-1] == pytest.approx(0.1) and wsd[85] < wsd[80]
