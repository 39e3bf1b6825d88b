"""The character n-gram floor (tongues.eval.ngram) and its place beside the demo's bits per byte."""

from __future__ import annotations

import math

import pytest

from tongues.errors import DataError
from tongues.eval.ngram import CharNGram

TEXT = ["오늘은 날씨가 맑다. 내일도 날씨가 맑겠다.", "날씨가 맑으면 산책을 간다.", "the cat sat on the mat"] * 5


def test_probabilities_sum_to_one_over_seen_characters_plus_unknown():
    model = CharNGram.fit(TEXT)
    for history in ("\x02\x02", "날씨", "zz", "e "):
        seen = sum(model.prob(history, c) for c in model.counts[0][""])
        assert 0.99 < seen < 1.0  # the rest is the <unk> share


def test_a_trigram_beats_a_unigram_and_scores_unseen_characters_finitely():
    held = ["날씨가 맑다. 산책을 간다.", "the cat sat"]
    tri, uni = CharNGram.fit(TEXT, order=3), CharNGram.fit(TEXT, order=1)
    assert tri.bits_per_byte(held) < uni.bits_per_byte(held)
    unseen = tri.bits("💡")  # never seen: <unk> share plus 8 bits per UTF-8 byte
    assert math.isfinite(unseen) and unseen > 32


def test_bits_per_byte_counts_utf8_bytes():
    model = CharNGram.fit(TEXT)
    text = "날씨가 맑다."
    assert model.bits_per_byte([text]) == pytest.approx(model.bits(text) / len(text.encode("utf-8")))


def test_no_text_is_a_clear_error():
    with pytest.raises(DataError, match="needs training text"):
        CharNGram.fit(["", ""])
    with pytest.raises(DataError, match="no text to score"):
        CharNGram.fit(TEXT).bits_per_byte([""])


def test_eval_stage_puts_the_trigram_beside_bits_per_byte(tmp_path):
    """add_trigram_floor: the floor is trained on the given text and scored on the task's documents."""
    from types import SimpleNamespace

    from tongues.eval.registry import resolve_tasks
    from tongues.eval.stage import add_trigram_floor, headline
    from tongues.eval.task_kinds import TaskInput

    spec = resolve_tasks(["ko_heldout_bpb"])[0]
    docs = [{"text": t} for t in TEXT[:2]]
    task = TaskInput(spec, docs)
    outcome = SimpleNamespace(metrics={"bits_per_byte": 1.0})
    run = SimpleNamespace(tasks=[task], outcomes={"m": {spec.task: outcome}})
    add_trigram_floor(run, "m", {"ko": TEXT}, log=lambda _: None)
    floor = CharNGram.fit(TEXT).bits_per_byte(TEXT[:2])
    assert outcome.metrics["trigram_bits_per_byte"] == pytest.approx(floor)
    assert outcome.metrics["vs_trigram"] == pytest.approx(1.0 / floor)
    assert f"(trigram {floor:.3f}" in headline(run, "m")
