"""Reading a prepared corpus directory (the output of `tongues data prepare`).

Layout, the contract between `data prepare` and every later stage::

    DIR/train/shard-00000.parquet       columns: text (str), id (str), source (str)
    DIR/validation/shard-00000.parquet
    DIR/stats.json                      {"lang": "ko", "normalization": "NFC", "counts": {...}, ...}
    DIR/data_card.md                    Hugging Face dataset card (YAML front matter)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tongues.errors import DataError

SPLITS = ("train", "validation")


def shard_paths(prepared_dir: str | Path, split: str = "train") -> list[Path]:
    """The parquet shards of `split`, in order. Raises DataError if the directory is not prepared."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    root = Path(prepared_dir)
    if not (root / "stats.json").exists():
        raise DataError(f"{root}: not a prepared corpus (no stats.json); run `tongues data prepare` first")
    return sorted((root / split).glob("shard-*.parquet"))


def read_texts(prepared_dir: str | Path, split: str = "train", batch_size: int = 4096) -> Iterator[str]:
    """Yield the documents of `split` in stored order, reading one parquet batch at a time."""
    import pyarrow.parquet as pq

    for path in shard_paths(prepared_dir, split):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["text"]):
            yield from batch.column(0).to_pylist()


def read_stats(prepared_dir: str | Path) -> dict[str, Any]:
    """The corpus statistics written by `data prepare` (language, normalization, counts)."""
    path = Path(prepared_dir) / "stats.json"
    if not path.exists():
        raise DataError(f"{prepared_dir}: not a prepared corpus (no stats.json)")
    return json.loads(path.read_text(encoding="utf-8"))
