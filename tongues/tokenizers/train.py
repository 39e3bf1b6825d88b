"""Train a SentencePiece tokenizer for one or more languages and export it for Hugging Face.

The output directory (the contract with every later stage)::

    tokenizer.model           SentencePiece model (normalizes NFD to NFC on its own)
    tokenizer.json            Hugging Face fast tokenizer, same ids as tokenizer.model
    tokenizer_config.json     special tokens, no BOS/EOS added by plain encode, ChatML chat template
    special_tokens_map.json
    tongues_tokenizer.json    languages, normalization, settings, the realized language mix

Settings and why: byte fallback (no unknown tokens: rare characters and emoji become UTF-8
bytes); digits split one by one; character coverage per script (`tongues.languages`); NFC
normalization in both the .model and tokenizer.json; no dummy prefix and whitespace kept as is, so
decode gives back the normalized input exactly; pieces may span a change of script (Korean "다."),
which measurably raises bytes per token (benchmarks/RESULTS.md). Unigram by default; BPE for
Korean and Vietnamese, where unigram compressed worse than a byte-level BPE of the same size.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError, TonguesError
from tongues.languages import get_language
from tongues.manifest import package_versions, sha256_file, write_json
from tongues.tokenizers.export import (
    BOS,
    EOS,
    IM_END,
    IM_START,
    PAD,
    SPECIAL_IDS,
    TOKENIZER_FILES,
    UNK,
    USER_DEFINED,
    verify_parity,
    write_hf_files,
)
from tongues.tokenizers.normalization import RULE_NAME, normalization_for, normalize_text, write_rule_tsv
from tongues.tokenizers.sampling import MAX_LINE_BYTES, TextSource, write_training_text

METADATA = "tongues_tokenizer.json"
# Model type when none is given: unigram, except where we measured it to compress worse than a
# byte-level BPE of the same size (benchmarks/RESULTS.md): Korean (4.68 vs 4.88 bytes/token at 8k;
# BPE 4.96) and Vietnamese (on small text unigram supports few pieces: 1.3k of an asked 4k, at 2.6
# vs 3.8 bytes/token; BPE reaches 4k at 4.6). A mix uses BPE if any of its languages does.
DEFAULT_MODEL_TYPE = {"ko": "bpe", "vi": "bpe"}
DEFAULT_SAMPLE_CHARS = 20_000_000
# Lines of the training sample whose SentencePiece and tokenizer.json ids are compared at export.
_PARITY_LINES = 300

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_model_type(langs: list[str]) -> str:
    """"bpe" if any language of the mix is better served by BPE (DEFAULT_MODEL_TYPE), else "unigram"."""
    return "bpe" if any(DEFAULT_MODEL_TYPE.get(lang) == "bpe" for lang in langs) else "unigram"


def character_coverage_for(langs: list[str]) -> float:
    """SentencePiece character coverage for a mix: the lowest of its scripts' (tongues.languages)."""
    return min(get_language(lang).character_coverage for lang in langs)


