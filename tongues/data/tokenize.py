"""Token shards: a prepared corpus turned into flat, memory-mapped token files for pretraining.

Layout of a token directory (the contract between `data tokenize` and `pretrain`)::

    DIR/train.bin              all train documents' token ids back to back, each followed by EOS (id 3);
                               raw little-endian uint16 (vocabulary <= 65536) or uint32
    DIR/train.idx.npy          int64 [n_docs + 1]: document i is tokens[idx[i]:idx[i+1]] (its EOS included)
    DIR/train.bytes.npy        int64 [n_docs]: UTF-8 bytes of document i's text (for bits per byte)
    DIR/validation.*           the same for the validation split
    DIR/meta.json              dtype, vocab size, EOS id, tokenizer sha256, per-split counts and bytes

Tokenizing is deterministic: documents are encoded independently and written in stored order, so the
files are byte-identical whatever `num_proc` is. Python API: `tokenize_corpus`, `load_split`,
`check_tokenizer`; CLI: `tongues data tokenize`; recipe stage: "tokenize-<model>" (`run_stage`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from array import array
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tongues.data.prepared import SPLITS, read_stats, read_texts, shard_paths
from tongues.errors import DataError
from tongues.manifest import atomic_path, sha256_file, write_json

EOS_ID = 3
META = "meta.json"
FORMAT_VERSION = 1
_BATCH_DOCS = 512  # documents per work item: large enough to amortize inter-process transfer


@dataclass
class TokenSplit:
    """One split of a token directory, memory-mapped: `tokens`, document `offsets` and `doc_bytes`."""

    tokens: np.ndarray
    offsets: np.ndarray
    doc_bytes: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])


def tokenizer_hash(tokenizer_dir: str | Path) -> str:
    """The tokenizer's identity: sha256 of DIR/tokenizer.json (the contract's TOKENIZER HASH)."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    if not path.exists():
        raise DataError(f"{tokenizer_dir}: not a tokenizer directory (no tokenizer.json); "
                        "run `tongues tokenizer train` first")
    return sha256_file(path)


def read_meta(token_dir: str | Path) -> dict[str, Any]:
    """DIR/meta.json of a token directory; DataError if DIR was not made by `data tokenize`."""
    path = Path(token_dir) / META
    if not path.exists():
        raise DataError(f"{token_dir}: not a token directory (no {META}); run `tongues data tokenize` first")
    return json.loads(path.read_text(encoding="utf-8"))


def check_tokenizer(token_dir: str | Path, tokenizer_dir: str | Path) -> dict[str, Any]:
    """Raise DataError unless `token_dir` was tokenized with exactly the tokenizer in `tokenizer_dir`."""
    meta = read_meta(token_dir)
    actual = tokenizer_hash(tokenizer_dir)
    if meta["tokenizer_sha256"] != actual:
        raise DataError(
            f"{token_dir} was tokenized with a different tokenizer (sha256 {meta['tokenizer_sha256'][:12]}…, "
            f"from {meta.get('tokenizer_dir')}) than {tokenizer_dir} (sha256 {actual[:12]}…): "
            f"re-run `tongues data tokenize --tokenizer {tokenizer_dir}` or train with the original tokenizer"
        )
    return meta


def load_split(token_dir: str | Path, split: str = "train") -> TokenSplit:
    """Memory-map one split of a token directory (nothing is read until it is indexed)."""
    root = Path(token_dir)
    meta = read_meta(root)
    if split not in meta["splits"]:
        raise DataError(f"{root}: no {split!r} split (has {', '.join(meta['splits'])})")
    dtype = np.dtype(meta["dtype"])
    count = meta["splits"][split]["tokens"]
    # np.memmap refuses empty files; an empty split is an empty array.
    tokens = np.memmap(root / f"{split}.bin", dtype=dtype, mode="r") if count else np.zeros(0, dtype)
    offsets = np.load(root / f"{split}.idx.npy", mmap_mode="r")
    doc_bytes = np.load(root / f"{split}.bytes.npy", mmap_mode="r")
    if tokens.shape[0] != count:
        raise DataError(f"{root}/{split}.bin: {tokens.shape[0]} tokens, meta.json says {count} (truncated file?)")
    return TokenSplit(tokens, offsets, doc_bytes)


# ---------------------------------------------------------------------------------------------
# Tokenizing


_worker_tokenizer: Any = None


