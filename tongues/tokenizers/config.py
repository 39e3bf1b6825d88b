"""Config of one tokenizer trained by `tokenizer train` / the `tokenizer` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tongues.schema import StrictModel


class TokenizerConfig(StrictModel):
    """A SentencePiece tokenizer trained on one or more prepared corpora (names from `corpora:`)."""

    corpora: list[str] = Field(min_length=1)
    vocab_size: int = Field(8000, ge=256)
    model_type: Literal["unigram", "bpe"] = "unigram"
    # Exponent of temperature-sampled language mixing (XLM-R / mT5 use 0.3).
    temperature: float = Field(0.3, gt=0.0, le=1.0)
    # Characters sampled for training, so memory stays bounded on large corpora.
    sample_chars: int = Field(50_000_000, gt=0)
