"""Embedded corpora and small task sets, written for this project (see data_cards/)."""

from __future__ import annotations

from pathlib import Path

from tongues.languages import LANGUAGES

RESOURCES = Path(__file__).resolve().parent
CORPORA = RESOURCES / "corpora"


def embedded_corpus_path(lang: str) -> Path:
    """Path of the embedded corpus for `lang` (plain text, documents separated by blank lines)."""
    path = CORPORA / f"{lang}.txt"
    if not path.exists():
        known = sorted(p.stem for p in CORPORA.glob("*.txt"))
        raise ValueError(f"no embedded corpus for {lang!r} (embedded: {', '.join(known) or 'none'})")
    return path


__all__ = ["CORPORA", "LANGUAGES", "RESOURCES", "embedded_corpus_path"]