def _load_tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def _init_worker(path: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = _load_tokenizer(path)


def _encode_batch(texts: list[str], tokenizer: Any = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A batch of documents as (token ids back to back, each + EOS; token counts; UTF-8 byte counts)."""
    tok = tokenizer or _worker_tokenizer
    ids = [[*enc.ids, EOS_ID] for enc in tok.encode_batch(texts, add_special_tokens=False)]
    flat = np.fromiter((i for doc in ids for i in doc), dtype=np.int64)
    return flat, np.array([len(doc) for doc in ids], dtype=np.int64), [len(t.encode("utf-8")) for t in texts]


def _batches(prepared_dir: Path, split: str) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in read_texts(prepared_dir, split):
        batch.append(text)
        if len(batch) == _BATCH_DOCS:
            yield batch
            batch = []
    if batch:
        yield batch


def _ordered(executor: Executor | None, tokenizer: Any, batches: Iterator[list[str]], window: int) -> Iterator[Any]:
    """Results of `_encode_batch` in input order, with at most `window` batches in flight."""
    if executor is None:
        for batch in batches:
            yield _encode_batch(batch, tokenizer)
        return
    pending: deque[Future] = deque()
    for batch in batches:
        pending.append(executor.submit(_encode_batch, batch))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _count_docs(prepared_dir: Path, split: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in shard_paths(prepared_dir, split))


def tokenize_corpus(
    prepared_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path, num_proc: int = 1
) -> dict[str, Any]:
    """Tokenize both splits of a prepared corpus into `out_dir`; returns the meta.json contents.

    The output directory is written atomically (a crash leaves no half-written directory).
    """
    from tongues.progress import progress_bar as tqdm

    prepared_dir, tokenizer_dir, out_dir = Path(prepared_dir), Path(tokenizer_dir), Path(out_dir)
    stats = read_stats(prepared_dir)
    digest = tokenizer_hash(tokenizer_dir)
    tok_path = str(tokenizer_dir / "tokenizer.json")
    vocab_size = _load_tokenizer(tok_path).get_vocab_size(with_added_tokens=True)
    dtype = np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
    executor: Executor | None = None
    if num_proc > 1:
        # spawn, not fork: the Rust tokenizer's thread pool does not survive a fork.
        executor = ProcessPoolExecutor(
            num_proc, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(tok_path,)
        )
    tokenizer = _load_tokenizer(tok_path) if executor is None else None
    splits: dict[str, Any] = {}
    try:
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            for split in SPLITS:
                total = _count_docs(prepared_dir, split)
                offsets, doc_bytes, n_tokens = array("q", [0]), array("q"), 0  # compact for millions of docs
                with open(tmp / f"{split}.bin", "wb") as handle, tqdm(
                    total=total, unit="doc", desc=f"tokenize {prepared_dir.name}/{split}", dynamic_ncols=True
                ) as bar:
                    for flat, lengths, nbytes in _ordered(
                        executor, tokenizer, _batches(prepared_dir, split), 2 * num_proc
                    ):
                        if flat.size and int(flat.max()) >= vocab_size:
                            raise DataError(f"{tokenizer_dir}: token id {int(flat.max())} >= vocab size {vocab_size}")
                        handle.write(flat.astype(dtype).tobytes())
                        offsets.extend(n_tokens + np.cumsum(lengths))
                        n_tokens += int(lengths.sum())
                        doc_bytes.extend(nbytes)
                        bar.update(len(lengths))
                np.save(tmp / f"{split}.idx.npy", np.asarray(offsets, dtype=np.int64))
                np.save(tmp / f"{split}.bytes.npy", np.asarray(doc_bytes, dtype=np.int64))
                splits[split] = {"documents": len(doc_bytes), "tokens": n_tokens, "bytes": int(sum(doc_bytes))}
                if split == "train" and n_tokens == 0:
                    raise DataError(f"{prepared_dir}: the train split has no documents to tokenize")
            meta = {
                "format": FORMAT_VERSION,
                "dtype": dtype.name,
                "vocab_size": vocab_size,
                "eos_id": EOS_ID,
                "tokenizer_sha256": digest,
                "tokenizer_dir": str(tokenizer_dir),
                "prepared_dir": str(prepared_dir),
                "lang": stats.get("lang"),
                "license": stats.get("license"),
                "splits": splits,
            }
            for info in splits.values():
                info["bytes_per_token"] = round(info["bytes"] / info["tokens"], 4) if info["tokens"] else None
            write_json(tmp / META, meta)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return meta


def default_num_proc() -> int:
    """Processes for tokenizing: 2 when the machine has them (the work is embarrassingly parallel)."""
    return min(2, os.cpu_count() or 1)


def run_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stage "tokenize-<model>": one token directory per corpus under ctx.out_dir.

    ctx.inputs holds "tokenizer-<t>" (one) and "data-<corpus>" directories.
    """
    tokenizers = ctx.input_of_kind("tokenizer")
    if len(tokenizers) != 1:
        raise DataError(f"stage {ctx.stage.name}: expected one tokenizer input, got {sorted(tokenizers) or 'none'}")
    tokenizer_dir = next(iter(tokenizers.values()))
    metrics: dict[str, Any] = {"corpora": {}}
    for name, prepared in sorted(ctx.input_of_kind("data").items()):
        corpus = name.removeprefix("data-")
        out = Path(ctx.out_dir) / corpus
        if ctx.resuming and (out / META).exists() and read_meta(out)["tokenizer_sha256"] == tokenizer_hash(tokenizer_dir):
            meta = read_meta(out)  # finished before the interruption
        else:
            meta = tokenize_corpus(prepared, tokenizer_dir, out, num_proc=default_num_proc())
        metrics["corpora"][corpus] = meta["splits"]
    total = sum(c["train"]["tokens"] for c in metrics["corpora"].values())
    metrics["train_tokens"] = total
    metrics["headline"] = f"{total:,} train tokens in {len(metrics['corpora'])} corpora"
    return metrics