def train_tokenizer(
    sources: list[TextSource],
    out_dir: str | Path,
    *,
    vocab_size: int,
    model_type: str | None = None,
    temperature: float = 0.3,
    sample_chars: int = DEFAULT_SAMPLE_CHARS,
    character_coverage: float | None = None,
    split_by_script: bool = False,
    max_piece_length: int = 16,
    seed: int = 0,
    progress: bool = True,
    log: Log | None = _stderr,
) -> dict[str, Any]:
    """Train on `sources`, write the tokenizer directory `out_dir`, return its metadata.

    Files are written to a temporary directory, checked (SentencePiece and tokenizer.json give
    the same ids), then moved into `out_dir` (other files there are kept). Raises TonguesError
    for unusable input: no sources, empty text, unknown language, a vocabulary the text cannot
    support.
    """
    log = log or (lambda message: None)
    if not sources:
        raise DataError("no training text given: pass --data with a prepared corpus, a directory or text files")
    langs = sorted({source.lang for source in sources})
    for lang in langs:
        get_language(lang)  # raises ConfigError listing the known codes
    form = normalization_for(langs)
    model_type = model_type or default_model_type(langs)
    if model_type not in ("unigram", "bpe"):
        raise ConfigError(f"model type {model_type!r} is not supported (use unigram or bpe)")
    coverage = character_coverage if character_coverage is not None else character_coverage_for(langs)
    out_dir = Path(out_dir)
    created = out_dir.resolve()  # a failed run leaves no folder it made itself: find the first it makes
    while not created.parent.exists():
        created = created.parent
    created = None if created.exists() else created
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=out_dir))
    try:
        text_file = staging / "train.txt"
        with open(text_file, "w", encoding="utf-8") as out:
            mix = write_training_text(sources, out, temperature=temperature, budget_chars=sample_chars,
                                      seed=seed, form=form, progress=progress)
        sampled = sum(m["sampled_chars"] for m in mix.values())
        shares = ", ".join(f"{lang} {m['share']:.0%}" for lang, m in mix.items())
        log(f"training SentencePiece {model_type} with {vocab_size} pieces on {sampled:,} characters ({shares})")
        start = time.perf_counter()
        _train_sentencepiece(
            text_file, staging / "tokenizer", staging / "normalization.tsv",
            model_type=model_type, vocab_size=vocab_size, coverage=coverage, split_by_script=split_by_script,
            max_piece_length=max_piece_length, form=form, source_names=[s.name for s in sources],
            progress=progress,
        )
        seconds = time.perf_counter() - start
        model_file = staging / "tokenizer.model"
        tokenizer = write_hf_files(model_file, staging)
        parity = verify_parity(model_file, tokenizer, _parity_texts(text_file, seed))
        if parity["mismatched"]:
            log(f"warning: tokenizer.json and tokenizer.model differ on {parity['mismatched']} of "
                f"{parity['checked']} checked lines (recorded in {METADATA})")
        metadata = {
            "format": 1,
            "languages": langs,
            "model_type": model_type,
            "vocab_size": vocab_size,
            "normalization": {
                "form": form,
                "by_language": {lang: get_language(lang).normalization for lang in langs},
                "sentencepiece_rule": RULE_NAME,
                "tokenizer_json": form,
            },
            "character_coverage": coverage,
            "character_coverage_by_language": {lang: get_language(lang).character_coverage for lang in langs},
            "byte_fallback": True,
            "split_digits": True,
            "add_dummy_prefix": False,
            "whitespace": "kept as is (no stripping or collapsing); ' ' is '▁' in pieces",
            "split_by_script": split_by_script,
            "max_piece_length": max_piece_length,
            "special_tokens": SPECIAL_IDS,
            "add_bos_token": False,
            "add_eos_token": False,
            "chat_template": "chatml",
            "stop_tokens": [IM_END, EOS],
            "mix": {"temperature": temperature, "sample_chars": sample_chars, "seed": seed, "languages": mix},
            "sources": [{"lang": s.lang, "name": s.name} for s in sources],
            "parity": parity,
            "training_seconds": round(seconds, 3),
            "tokenizer_sha256": sha256_file(staging / "tokenizer.json"),
            "versions": package_versions(),
        }
        (out_dir / METADATA).unlink(missing_ok=True)
        for name in TOKENIZER_FILES:
            os.replace(staging / name, out_dir / name)
        write_json(out_dir / METADATA, metadata)  # last: its presence marks a complete directory
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out_dir} (sha256 of tokenizer.json {metadata['tokenizer_sha256'][:12]}, "
        f"{seconds:.1f}s training, ids checked on {parity['checked']} lines)")
    return metadata


