"""Training text for a tokenizer: temperature-sampled language mixing within a character budget.

Several languages share one vocabulary. Sampling them in proportion to their size lets a large
language take the vocabulary; sampling language i with probability p_i ∝ (n_i / N)^T (XLM-R,
mT5; T = 0.3 by default) raises the small ones. We stream each source twice (count, then sample),
so memory stays bounded however large the corpus: only the sampled lines, at most `budget_chars`
characters, are written for SentencePiece to load.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tongues.errors import DataError
from tongues.tokenizers.normalization import normalize_text

# SentencePiece skips sentences longer than its `max_sentence_length` (bytes); we cut long lines
# at whitespace into chunks of at most this many characters, and allow 4 bytes per character.
MAX_LINE_CHARS = 2048
MAX_LINE_BYTES = 4 * MAX_LINE_CHARS


@dataclass(frozen=True)
class TextSource:
    """One language's training text: `documents()` yields its documents (re-iterable by calling again)."""

    lang: str
    name: str  # a path or a prepared-corpus directory, named in messages
    documents: Callable[[], Iterator[str]]


@dataclass
class LanguageCount:
    chars: int = 0
    lines: int = 0


def training_lines(document: str) -> Iterator[str]:
    """The non-blank lines of `document`, lines longer than MAX_LINE_CHARS cut at whitespace."""
    for raw in document.split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        while len(line) > MAX_LINE_CHARS:
            cut = line.rfind(" ", MAX_LINE_CHARS // 2, MAX_LINE_CHARS)
            cut = cut if cut > 0 else MAX_LINE_CHARS
            yield line[:cut]
            line = line[cut:]
        if line.strip():
            yield line


def count_text(sources: list[TextSource], progress: bool = True) -> dict[str, LanguageCount]:
    """Characters and lines per language (first pass). Raises DataError if a language has none."""
    from tongues.progress import progress_bar as tqdm

    counts: dict[str, LanguageCount] = {}
    for source in sources:
        count = counts.setdefault(source.lang, LanguageCount())
        before = count.chars
        bar = tqdm(source.documents(), desc=f"counting {source.lang} {Path(source.name).name}", unit=" docs",
                   disable=not progress, leave=False)
        for document in bar:
            for line in training_lines(document):
                count.chars += len(line)
                count.lines += 1
        if count.chars == before:
            raise DataError(f"{source.name}: no text for {source.lang} (empty corpus); give a file or prepared "
                            "corpus with at least one non-blank line")
    return counts


def mixing_probabilities(chars: dict[str, int], temperature: float) -> dict[str, float]:
    """p_i ∝ (n_i / N)^T: temperature 1 keeps the natural mix, lower values flatten it."""
    total = sum(chars.values())
    weights = {lang: (n / total) ** temperature for lang, n in chars.items()}
    norm = sum(weights.values())
    return {lang: w / norm for lang, w in weights.items()}


def sampling_rates(chars: dict[str, int], temperature: float, budget_chars: int) -> dict[str, float]:
    """Expected copies of each line per language (below 1: sampled down, above 1: repeated).

    Without a binding budget no text is dropped: the language with the most text relative to its
    probability is kept once (rate 1), the others are repeated up to their probability. With
    `budget_chars` smaller than that, every rate is scaled down so the sample holds that many.
    """
    probs = mixing_probabilities(chars, temperature)
    total = min(float(budget_chars), max(chars[lang] / probs[lang] for lang in chars))
    return {lang: probs[lang] * total / chars[lang] for lang in chars}


def write_training_text(
    sources: list[TextSource],
    out: TextIO,
    *,
    temperature: float,
    budget_chars: int,
    seed: int = 0,
    form: str = "NFC",
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Write the temperature-mixed, normalized training lines to `out`; return the realized mix.

    The mix records, per language: characters and lines available, the sampling probability
    p_i, the rate (expected copies per line), and the characters, lines and share sampled.
    """
    from tongues.progress import progress_bar as tqdm

    counts = count_text(sources, progress=progress)
    chars = {lang: c.chars for lang, c in counts.items()}
    probs = mixing_probabilities(chars, temperature)
    rates = sampling_rates(chars, temperature, budget_chars)
    rng = random.Random(seed)
    sampled = {lang: LanguageCount() for lang in counts}
    for source in sources:
        rate = rates[source.lang]
        whole, fraction = int(rate), rate - int(rate)
        done = sampled[source.lang]
        bar = tqdm(total=counts[source.lang].lines, desc=f"sampling {source.lang} x{rate:.3g}", unit=" lines",
                   disable=not progress, leave=False)
        for document in source.documents():
            for line in training_lines(document):
                bar.update()
                copies = whole + (rng.random() < fraction)
                if not copies:
                    continue
                text = normalize_text(line, form)
                out.write((text + "\n") * copies)
                done.chars += len(text) * copies
                done.lines += copies
        bar.close()
    total = sum(c.chars for c in sampled.values()) or 1
    return {
        lang: {
            "available_chars": counts[lang].chars,
            "available_lines": counts[lang].lines,
            "probability": round(probs[lang], 6),
            "rate": round(rates[lang], 6),
            "sampled_chars": sampled[lang].chars,
            "sampled_lines": sampled[lang].lines,
            "share": round(sampled[lang].chars / total, 6),
        }
        for lang in sorted(counts)
    }
