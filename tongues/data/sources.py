"""Reading raw documents from the sources of a corpus, one document at a time.

Sources: `.txt` (one document per line, or documents separated by blank lines: `doc_mode`),
`.jsonl` (one JSON object per line, text in `text_field`), `.parquet` (column `text_field`),
each optionally `.gz` or `.zst` compressed; directories (every such file below them, in name
order); `embedded:LANG` (a corpus shipped in the package, blank-line separated); and
`hf:NAME[:CONFIG][@SPLIT]` (a Hugging Face dataset, streamed so memory stays bounded).

Lines that cannot be read (invalid UTF-8, invalid JSON, a missing or non-string text field) are
skipped and recorded in a `ReadLog` with file and line, for the data card. Everything else that
makes a source unusable raises a one-line DataError naming the file.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tongues.data.config import EMBEDDED_PREFIX, HUB_PREFIX, CorpusConfig
from tongues.errors import DataError
from tongues.manifest import sha256_file

TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSION_SUFFIXES = (".gz", ".zst")
SUPPORTED = "supported: .txt, .jsonl, .parquet, each optionally .gz or .zst compressed; a directory; embedded:LANG; hf:NAME[:CONFIG][@SPLIT]"
# A line longer than this is skipped without being held in memory whole (it would be far over
# any sensible max_chars anyway); 64 MiB keeps a 10 MB line on the ordinary path.
MIN_LINE_CAP = 64 << 20


@dataclass
class SourceFile:
    """One readable unit of a source: a file, an embedded corpus or a hub dataset."""

    source: str  # the source as the user wrote it
    path: str  # file path, or the hub dataset name
    kind: str  # "txt", "jsonl", "parquet", "hf"
    sha256: str | None = None  # of the file's bytes as stored (None for hub datasets)
    size: int | None = None  # bytes on disk
    compressed: bool = False
    paragraphs: bool = False  # .txt: documents separated by blank lines
    documents: int = 0  # documents read from it

    def describe(self) -> dict[str, Any]:
        kind = self.kind
        if kind == "txt":
            kind = "txt, documents separated by blank lines" if self.paragraphs else "txt, one document per line"
        if self.compressed:
            kind += f", {Path(self.path).suffix[1:]} compressed"
        return {
            "source": self.source, "path": self.path, "kind": kind, "sha256": self.sha256,
            "bytes": self.size, "documents": self.documents,
        }


@dataclass
class ReadLog:
    """Lines the readers skipped, by reason, with the first `cap` listed by file and line."""

    cap: int = 50
    count: int = 0
    reasons: Counter = field(default_factory=Counter)
    listed: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, path: str, line: int, reason: str) -> None:
        self.count += 1
        self.reasons[reason.split(" (")[0]] += 1
        if len(self.listed) < self.cap:
            self.listed.append({"file": path, "line": line, "reason": reason})

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count, "reasons": dict(self.reasons), "listed": self.listed,
            "not_listed": self.count - len(self.listed),
        }


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _format_of(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    compressed = name.endswith(COMPRESSION_SUFFIXES)
    if compressed:
        name = name.rsplit(".", 1)[0]
    if name.endswith(TEXT_SUFFIXES):
        return "txt", compressed
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl", compressed
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet", compressed
    raise DataError(f"{path}: unsupported file type ({SUPPORTED})")


def parse_hub(spec: str) -> tuple[str, str | None, str]:
    """`hf:NAME[:CONFIG][@SPLIT]` -> (name, config or None, split; "train" when not given)."""
    rest = spec[len(HUB_PREFIX) :]
    name_config, _, split = rest.partition("@")
    name, _, config = name_config.partition(":")
    if not name:
        raise DataError(f"{spec}: no dataset name (expected hf:NAME[:CONFIG][@SPLIT], e.g. hf:wikimedia/wikipedia:20231101.ko@train)")
    return name, config or None, split or "train"


def check_sources(sources: list[str]) -> None:
    """Raise a DataError naming the first local source that does not exist."""
    for src in sources:
        if src.startswith((HUB_PREFIX, EMBEDDED_PREFIX)):
            continue
        if not Path(src).exists():
            raise DataError(f"{src}: no such file or directory ({SUPPORTED})")


def resolve_sources(config: CorpusConfig) -> list[SourceFile]:
    """Expand the config's sources into readable units, in order. Raises DataError for a
    missing path, an unknown embedded language, an unsupported file or an empty directory."""
    check_sources(config.sources)
    files: list[SourceFile] = []
    for src in config.sources:
        if src.startswith(HUB_PREFIX):
            parse_hub(src)
            _require_hub(src)  # before any progress bar: offline, say so at once
            files.append(SourceFile(src, src[len(HUB_PREFIX) :], "hf"))
            continue
        if src.startswith(EMBEDDED_PREFIX):
            from tongues.resources import embedded_corpus_path

            try:
                path = embedded_corpus_path(src[len(EMBEDDED_PREFIX) :])
            except ValueError as err:
                raise DataError(f"{src}: {err}") from None
            files.append(SourceFile(src, str(path), "txt", sha256_file(path), path.stat().st_size, paragraphs=True))
            continue
        root = Path(src)
        if root.is_dir():
            found = sorted(
                p for p in root.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
            )
            usable = [p for p in found if _is_supported(p)]
            if not usable:
                raise DataError(f"{src}: directory has no readable files ({SUPPORTED})")
        else:
            usable = [root]
        for path in usable:
            kind, compressed = _format_of(path)
            files.append(
                SourceFile(
                    src, str(path), kind, sha256_file(path), path.stat().st_size, compressed,
                    paragraphs=(kind == "txt" and config.doc_mode == "paragraph"),
                )
            )
    return files


def _is_supported(path: Path) -> bool:
    try:
        _format_of(path)
    except DataError:
        return False
    return True


@contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    """The decompressed bytes of `path` (.gz / .zst by suffix), buffered for readline()."""
    lower = path.lower()
    if lower.endswith(".gz"):
        handle: IO[bytes] = gzip.open(path, "rb")  # type: ignore[assignment]
    elif lower.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)
        handle = io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[arg-type]
    else:
        handle = open(path, "rb", buffering=1 << 20)
    try:
        yield handle
    finally:
        handle.close()


def _decompression_errors() -> tuple[type[BaseException], ...]:
    import zlib

    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        pass
    return tuple(errors)


def iter_documents(sf: SourceFile, config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int]]:
    """Yield (raw document text, bytes consumed) from one source unit, in order."""
    readers = {"txt": _read_txt, "jsonl": _read_jsonl, "parquet": _read_parquet, "hf": _read_hub}
    return readers[sf.kind](sf, config, log)


def _lines(sf: SourceFile, log: ReadLog, cap: int) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line without its line break), skipping over-long lines; errors named."""
    try:
        with _open_binary(sf.path) as handle:
            lineno = 0
            while True:
                raw = handle.readline(cap)
                if not raw:
                    return
                lineno += 1
                if len(raw) >= cap and not raw.endswith(b"\n"):
                    # Drain the rest of the line without keeping it.
                    while (more := handle.readline(cap)) and not more.endswith(b"\n"):
                        pass
                    log.skip(sf.path, lineno, f"line longer than {cap >> 20} MiB")
                    continue
                yield lineno, raw.rstrip(b"\r\n")
    except _decompression_errors() as err:
        raise DataError(f"{sf.path}: cannot read ({_one_line(err)})") from None


