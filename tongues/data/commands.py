"""`tongues data prepare`: the command-line face of tongues.data.prepare.

Options mirror CorpusConfig fields (same names, dashes for underscores) and are validated by the
same model as a recipe's `corpora.<name>` section, through tongues.config.validate.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from tongues.data.config import CorpusConfig

DESCRIPTION = """\
Clean raw text into a prepared corpus: parquet shards (train/validation), stats.json and a data
card (data_card.md + length_histogram.png).

SOURCE is a .txt file (one document per line by default; --doc-mode paragraph for documents
separated by blank lines), a .jsonl file (one JSON object per line, text in --text-field), a
.parquet file (column --text-field), any of these compressed as .gz or .zst, a directory of such
files, embedded:LANG (a corpus shipped with tongues; blank-line separated), or
hf:NAME[:CONFIG][@SPLIT] (a Hugging Face dataset, streamed; needs network).

Steps: Unicode normalization, control-character and whitespace cleanup; length, script-share and
(optional) language-ID filters; exact and MinHash near-duplicate removal; e-mail/phone masking;
a train/validation split by a hash of each document.

example:
  tongues data prepare --lang ko corpus.txt.zst --out prepared/ko --license CC-BY-4.0
"""

# CorpusConfig fields that are plain options (value passed through to validation as typed).
_VALUE_OPTIONS = {
    "license": "license of the text, recorded in the data card (SPDX id, e.g. CC-BY-4.0)",
    "doc_mode": ".txt files: 'line' = one document per line, 'paragraph' = documents separated by blank lines",
    "text_field": ".jsonl / .parquet / hf: the field or column that holds the text",
    "normalization": "Unicode normal form (NFC keeps Hangul syllables, matras and Vietnamese tone marks whole)",
    "min_chars": "drop documents shorter than this many characters (after normalization)",
    "max_chars": "drop documents longer than this many characters",
    "min_script_share": "drop documents with a smaller share of letters in the language's script",
    "minhash_perms": "MinHash permutations for near-duplicate detection",
    "validation_share": "share of documents (by hash of the text) in the validation split",
    "max_docs": "stop once this many documents are kept (None: no limit)",
    "shard_docs": "documents per parquet shard",
}
_SWITCHES = {
    "lid": "also filter by language identification with lingua (pip install 'tongues[lid]')",
    "dedup_exact": "remove exact duplicates (same normalized text)",
    "mask_pii": "mask e-mail addresses as <EMAIL> and phone numbers as <PHONE>",
}


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _default(field: str) -> Any:
    return CorpusConfig.model_fields[field].default


def register(commands: Any) -> None:
    p = commands.add(
        "data prepare",
        "clean, filter, deduplicate and split raw text into parquet shards with a data card",
        _handle_prepare,
        description=DESCRIPTION,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="input files, directories, embedded:LANG or hf:NAME[:CONFIG][@SPLIT]")
    p.add_argument("--lang", required=True, help="language code of the corpus (ko, hi, vi, en)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created; its train/, validation/, stats.json and card are replaced)")
    choices = {"doc_mode": ["line", "paragraph"], "normalization": ["NFC", "NFKC", "none"]}
    for field, help_text in _VALUE_OPTIONS.items():
        p.add_argument(_flag(field), dest=field, default=_default(field), choices=choices.get(field), help=help_text)
    p.add_argument(
        "--near-dup-threshold", dest="near_dup_threshold", default=_default("near_dup_threshold"),
        help="MinHash LSH Jaccard threshold for near duplicates; 'none' turns near-duplicate removal off",
    )
    for field, help_text in _SWITCHES.items():
        p.add_argument(_flag(field), dest=field, default=_default(field), action=argparse.BooleanOptionalAction, help=help_text)
    p.add_argument("--name", default=None, help="corpus name for the data card title (None: the --out directory's name)")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def config_from_args(args: argparse.Namespace) -> CorpusConfig:
    """Build the CorpusConfig for `args`, validated like a recipe's corpus section."""
    from tongues.config import validate
    from tongues.data.sources import check_sources
    from tongues.errors import ConfigError

    check_sources(args.sources)  # a missing file is a DataError naming it
    data: dict[str, Any] = {"lang": args.lang, "sources": list(args.sources)}
    for field in (*_VALUE_OPTIONS, *_SWITCHES):
        data[field] = getattr(args, field)
    threshold = args.near_dup_threshold
    data["near_dup_threshold"] = None if str(threshold).lower() in ("none", "off", "0") else threshold
    try:
        return validate(CorpusConfig, data, source="data prepare")
    except ConfigError as err:
        # Name the flag the user typed, not the config key.
        message = str(err)
        for field in CorpusConfig.model_fields:
            message = message.replace(f"data prepare: {field}:", f"data prepare: {_flag(field)}:")
        raise ConfigError(message) from None


def command_line(args: argparse.Namespace) -> str:
    """The command as the user could type it again (options left at their default omitted)."""
    parts = ["tongues", "data", "prepare", "--lang", args.lang, *args.sources, "--out", args.out]
    for field in (*_VALUE_OPTIONS, "near_dup_threshold"):
        value = getattr(args, field)
        if value != _default(field):
            parts += [_flag(field), str(value)]
    for field in _SWITCHES:
        value = getattr(args, field)
        if value != _default(field):
            parts.append(_flag(field) if value else "--no-" + field.replace("_", "-"))
    if args.name:
        parts += ["--name", args.name]
    return shlex.join(parts)


def _handle_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tongues.data.prepare import prepare

    config = config_from_args(args)
    metrics = prepare(
        config, args.out, command=command_line(args), progress=not args.no_progress, name=args.name
    )
    out = Path(args.out)
    print(metrics["headline"])
    print(
        f"train {metrics['train_documents']:,} / validation {metrics['validation_documents']:,} documents; "
        f"duplicate rate {100 * metrics['duplicate_rate']:.1f}%; {metrics['pii_masked']:,} PII masked; "
        f"{metrics['unreadable_lines']:,} unreadable lines"
    )
    for line in metrics["unreadable"]:
        print(f"skipped {line}")
    if metrics["unreadable_lines"] > len(metrics["unreadable"]):
        print(f"skipped ... and {metrics['unreadable_lines'] - len(metrics['unreadable']):,} more (see the data card)")
    for warning in metrics["warnings"]:
        print(f"warning: {warning}")
    print(f"wrote {out / 'train'}, {out / 'validation'}, {out / 'stats.json'}, {out / 'data_card.md'}")
    return 0
