"""Config of one tokenizer trained by `tokenizer train` / the `tokenizer` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tongues.schema import StrictModel


class TokenizerConfig(StrictModel):
    """A SentencePiece tokenizer trained on one or more prepared corpora (names from `corpora:`)."""

    corpora: list[str] = Field(min_length=1)
    vocab_size: int = Field(8000, ge=256)
    # None: unigram, or BPE where the mix holds a language better served by it (Korean, Vietnamese; see
    # tongues.tokenizers.train.DEFAULT_MODEL_TYPE and benchmarks/RESULTS.md).
    model_type: Literal["unigram", "bpe"] | None = None
    # Exponent of temperature-sampled language mixing (XLM-R / mT5 use 0.3).
    temperature: float = Field(0.3, gt=0.0, le=1.0)
    # Characters sampled for training, so memory stays bounded on large corpora (measured peak at
    # 20M characters of Korean, 32k pieces: BPE 0.7 GB, unigram 1.0 GB).
    sample_chars: int = Field(20_000_000, gt=0)
    # None: the lowest coverage of the mix's scripts (tongues.languages).
    character_coverage: float | None = Field(None, gt=0.9, le=1.0)
    # False lets a piece span a change of script (Korean "다."): more bytes per token, measured.
    split_by_script: bool = False
    max_piece_length: int = Field(16, ge=2, le=64)