def _decode(sf: SourceFile, lineno: int, raw: bytes, log: ReadLog) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        log.skip(sf.path, lineno, f"invalid UTF-8 (byte {err.start})")
        return None


def _read_txt(sf: SourceFile, config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int]]:
    cap = max(MIN_LINE_CAP, 8 * 4 * config.max_chars)
    if not sf.paragraphs:
        for lineno, raw in _lines(sf, log, cap):
            if not raw.strip():
                continue
            text = _decode(sf, lineno, raw, log)
            if text is not None:
                yield text, len(raw) + 1
        return
    # Paragraph mode: documents are runs of non-blank lines; an undecodable line is dropped
    # from its document, the rest of the document is kept.
    parts: list[str] = []
    size = 0
    for lineno, raw in _lines(sf, log, cap):
        if not raw.strip():
            if parts:
                yield "\n".join(parts), size
            parts, size = [], 0
            continue
        size += len(raw) + 1
        text = _decode(sf, lineno, raw, log)
        if text is not None:
            parts.append(text)
        if size > cap:
            log.skip(sf.path, lineno, f"document longer than {cap >> 20} MiB")
            parts, size = [], 0
    if parts:
        yield "\n".join(parts), size


def _read_jsonl(sf: SourceFile, config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int]]:
    key = config.text_field
    seen_record = False
    for lineno, raw in _lines(sf, log, max(MIN_LINE_CAP, 16 * 4 * config.max_chars)):
        if not raw.strip():
            continue
        line = _decode(sf, lineno, raw, log)
        if line is None:
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            log.skip(sf.path, lineno, f"invalid JSON ({_one_line(err)})")
            continue
        if not isinstance(record, dict):
            log.skip(sf.path, lineno, "not a JSON object")
            continue
        if key not in record:
            if not seen_record:
                fields = ", ".join(map(str, list(record)[:12])) or "none"
                raise DataError(
                    f"{sf.path}:{lineno}: no field {key!r} (fields: {fields}); "
                    "set text_field (--text-field) to the field holding the text"
                )
            log.skip(sf.path, lineno, f"no field {key!r}")
            continue
        seen_record = True
        value = record[key]
        if not isinstance(value, str):
            log.skip(sf.path, lineno, f"field {key!r} is not a string ({type(value).__name__})")
            continue
        yield value, len(raw) + 1