_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def _train_sentencepiece(
    text_file: Path, prefix: Path, rule_file: Path, *, model_type: str, vocab_size: int, coverage: float,
    split_by_script: bool, max_piece_length: int, form: str, source_names: list[str], progress: bool,
) -> None:
    import sentencepiece as spm

    write_rule_tsv(rule_file, form)
    try:
        with _heartbeat(f"SentencePiece {model_type}", enabled=progress):
            spm.SentencePieceTrainer.train(
                input=str(text_file),
                model_prefix=str(prefix),
                model_type=model_type,
                vocab_size=vocab_size,
                character_coverage=coverage,
                byte_fallback=True,
                split_digits=True,
                normalization_rule_tsv=str(rule_file),
                add_dummy_prefix=False,
                remove_extra_whitespaces=False,
                allow_whitespace_only_pieces=True,
                split_by_unicode_script=split_by_script,
                split_by_whitespace=True,
                max_sentencepiece_length=max_piece_length,
                pad_id=SPECIAL_IDS[PAD], pad_piece=PAD,
                unk_id=SPECIAL_IDS[UNK], unk_piece=UNK,
                bos_id=SPECIAL_IDS[BOS], bos_piece=BOS,
                eos_id=SPECIAL_IDS[EOS], eos_piece=EOS,
                user_defined_symbols=list(USER_DEFINED),
                input_sentence_size=0,  # we sampled already; load every line
                max_sentence_length=MAX_LINE_BYTES,
                num_threads=min(os.cpu_count() or 1, 16),
                minloglevel=2,
            )
    except RuntimeError as err:
        raise _sentencepiece_error(str(err), vocab_size, ", ".join(source_names)) from None


@contextmanager
def _heartbeat(what: str, enabled: bool = True) -> Iterator[None]:
    """Show the elapsed time while `what` runs: SentencePiece trains in C++ with no progress of its
    own, and releases the GIL, so a thread can tick."""
    if not enabled:
        yield
        return
    from tongues.progress import progress_bar as tqdm

    done = threading.Event()
    bar = tqdm(desc=f"training {what}", bar_format="{desc}: {elapsed}", leave=False)

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        bar.close()


def _sentencepiece_error(message: str, vocab_size: int, where: str) -> TonguesError:
    if match := _TOO_HIGH.search(message):
        supported = int(match.group(2))
        return ConfigError(
            f"vocabulary size {vocab_size} is larger than the training text supports ({where}): "
            f"use --vocab-size {supported} or less (vocab_size in a recipe), or add text"
        )
    if match := _TOO_LOW.search(message):
        needed = int(match.group(2))
        return ConfigError(
            f"vocabulary size {vocab_size} is too small for the characters, bytes and special tokens of the "
            f"text ({where}): use --vocab-size {needed} or more, or a lower character coverage"
        )
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return TonguesError(f"SentencePiece training failed on {where}: {first}")


def _parity_texts(text_file: Path, seed: int) -> Iterator[str]:
    """Training lines spread over the sample, their NFD spellings, and fixed probes (emoji, chat turns)."""
    import random
    import unicodedata

    with open(text_file, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    picked = random.Random(seed).sample(lines, min(_PARITY_LINES, len(lines)))
    yield from picked
    yield from (unicodedata.normalize("NFD", line) for line in picked[:50])
    yield " two  spaces, a tab\tand a newline\n, emoji 🙂🇰🇷, digits 12345 "
    yield f"{IM_START}user\n{picked[0] if picked else ''}{IM_END}\n{IM_START}assistant\n"


# ---------------------------------------------------------------------------------------------
# Inputs: prepared corpora (from `tongues data prepare`), directories of .txt files, text files


def prepared_source(directory: str | Path, split: str = "train") -> TextSource:
    """A prepared corpus directory as a source (language from its stats.json)."""
    from tongues.data.prepared import read_stats, read_texts

    directory = Path(directory)
    lang = read_stats(directory).get("lang")
    if not lang:
        raise DataError(f"{directory}/stats.json: no 'lang' key; re-run `tongues data prepare`")
    return TextSource(lang, str(directory), lambda: read_texts(directory, split))


def text_file_source(path: str | Path, lang: str) -> TextSource:
    """A UTF-8 text file as a source: every non-blank line is training text."""
    path = Path(path)

    def documents() -> Iterator[str]:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{number}: not valid UTF-8 (byte {err.start} of the line)") from None

    return TextSource(lang, str(path), documents)


def resolve_sources(items: list[str], langs: list[str]) -> list[TextSource]:
    """Sources from `--data` items: `[LANG=]PATH`, PATH a prepared corpus, a directory of .txt, a file.

    Plain text needs a language: `LANG=PATH`, or the only `--lang`. Every `--lang` must get text.
    """
    for lang in langs:
        get_language(lang)
    sources: list[TextSource] = []
    for item in items:
        lang, path = _split_item(item)
        if not path.exists():
            raise DataError(f"--data {item}: {path} does not exist")
        if path.is_dir() and (path / "stats.json").exists():
            source = prepared_source(path)
            if lang and lang != source.lang:
                raise ConfigError(f"--data {item}: {path} is a prepared {source.lang} corpus, not {lang}")
            sources.append(source)
            continue
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"--data {item}: {path} holds no .txt files and is not a prepared corpus (no stats.json)")
        if lang is None:
            if len(langs) != 1:
                raise ConfigError(
                    f"--data {item}: which language is this text? write LANG=PATH (e.g. ko={path}) "
                    f"or give exactly one --lang (given: {', '.join(langs) or 'none'})"
                )
            lang = langs[0]
        sources.extend(text_file_source(file, lang) for file in files)
    given = {source.lang for source in sources}
    missing = [lang for lang in langs if lang not in given]
    if missing:
        raise ConfigError(f"--lang {' '.join(missing)}: no --data for it (add LANG=PATH or a prepared corpus)")
    return sources


