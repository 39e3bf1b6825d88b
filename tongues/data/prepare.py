"""`data prepare`: raw sources -> clean, deduplicated, split parquet shards + stats + data card.

One streaming pass over batches of documents: per-document work (normalization, filters, PII
masking, MinHash signatures, vectorized per batch) and then what depends on order (exact and
near-duplicate indexes, the split, writing). Memory holds one batch, the dedup indexes and one
row group per split, never the corpus. One process does ~100 MB of Korean reviews a minute
(benchmarks/RESULTS.md), so there is no process pool to pay for or to go wrong.

Steps, in order (each counted in documents / characters / bytes in and out, with examples of
what it removed): normalize -> too_short -> too_long -> script -> language (optional, lingua) ->
exact_duplicate -> near_duplicate -> pii (masking, removes nothing) -> train/validation split.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tongues.data.config import CorpusConfig
from tongues.data.dedup import SHINGLE_CHARS, ExactDedup, MinHasher, NearDupIndex, digest, lsh_params
from tongues.data.filters import STEPS, language_identifier, length_reason, script_ok, step_reasons
from tongues.data.normalize import normalize_text, visible
from tongues.data.pii import mask_pii
from tongues.data.shards import ShardWriter
from tongues.data.sources import ReadLog, SourceFile, iter_documents, resolve_sources
from tongues.data.split import TRAIN, VALIDATION, split_of
from tongues.errors import DataError
from tongues.languages import get_language
from tongues.manifest import atomic_path, package_versions, write_json

STATS = "stats.json"
EXAMPLES_PER_STEP = 3
_BATCH_DOCS = 2000
_BATCH_BYTES = 4 << 20
# Document-length histogram: bins of powers of two, in characters.
LENGTH_EDGES = [0] + [2**i for i in range(3, 31)]

# ---------------------------------------------------------------------------------------------
# Per-document work


class Doc(NamedTuple):
    """One processed document."""

    removed_at: str | None  # the filter step that removed it, or None
    text: str  # normalized and masked; a short masked preview when removed
    key: bytes | None  # blake2b-128 of the normalized text (None when removed)
    raw_chars: int
    raw_bytes: int
    norm_chars: int
    norm_bytes: int
    out_bytes: int  # bytes of `text` (after masking)
    emails: int
    phones: int
    source: int  # index into the source files
    read_bytes: int  # bytes consumed from the source (progress)


# Character counts of a batch: (code points, counts), from np.unique.
CharCounts = tuple[np.ndarray, np.ndarray]
UNICODE_SIZE = 0x110000


def char_counts(texts: list[str]) -> CharCounts:
    """Distinct code points of `texts` and how often each occurs (vectorized; a Counter over
    Hangul text costs ~150 ns per character because each character becomes a new str)."""
    data = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    values, counts = np.unique(data, return_counts=True)
    return values, counts


class DocProcessor:
    """Normalize, filter, mask and sketch documents; holds no state across documents."""

    def __init__(self, config: CorpusConfig) -> None:
        self.config = config
        self.lang = get_language(config.lang)
        self.is_lang = language_identifier(config)
        self.minhasher = (
            MinHasher(config.minhash_perms, config.near_dup_threshold) if config.near_dup_threshold else None
        )

    def process(self, batch: list[tuple[str, int, int]]) -> tuple[list[Doc], np.ndarray | None, CharCounts]:
        """Process (raw text, bytes read, source index) items. Returns the documents in order,
        the LSH band keys of the ones that passed every filter (rows in the same order), and the
        character counts of the normalized text (for the script distribution)."""
        config = self.config
        docs: list[Doc] = []
        passed: list[str] = []  # normalized texts that passed every filter
        normalized: list[str] = []
        for raw, nbytes, src in batch:
            raw_bytes = len(raw.encode("utf-8", "surrogatepass"))
            text = normalize_text(raw, config.normalization)
            norm_chars, norm_bytes = len(text), len(text.encode("utf-8"))
            normalized.append(text)
            reason = "normalize" if not text else length_reason(norm_chars, config)
            if reason is None and not script_ok(text, self.lang, config.min_script_share):
                reason = "script"
            if reason is None and self.is_lang is not None and not self.is_lang(text):
                reason = "language"
            if reason is not None:
                # Keep only a masked preview of what was removed, for the card's examples.
                preview = mask_pii((raw if reason == "normalize" else text)[:400])[0]
                docs.append(Doc(reason, preview, None, len(raw), raw_bytes, norm_chars, norm_bytes, 0, 0, 0, src, nbytes))
                continue
            key = digest(text)
            passed.append(text)
            emails = phones = 0
            out_bytes = norm_bytes
            if config.mask_pii:
                text, emails, phones = mask_pii(text)
                if emails or phones:
                    out_bytes = len(text.encode("utf-8"))
            docs.append(
                Doc(None, text, key, len(raw), raw_bytes, norm_chars, norm_bytes, out_bytes, emails, phones, src, nbytes)
            )
        keys = None
        if self.minhasher is not None:
            keys = self.minhasher.band_keys(self.minhasher.signatures(passed))
        return docs, keys, char_counts(normalized)


def _batches(items: Iterable[tuple[str, int, int]]) -> Iterator[list[tuple[str, int, int]]]:
    batch: list[tuple[str, int, int]] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item[1]
        if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# Bookkeeping


@dataclass
class Totals:
    docs: int = 0
    chars: int = 0
    bytes: int = 0

    def add(self, chars: int, nbytes: int) -> None:
        self.docs += 1
        self.chars += chars
        self.bytes += nbytes

    def minus(self, other: Totals) -> Totals:
        return Totals(self.docs - other.docs, self.chars - other.chars, self.bytes - other.bytes)

    def as_dict(self) -> dict[str, int]:
        return {"documents": self.docs, "characters": self.chars, "bytes": self.bytes}


@dataclass
class Ledger:
    """Running totals from which the per-step table is derived at the end."""

    read: Totals = field(default_factory=Totals)
    normalized: Totals = field(default_factory=Totals)  # survivors of normalize, normalized size
    removed: dict[str, Totals] = field(default_factory=lambda: {s: Totals() for s in STEPS})
    final: Totals = field(default_factory=Totals)  # kept, after masking
    splits: dict[str, Totals] = field(default_factory=lambda: {TRAIN: Totals(), VALIDATION: Totals()})
    examples: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in STEPS})
    emails: int = 0
    phones: int = 0
    pii_docs: int = 0
    length_counts: list[int] = field(default_factory=lambda: [0] * len(LENGTH_EDGES))
    chars_in: np.ndarray = field(default_factory=lambda: np.zeros(UNICODE_SIZE, dtype=np.int64))
    chars_out: np.ndarray = field(default_factory=lambda: np.zeros(UNICODE_SIZE, dtype=np.int64))

    def count_chars(self, target: np.ndarray, counts: CharCounts) -> None:
        np.add.at(target, counts[0], counts[1])

    def remove(self, step: str, doc: Doc) -> None:
        if step == "normalize":
            self.removed[step].add(doc.raw_chars, doc.raw_bytes)
        else:
            self.removed[step].add(doc.norm_chars, doc.norm_bytes)
        if len(self.examples[step]) < EXAMPLES_PER_STEP:
            self.examples[step].append(visible(doc.text))

    def keep(self, doc: Doc, split: str) -> None:
        chars = len(doc.text)
        self.final.add(chars, doc.out_bytes)
        self.splits[split].add(chars, doc.out_bytes)
        # LENGTH_EDGES are 0, 8, 16, 32, ...: the bin follows from the bit length.
        self.length_counts[max(0, chars.bit_length() - 3)] += 1
        if doc.emails or doc.phones:
            self.emails += doc.emails
            self.phones += doc.phones
            self.pii_docs += 1

    def step_table(self, config: CorpusConfig, reasons: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        before = self.read
        for step in STEPS:
            off = (
                (step == "language" and not config.lid)
                or (step == "exact_duplicate" and not config.dedup_exact)
                or (step == "near_duplicate" and not config.near_dup_threshold)
            )
            if step == "normalize":
                after = self.normalized
            else:
                after = before.minus(self.removed[step])
            rows.append(_row(step, reasons[step], before, after, self.removed[step].docs, off))
            before = after
        masking = "e-mail addresses -> `<EMAIL>`, phone numbers -> `<PHONE>`" if config.mask_pii else "off"
        rows.append(_row("pii", masking, before, self.final, 0, not config.mask_pii))
        return rows


def _row(step: str, reason: str, before: Totals, after: Totals, removed: int, off: bool) -> dict[str, Any]:
    return {
        "step": step, "reason": reason, "enabled": not off,
        "documents_in": before.docs, "documents_out": after.docs, "removed": removed,
        "characters_in": before.chars, "characters_out": after.chars,
        "bytes_in": before.bytes, "bytes_out": after.bytes,
    }


# ---------------------------------------------------------------------------------------------
# The stage


class _Run:
    """The order-dependent part of one `prepare`: dedup indexes, split, shard writers, ledger."""

    def __init__(self, config: CorpusConfig, files: list[SourceFile], train_dir: Path, val_dir: Path) -> None:
        self.config = config
        self.files = files
        self.ledger = Ledger()
        self.exact = ExactDedup()
        self.index = NearDupIndex()
        self.writers = {TRAIN: ShardWriter(train_dir, config.shard_docs), VALIDATION: ShardWriter(val_dir, config.shard_docs)}

    @property
    def full(self) -> bool:
        return bool(self.config.max_docs) and self.ledger.final.docs >= self.config.max_docs  # type: ignore[operator]

    def consume(self, docs: list[Doc], keys: np.ndarray | None, chars: CharCounts) -> int:
        """Account for, deduplicate, split and write one processed batch; returns bytes read."""
        ledger, config = self.ledger, self.config
        ledger.count_chars(ledger.chars_in, chars)
        verdicts = _duplicates(docs, keys, self.exact, self.index, config)
        done = 0
        kept: list[str] = []
        for doc, verdict in zip(docs, verdicts, strict=True):
            done += doc.read_bytes
            self.files[doc.source].documents += 1
            ledger.read.add(doc.raw_chars, doc.raw_bytes)
            if doc.removed_at != "normalize":
                ledger.normalized.add(doc.norm_chars, doc.norm_bytes)
            step = doc.removed_at or verdict
            if step is not None:
                ledger.remove(step, doc)
                continue
            assert doc.key is not None
            split = split_of(doc.key, config.validation_share)
            doc_id = doc.key.hex()
            self.writers[split].add(doc.text, doc_id, self.files[doc.source].source)
            ledger.keep(doc, split)
            kept.append(doc.text)
            if self.full:
                break
        if kept:
            ledger.count_chars(ledger.chars_out, char_counts(kept))
        return done

    def close(self) -> list[str]:
        """Finish the shards; returns warnings for the card (an empty validation split)."""
        for writer in self.writers.values():
            writer.close()
        share = self.config.validation_share
        if share > 0 and self.ledger.splits[VALIDATION].docs == 0:
            # No fallback that picks a document by hand: it would move when the corpus grows.
            return [
                f"the validation split is empty: no document's hash fell under validation_share={share} "
                f"({self.ledger.final.docs:,} documents kept); use a larger corpus or validation_share"
            ]
        return []


def prepare(
    config: CorpusConfig,
    out_dir: str | Path,
    command: str | None = None,
    progress: bool = True,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """Clean, filter, deduplicate, mask and split `config`'s sources into `out_dir`.

    Writes `train/` and `validation/` parquet shards (columns text, id, source), `stats.json`,
    `data_card.md` and `length_histogram.png` (layout: tongues.data.prepared). `command` is
    recorded in the card as the command that produced it; `name` is the corpus name for the
    card's title (default: the directory's name). Returns the metrics, with a "headline" like
    "12,345 docs kept of 13,000 (94.9%)". Raises DataError for a missing, unreadable or empty
    source, or when every document is filtered out; a previous corpus in `out_dir` is then
    left as it was.
    """
    from tongues.progress import progress_bar as tqdm

    start = time.perf_counter()
    out = Path(out_dir)
    files = resolve_sources(config)
    processor = DocProcessor(config)  # raises now when lid is on and lingua is missing
    near = _near_settings(config)
    log = ReadLog()
    compressed = any(f.compressed or f.kind == "hf" for f in files)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out / TRAIN) as train_dir, atomic_path(out / VALIDATION) as val_dir:
            run = _Run(config, files, train_dir, val_dir)
            with tqdm(total=None if compressed else sum(f.size or 0 for f in files), unit="B", unit_scale=True,
                      desc=f"data prepare {config.lang}", disable=not progress, dynamic_ncols=True) as bar:
                for batch in _batches(_read_all(files, config, log)):
                    bar.update(run.consume(*processor.process(batch)))
                    bar.set_postfix(kept=f"{run.ledger.final.docs:,}", refresh=False)
                    if run.full:
                        break
                if bar.total and not run.full:
                    bar.update(max(0, bar.total - bar.n))  # line breaks are in no document
            _check_not_empty(config, run.ledger, log)
            warnings = run.close()
            # The new splits are renamed into place as this block ends: until stats.json is
            # written again the directory does not claim to be a prepared corpus.
            (out / STATS).unlink(missing_ok=True)
    except BaseException:
        if created:  # leave no empty output directory behind a failed run
            shutil.rmtree(out, ignore_errors=True)
        raise

    reasons = step_reasons(config, _near_reason(near))
    stats = _stats(config, files, run.ledger, log, reasons, near, command, out, warnings, time.perf_counter() - start)
    from tongues.data.card import write_card

    write_card(stats, out, name=name or out.name)
    write_json(out / STATS, stats)  # last: its presence marks a complete prepared corpus
    return metrics_of(stats)


def _near_settings(config: CorpusConfig) -> dict[str, Any] | None:
    if not config.near_dup_threshold:
        return None
    bands, rows = lsh_params(config.near_dup_threshold, config.minhash_perms)
    return {
        "threshold": config.near_dup_threshold, "num_perm": config.minhash_perms, "bands": bands,
        "rows": rows, "shingles": f"character {SHINGLE_CHARS}-grams, lowercased",
    }


def _near_reason(near: dict[str, Any] | None) -> str | None:
    if near is None:
        return None
    return (
        f"MinHash LSH near duplicate of a kept document: estimated Jaccard similarity >= "
        f"{near['threshold']} over {near['shingles']} ({near['num_perm']} permutations, "
        f"{near['bands']} bands x {near['rows']} rows)"
    )


def _read_all(files: list[SourceFile], config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int, int]]:
    for index, sf in enumerate(files):
        for text, nbytes in iter_documents(sf, config, log):
            yield text, nbytes, index


def _duplicates(
    docs: list[Doc], keys: np.ndarray | None, exact: ExactDedup, index: NearDupIndex, config: CorpusConfig
) -> list[str | None]:
    """Per document of a batch: "exact_duplicate", "near_duplicate" or None (filter removals are
    left to the caller). Order matters: the first of a group is kept."""
    verdict: list[str | None] = [None] * len(docs)
    candidates: list[int] = []  # positions of documents that reach the near-dup step
    rows: list[int] = []  # their rows in `keys`
    row = 0
    for i, doc in enumerate(docs):
        if doc.removed_at is not None:
            continue
        if config.dedup_exact and exact.is_duplicate(doc.key):  # type: ignore[arg-type]
            verdict[i] = "exact_duplicate"
        else:
            candidates.append(i)
            rows.append(row)
        row += 1
    if keys is not None and candidates:
        duplicate = index.add_batch(keys[rows])
        for i, dup in zip(candidates, duplicate.tolist(), strict=True):
            if dup:
                verdict[i] = "near_duplicate"
    return verdict


def _check_not_empty(config: CorpusConfig, ledger: Ledger, log: ReadLog) -> None:
    where = ", ".join(config.sources)
    if ledger.read.docs == 0:
        if log.count:
            first = log.listed[0]
            raise DataError(
                f"{where}: no readable documents: {log.count} line(s) skipped "
                f"(first: {first['file']}:{first['line']}: {first['reason']})"
            )
        raise DataError(f"{where}: no documents found (the input is empty or has only blank lines)")
    if ledger.final.docs == 0:
        removed = ", ".join(f"{s}: {t.docs:,}" for s, t in ledger.removed.items() if t.docs)
        raise DataError(
            f"{where}: all {ledger.read.docs:,} documents were removed by the filters ({removed}); "
            f"check lang={config.lang!r}, min_chars={config.min_chars}, max_chars={config.max_chars}, "
            f"min_script_share={config.min_script_share}" + _unreadable_note(log)
        )


def _unreadable_note(log: ReadLog) -> str:
    """'; also N unreadable line(s) skipped (first: file:line: reason)' or ''."""
    if not log.count:
        return ""
    first = log.listed[0]
    return (f"; also {log.count} unreadable line(s) skipped (first: {first['file']}:{first['line']}: "
            f"{first['reason']})")


# ---------------------------------------------------------------------------------------------
# Statistics


def _script_of(ch: str) -> str | None:
    """The script of a letter or mark from its Unicode name ("HANGUL SYLLABLE GA" -> Hangul),
    "digit" for digits, None for punctuation, symbols and spaces."""
    import unicodedata

    category = unicodedata.category(ch)
    if category == "Nd":
        return "digit"
    if category[0] not in "LM":
        return None
    word = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
    if word in ("COMBINING", "MODIFIER"):
        return "Inherited"
    if word in ("CJK", "KANGXI"):
        return "Han"
    return word.capitalize()


def script_distribution(counts: np.ndarray, top: int = 8) -> dict[str, float]:
    """Share of letters (and digits) by script, the `top` largest, the rest as "other".
    `counts` is indexed by code point."""
    by_script: Counter = Counter()
    for code in np.flatnonzero(counts).tolist():
        script = _script_of(chr(code))
        if script is not None:
            by_script[script] += int(counts[code])
    total = sum(by_script.values())
    if not total:
        return {}
    shares = {s: n / total for s, n in by_script.most_common(top)}
    rest = 1.0 - sum(shares.values())
    if len(by_script) > top and rest > 0:
        shares["other"] = rest
    return {s: round(v, 6) for s, v in shares.items()}


def _stats(
    config: CorpusConfig, files: list[SourceFile], ledger: Ledger, log: ReadLog, reasons: dict[str, str],
    near: dict[str, Any] | None, command: str | None, out: Path, warnings: list[str], seconds: float,
) -> dict[str, Any]:
    lang = get_language(config.lang)
    steps = ledger.step_table(config, reasons)
    dedup_in = next(r["documents_in"] for r in steps if r["step"] == "exact_duplicate")
    duplicates = ledger.removed["exact_duplicate"].docs + ledger.removed["near_duplicate"].docs
    read, kept = ledger.read.docs, ledger.final.docs
    splits = {}
    for split in (TRAIN, VALIDATION):
        paths = sorted((out / split).glob("shard-*.parquet"))
        splits[split] = {**ledger.splits[split].as_dict(), "shards": [str(p.relative_to(out)) for p in paths]}
    return {
        "lang": config.lang,
        "language": lang.name,
        "script": lang.script,
        "normalization": config.normalization,
        "license": config.license,
        "headline": f"{kept:,} docs kept of {read:,} ({100 * kept / read:.1f}%)",
        "command": command,
        "config": config.model_dump(mode="json"),
        "sources": [f.describe() for f in files],
        "counts": {
            "read": read,
            "kept": kept,
            "removed": {s: t.docs for s, t in ledger.removed.items()},
            "train": ledger.splits[TRAIN].docs,
            "validation": ledger.splits[VALIDATION].docs,
            "unreadable_lines": log.count,
        },
        "totals": {"read": ledger.read.as_dict(), "kept": ledger.final.as_dict()},
        "steps": steps,
        "splits": splits,
        "split_rule": {
            "hash": "blake2b-128 of the normalized text (the id column); validation when its first 8 bytes / 2^64 < validation_share",
            "validation_share": config.validation_share,
        },
        "warnings": warnings,
        "duplicates": {
            "exact": ledger.removed["exact_duplicate"].docs,
            "near": ledger.removed["near_duplicate"].docs,
            "rate": round(duplicates / dedup_in, 6) if dedup_in else 0.0,
            "near_dup": near,
        },
        "pii": {"emails": ledger.emails, "phones": ledger.phones, "documents": ledger.pii_docs, "enabled": config.mask_pii},
        "unreadable": log.summary(),
        "script_distribution": {
            "input": script_distribution(ledger.chars_in),
            "output": script_distribution(ledger.chars_out),
        },
        "length_histogram": {"edges": LENGTH_EDGES, "counts": ledger.length_counts},
        "examples": ledger.examples,
        "seconds": round(seconds, 3),
        "versions": package_versions(),
    }


def metrics_of(stats: dict[str, Any]) -> dict[str, Any]:
    """The compact metrics a stage reports (the runner stores them in manifest.json)."""
    counts = stats["counts"]
    return {
        "headline": stats["headline"],
        "lang": stats["lang"],
        "documents_read": counts["read"],
        "documents_kept": counts["kept"],
        "train_documents": counts["train"],
        "validation_documents": counts["validation"],
        "characters_kept": stats["totals"]["kept"]["characters"],
        "bytes_kept": stats["totals"]["kept"]["bytes"],
        "removed": counts["removed"],
        "duplicate_rate": stats["duplicates"]["rate"],
        "pii_masked": stats["pii"]["emails"] + stats["pii"]["phones"],
        "unreadable_lines": counts["unreadable_lines"],
        # file:line: reason of the first skipped lines, so every report names them
        "unreadable": [f"{u['file']}:{u['line']}: {u['reason']}" for u in stats["unreadable"]["listed"][:10]],
        "warnings": stats["warnings"],
        "seconds": stats["seconds"],
    }


# ---------------------------------------------------------------------------------------------
# Runner entry point


def _runner_command(ctx: Any) -> str:
    argv = sys.argv
    if len(argv) >= 3 and argv[1] == "run":
        return shlex.join(["tongues", *argv[1:]])
    return f"tongues run <recipe {ctx.recipe.name}> (stage {ctx.stage.name})"


def run_stage(ctx: Any) -> dict[str, Any]:
    """Runner stage "data-<corpus>": prepare ctx.config into ctx.out_dir.

    On resume, a directory whose stats.json was written by this same config (the stage
    finished but the runner did not record it) is kept as is; otherwise the corpus is prepared
    again from the start (one streaming pass; partial output is never in place)."""
    from tongues.data.prepared import read_stats

    config: CorpusConfig = ctx.config
    if ctx.resuming and (Path(ctx.out_dir) / STATS).exists():
        stats = read_stats(ctx.out_dir)
        if stats.get("config") == config.model_dump(mode="json"):
            return metrics_of(stats)
    name = ctx.stage.extra.get("corpus", ctx.stage.name)
    return prepare(config, ctx.out_dir, command=_runner_command(ctx), progress=True, name=name)