@contextmanager
def _seekable_copy(sf: SourceFile) -> Iterator[str]:
    """Parquet needs random access: a compressed parquet file is decompressed to a temp file."""
    if not sf.compressed:
        yield sf.path
        return
    with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
        try:
            with _open_binary(sf.path) as handle:
                shutil.copyfileobj(handle, tmp, 1 << 20)
        except _decompression_errors() as err:
            raise DataError(f"{sf.path}: cannot decompress ({_one_line(err)})") from None
        tmp.flush()
        yield tmp.name


def _read_parquet(sf: SourceFile, config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    key = config.text_field
    with _seekable_copy(sf) as path:
        try:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{sf.path}: not a readable parquet file ({_one_line(err)})") from None
        if key not in names:
            raise DataError(
                f"{sf.path}: no column {key!r} (columns: {', '.join(names[:12])}); "
                "set text_field (--text-field) to the column holding the text"
            )
        row = 0
        try:
            for batch in parquet.iter_batches(columns=[key], batch_size=2048):
                for value in batch.column(0).to_pylist():
                    row += 1
                    if isinstance(value, str):
                        yield value, len(value)
                    else:
                        log.skip(sf.path, row, f"column {key!r} is not a string ({type(value).__name__})")
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{sf.path}: not a readable parquet file ({_one_line(err)}, after row {row})") from None


def _require_hub(source: str) -> None:
    from tongues.hub import require_hub

    require_hub(source, "pass local files instead (.txt, .jsonl or .parquet, e.g. a dataset saved with "
                "datasets' to_parquet on a machine with network)")


def _read_hub(sf: SourceFile, config: CorpusConfig, log: ReadLog) -> Iterator[tuple[str, int]]:
    import datasets

    name, subset, split = parse_hub(sf.source)
    _require_hub(sf.source)
    try:
        # Streaming: rows arrive as they are downloaded; nothing is materialized on disk or in memory.
        dataset = datasets.load_dataset(name, subset, split=split, streaming=True)
        rows = iter(dataset)
        first = next(rows, None)
    except Exception as err:  # the hub raises many kinds; all mean "cannot use this source"
        raise DataError(
            f"{sf.source}: cannot load Hugging Face dataset {name!r} "
            f"(config {subset!r}, split {split!r}): {_one_line(err)}"
        ) from None
    key = config.text_field
    if first is not None and key not in first:
        fields = ", ".join(map(str, list(first)[:12]))
        raise DataError(f"{sf.source}: no field {key!r} (fields: {fields}); set text_field (--text-field)")
    if first is None:
        return
    for row, item in enumerate(itertools.chain([first], rows), 1):
        value = item.get(key)
        if isinstance(value, str):
            yield value, len(value)
        else:
            log.skip(sf.source, row, f"field {key!r} is not a string ({type(value).__name__})")
