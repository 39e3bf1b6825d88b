"""Read a task's documents: embedded files, local files in the source's own format, or the Hub.

A split is looked up in this order: the task's local file for it (embedded, or under the data
directory: --data-dir, EvalConfig.data_dir or $TONGUES_EVAL_DATA), then the Hub dataset
(datasets.load_dataset, online). Local rows get the fields they lack from the task's `fields` mapping, so
a source format (KoBEST's TSV, say) reads like the Hub dataset the prompts were written for, and a
local file already in the Hub's format reads as it is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from tongues.errors import DataError
from tongues.eval.prompts import value
from tongues.eval.registry import TaskSpec

EMBEDDED = "embedded:"
DATA_ENV = "TONGUES_EVAL_DATA"


def embedded_eval_dir() -> Path:
    from tongues.resources import RESOURCES

    return RESOURCES / "eval"


def data_root(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory: the argument, else $TONGUES_EVAL_DATA, else None."""
    chosen = data_dir or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else None


INSTRUCT = "instruct:"


def file_path(entry: str, data_dir: Path | None) -> Path | None:
    """Where a task's `files` entry points (None: a relative path and no data directory).
    "embedded:ko/mc.jsonl" is under tongues/resources/eval, "instruct:ko/conversations.jsonl" under
    tongues/resources/instruct."""
    if entry.startswith(EMBEDDED):
        return embedded_eval_dir() / entry[len(EMBEDDED):]
    if entry.startswith(INSTRUCT):
        return embedded_eval_dir().parent / "instruct" / entry[len(INSTRUCT):]
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path
    return data_dir / path if data_dir else None


def load_split(spec: TaskSpec, split: str, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The documents of one split of a task, as dicts (see the module docstring)."""
    root = data_root(data_dir)
    entry = spec.data.files.get(split)
    tried: list[str] = []
    if entry is not None:
        path = file_path(entry, root)
        if path is not None and path.is_file():
            rows = read_rows(path, spec.data.format, spec.data.documents)
            if spec.data.fields:
                rows = [_map_fields(spec, row, f"{path}:{i + 1}") for i, row in enumerate(rows)]
            if spec.data.select == "heldout":
                from tongues.data.split import in_heldout

                rows = [r for r in rows if in_heldout(str(r.get("id", "")))]
            if not rows:
                raise DataError(f"{path}: no documents in it (task {spec.task}, {spec.path})")
            return rows
        tried.append(f"{path} does not exist" if path else f"{entry!r} is relative and no --data-dir (or ${DATA_ENV}) is set")
    if spec.data.hub is not None:
        return _load_hub(spec, split, tried)
    listed = ", ".join(f"{k}={v}" for k, v in spec.data.files.items())
    raise DataError(f"task {spec.task} ({spec.path}): no data for split {split!r}: "
                    f"{'; '.join(tried) or 'no file for it'} (files: {listed or 'none'})")


def _load_hub(spec: TaskSpec, split: str, tried: list[str]) -> list[dict[str, Any]]:
    from tongues.hub import require_hub

    hub = spec.data.hub
    assert hub is not None
    local = "; ".join(tried)
    require_hub(f"task {spec.task} ({spec.path}) data {hub.path}{'/' + hub.name if hub.name else ''}",
                "pass --data-dir with the files the task names" + (f" ({local})" if local else ""))
    try:
        import datasets

        dataset = datasets.load_dataset(hub.path, hub.name, split=split)
    except Exception as err:  # offline, unknown split, gated dataset: all need the same advice
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        local = "; ".join(tried)
        raise DataError(
            f"task {spec.task} ({spec.path}): cannot load {hub.path}"
            f"{'/' + hub.name if hub.name else ''} split {split!r} from the Hub ({reason})"
            f"{'; ' + local if local else ''}. Offline, pass --data-dir with the files the task names"
            f" ({', '.join(f'{k}={v}' for k, v in spec.data.files.items()) or 'none listed'})"
        ) from None
    return dataset.to_list()


def _map_fields(spec: TaskSpec, row: dict[str, Any], where: str) -> dict[str, Any]:
    mapped = dict(row)
    scope = {**row, "row": row}  # `row['1']` reaches columns whose names are not identifiers
    for name, template in spec.data.fields.items():
        if name not in row:  # a file already in the Hub's format keeps its own columns
            mapped[name] = value(template, scope, where=f"{where}: data.fields.{name}")
    return mapped


def read_rows(path: Path, fmt: str = "auto", documents: str = "blank_line") -> list[dict[str, Any]]:
    """Rows of a local file: jsonl / json (a list), tsv / csv (header line), text (documents)."""
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".json": "json", ".tsv": "tsv", ".csv": "csv", ".txt": "text"}.get(path.suffix)
        if fmt is None:
            raise DataError(f"{path}: cannot tell the format from the suffix; set data.format "
                            "(jsonl, json, tsv, csv, text) in the task file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    if fmt == "text":
        if documents == "line":
            return [{"text": line} for line in text.splitlines() if line.strip()]
        return [{"text": doc.strip("\n")} for doc in _blank_line_split(text)]
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
            rows.append(row)
        return rows
    if fmt == "json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: expected a JSON list of objects")
        return rows
    delimiter = "\t" if fmt == "tsv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # TSV sources (KoBEST) use bare quotes inside fields: read them as text, not as CSV quoting.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    rows = []
    for number, row in enumerate(reader, 2):
        if None in row or any(v is None for v in row.values()):
            raise DataError(f"{path}:{number}: {len([v for v in row.values() if v is not None])} columns, "
                            f"the header has {len(reader.fieldnames or [])}")
        rows.append(dict(row))
    return rows


def _blank_line_split(text: str) -> list[str]:
    docs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            docs.append("\n".join(current))
            current = []
    if current:
        docs.append("\n".join(current))
    return docs
