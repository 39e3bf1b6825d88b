"""`tongues tokenizer train` and `tongues tokenizer report`: the command-line face of tongues.tokenizers.

Training options mirror TokenizerConfig fields (dashes for underscores) and are validated by the
same model as a recipe's `tokenizers.<name>` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tongues.tokenizers.config import TokenizerConfig

TRAIN_DESCRIPTION = """\
Train a SentencePiece tokenizer for one or more languages and export it as a Hugging Face fast
tokenizer with a ChatML chat template. The output directory loads with
transformers.AutoTokenizer.from_pretrained(DIR) alone.

--data takes prepared corpora (from `tongues data prepare`; language from their stats.json),
plain UTF-8 text files (every non-blank line is text) or directories of .txt files. Plain text
needs its language: LANG=PATH, or a single --lang.

Fixed special ids: 0 <pad>, 1 <unk>, 2 <s>, 3 </s>, 4 <|im_start|>, 5 <|im_end|>,
6-15 <|reserved_0|>..<|reserved_9|>. Plain encode adds no <s>/</s>. Byte fallback, digits split,
NFC normalization (NFD input gives the same ids), whitespace kept as is (decode gives back the
text exactly). Several languages are mixed by temperature sampling, p_i ∝ (n_i/N)^T.

examples:
  tongues tokenizer train --data prepared/ko --vocab-size 32000 --out tokenizers/ko
  tongues tokenizer train --data ko=ko.txt hi=hi.txt vi=vi.txt --vocab-size 64000 --out tokenizers/multi
"""

REPORT_DESCRIPTION = """\
Compare tokenizers (ours or any Hugging Face tokenizer directory) per language: tokens per word,
tokens per character, bytes per token, unknown and byte-fallback rates, roundtrip exactness,
vocabulary used, encode throughput; with line-parallel text, the premium against English
(tokens(lang) / tokens(en) over the same lines). Writes report.json, report.md and report.png.

--text takes LANG=FILE or FILE (language guessed from its script; Latin text without Vietnamese
letters counts as English). --parallel takes LANG=FILE for line-aligned files (one of them en=),
or LANG=FILE.tsv with English<TAB>LANG lines (the FLORES-200 layout).

example:
  tongues tokenizer report --tokenizer tokenizers/ko --tokenizer gpt2-dir --text ko=dev.txt \\
      --parallel ko=flores200.dev.en-ko.tsv --out reports/tokenizers