def _split_item(item: str) -> tuple[str | None, Path]:
    match = re.match(r"^([a-z]{2,3})=(.+)$", item)
    if not match:
        return None, Path(item)
    get_language(match.group(1))
    return match.group(1), Path(match.group(2))


# ---------------------------------------------------------------------------------------------
# Recipe stage


def run_stage(ctx: Any) -> dict[str, Any]:
    """The `tokenizer-<name>` stage: train on the `data-*` inputs (their train splits).

    Returns the metrics for the manifest, including `tokenizer_sha256` (sha256 of tokenizer.json)
    and held-out bytes per token per language (validation split). Training is redone when the
    stage is resumed (it is not checkpointed).
    """
    config = ctx.config
    data_dirs = {name: Path(path) for name, path in ctx.inputs.items() if name.startswith("data-")}
    if not data_dirs:
        raise ConfigError(f"stage {ctx.stage.name}: no data-* inputs (tokenizers.<name>.corpora)")
    sources = [prepared_source(path) for _, path in sorted(data_dirs.items())]
    metadata = train_tokenizer(
        sources, ctx.out_dir,
        vocab_size=config.vocab_size,
        model_type=config.model_type,
        temperature=config.temperature,
        sample_chars=config.sample_chars,
        character_coverage=config.character_coverage,
        split_by_script=config.split_by_script,
        max_piece_length=config.max_piece_length,
        seed=ctx.seed,
    )
    held_out = _held_out_bytes_per_token(ctx.out_dir, data_dirs)
    headline = f"{metadata['model_type']} {config.vocab_size}" + "".join(
        f", {lang} {bpt:.2f} B/tok" for lang, bpt in held_out.items()
    )
    return {
        "tokenizer_sha256": metadata["tokenizer_sha256"],
        "vocab_size": config.vocab_size,
        "model_type": metadata["model_type"],
        "languages": metadata["languages"],
        "mix_share": {lang: m["share"] for lang, m in metadata["mix"]["languages"].items()},
        "held_out_bytes_per_token": held_out,
        "training_seconds": metadata["training_seconds"],
        "headline": headline,
    }


def _held_out_bytes_per_token(tokenizer_dir: Path, data_dirs: dict[str, Path], max_docs: int = 2000) -> dict[str, float]:
    """UTF-8 bytes per token on (up to `max_docs` of) each corpus' validation split."""
    from itertools import islice

    from tokenizers import Tokenizer

    from tongues.data.prepared import read_stats, read_texts

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    totals: dict[str, list[int]] = {}
    for _, path in sorted(data_dirs.items()):
        docs = [normalize_text(doc) for doc in islice(read_texts(path, "validation"), max_docs)]
        if not docs:
            continue
        lang = read_stats(path)["lang"]
        n_bytes = sum(len(doc.encode("utf-8")) for doc in docs)
        n_tokens = sum(len(e.ids) for e in tokenizer.encode_batch(docs, add_special_tokens=False))
        total = totals.setdefault(lang, [0, 0])
        total[0] += n_bytes
        total[1] += n_tokens
    return {lang: round(b / t, 4) for lang, (b, t) in totals.items() if t}
