"""Config of one corpus: where its text comes from and how `data prepare` cleans it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from tongues.schema import StrictModel, check_language

EMBEDDED_PREFIX = "embedded:"
HUB_PREFIX = "hf:"


class CorpusConfig(StrictModel):
    """One corpus. `sources` are file paths (relative to the working directory), `embedded:LANG`
    for a corpus shipped in the package, or `hf:NAME[:CONFIG][@SPLIT]` for a Hugging Face dataset."""

    lang: str
    sources: list[str] = Field(min_length=1)
    license: str = "unknown"
    # .txt: "line" = one document per line; "paragraph" = documents separated by blank lines.
    doc_mode: Literal["line", "paragraph"] = "line"
    text_field: str = "text"
    normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(200_000, gt=0)
    min_script_share: float = Field(0.5, ge=0.0, le=1.0)
    lid: bool = False  # language identification with lingua (optional extra `tongues[lid]`)
    dedup_exact: bool = True
    near_dup_threshold: float | None = Field(0.8, gt=0.0, le=1.0)  # None disables MinHash LSH
    minhash_perms: int = Field(128, ge=16)
    mask_pii: bool = True
    validation_share: float = Field(0.05, ge=0.0, lt=1.0)
    max_docs: int | None = Field(None, gt=0)  # stop once this many documents are kept
    shard_docs: int = Field(100_000, gt=0)

    _check_lang = field_validator("lang")(lambda cls, v: check_language(v))

    @field_validator("sources")
    @classmethod
    def _sources_exist(cls, sources: list[str]) -> list[str]:
        for src in sources:
            if src.startswith(HUB_PREFIX):
                continue
            if src.startswith(EMBEDDED_PREFIX):
                from tongues.resources import embedded_corpus_path

                embedded_corpus_path(src[len(EMBEDDED_PREFIX) :])  # raises if unknown
                continue
            if not Path(src).exists():
                raise ValueError(f"path does not exist: {src}")
        return sources