"""


def _default(field: str) -> Any:
    return TokenizerConfig.model_fields[field].default


def register(commands: Any) -> None:
    p = commands.add("tokenizer train", "train a SentencePiece tokenizer for your script and export it for Hugging Face",
                     _handle_train, description=TRAIN_DESCRIPTION)
    # SUPPRESS: no "(default: None)" in the help of options whose absence means "decided for you".
    none = argparse.SUPPRESS
    p.add_argument("--data", nargs="+", action="extend", required=True, default=none, metavar="[LANG=]PATH",
                   help="prepared corpus directories, text files or directories of .txt (repeatable)")
    p.add_argument("--lang", action="append", default=none, metavar="LANG",
                   help="language of plain-text --data (repeatable: ko, hi, vi, en); every one must get text")
    p.add_argument("--vocab-size", type=int, default=_default("vocab_size"), help="vocabulary size, special tokens and 256 bytes included")
    p.add_argument("--model-type", choices=["unigram", "bpe"], default=none,
                   help="SentencePiece model; if not given, unigram, or bpe when the mix includes Korean or "
                        "Vietnamese (measured better there)")
    p.add_argument("--temperature", type=float, default=_default("temperature"),
                   help="language mixing exponent T in p_i ∝ (n_i/N)^T (1: natural mix, lower: flatter)")
    p.add_argument("--sample-chars", type=int, default=_default("sample_chars"),
                   help="train on a sample of at most this many characters (bounds memory)")
    p.add_argument("--character-coverage", type=float, default=none,
                   help="share of characters covered by pieces, the rest falls back to bytes; if not given, "
                        "the lowest of the scripts' (tongues.languages)")
    p.add_argument("--split-by-script", action=argparse.BooleanOptionalAction, default=_default("split_by_script"),
                   help="forbid pieces that span a change of script (e.g. Hangul + punctuation)")
    p.add_argument("--max-piece-length", type=int, default=_default("max_piece_length"), help="longest piece, in characters")
    p.add_argument("--seed", type=int, default=0, help="seed of the language-mix sampling")
    p.add_argument("--out", required=True, default=none, metavar="DIR",
                   help="output directory (created; tokenizer files in it are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = commands.add("tokenizer report", "compare tokenizers per language: fertility, bytes/token, premium vs English, speed",
                     _handle_report, description=REPORT_DESCRIPTION)
    p.add_argument("--tokenizer", action="append", required=True, default=none, metavar="DIR",
                   help="a Hugging Face tokenizer directory (repeatable, compared side by side)")
    p.add_argument("--text", nargs="+", action="extend", default=none, metavar="[LANG=]FILE",
                   help="text to measure, one line per unit (repeatable)")
    p.add_argument("--parallel", nargs="+", action="extend", default=none, metavar="LANG=FILE",
                   help="line-parallel text for the premium against English (repeatable)")
    p.add_argument("--max-lines", type=int, default=none, help="read at most this many lines per file; if not given, all")
    p.add_argument("--out", default="tokenizer_report", metavar="DIR", help="where report.json, report.md, report.png go")


def _handle_train(args: argparse.Namespace) -> int:
    from tongues.config import validate
    from tongues.tokenizers.train import resolve_sources, train_tokenizer

    config = validate(TokenizerConfig, {
        "corpora": ["command-line"],
        "vocab_size": args.vocab_size,
        "model_type": getattr(args, "model_type", None),
        "temperature": args.temperature,
        "sample_chars": args.sample_chars,
        "character_coverage": getattr(args, "character_coverage", None),
        "split_by_script": args.split_by_script,
        "max_piece_length": args.max_piece_length,
    }, source="tongues tokenizer train")
    sources = resolve_sources(args.data, getattr(args, "lang", []))
    metadata = train_tokenizer(
        sources, args.out, vocab_size=config.vocab_size, model_type=config.model_type,
        temperature=config.temperature, sample_chars=config.sample_chars,
        character_coverage=config.character_coverage, split_by_script=config.split_by_script,
        max_piece_length=config.max_piece_length, seed=args.seed, progress=not args.quiet,
    )
    mix = ", ".join(f"{lang} {m['share']:.1%} (x{m['rate']:.2f})" for lang, m in metadata["mix"]["languages"].items())
    print(f"{args.out}: {metadata['model_type']} tokenizer, {metadata['vocab_size']} pieces, "
          f"{metadata['normalization']['form']}, mix {mix}")
    print(f"tokenizer sha256 {metadata['tokenizer_sha256']}")
    return 0


def _handle_report(args: argparse.Namespace) -> int:
    from tongues.errors import ConfigError
    from tongues.tokenizers.report import guess_language, read_lines, read_parallel, tokenizer_report

    text_items, parallel_items = getattr(args, "text", []), getattr(args, "parallel", [])
    max_lines = getattr(args, "max_lines", None)
    if not text_items and not parallel_items:
        raise ConfigError("tongues tokenizer report: give --text [LANG=]FILE and/or --parallel LANG=FILE")
    texts: dict[str, list[str]] = {}
    for item in text_items:
        lang, path = _lang_path(item)
        lines = read_lines(path, max_lines)
        lang = lang or guess_language(lines, path)
        texts.setdefault(lang, []).extend(lines)
    parallel = read_parallel([_lang_path(item, required=True) for item in parallel_items], max_lines)
    if not texts:  # measure the parallel text itself
        texts = {lang: list(other) for lang, (other, _) in parallel.items()}
        if parallel:
            texts["en"] = list(next(iter(parallel.values()))[1])
    report = tokenizer_report(args.tokenizer, texts, parallel or None)
    paths = report.save(args.out)
    sys.stdout.write(report.to_markdown())
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _lang_path(item: str, required: bool = False) -> tuple[Any, Path]:
    import re

    from tongues.errors import ConfigError
    from tongues.languages import get_language

    match = re.match(r"^([a-z]{2,3})=(.+)$", item)
    if not match:
        if required:
            raise ConfigError(f"--parallel {item}: expected LANG=FILE, e.g. ko=flores200.dev.en-ko.tsv")
        return None, Path(item)
    get_language(match.group(1))
    return match.group(1), Path(match.group(2))
