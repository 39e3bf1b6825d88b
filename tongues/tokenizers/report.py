"""Compare tokenizers across languages: fertility, compression, fallback, roundtrip, premium, speed.

`tokenizer_report` takes any Hugging Face tokenizer directories (ours or others') and text per
language and measures, per tokenizer and language: tokens per word (space-delimited languages),
tokens per character, UTF-8 bytes per token, the share of unknown and byte-fallback tokens, the
share of lines that decode back exactly, the share of token boundaries that fall inside a
grapheme cluster (before a combining mark such as a Devanagari matra or Vietnamese tone mark, or
after a virama inside a conjunct), the share of the vocabulary used, and batched encode
throughput. With line-parallel text it adds the tokenization premium against English:
tokens(lang) / tokens(en) over the same lines (Petrov et al. 2023). Texts are NFC-normalized first
so every tokenizer sees the same characters; roundtrip compares with that text.

The evaluation harness reuses `tokenizer_report` for its tokenizer-parity task.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tongues.errors import DataError
from tongues.languages import LANGUAGES

_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_VIRAMAS = frozenset("\u094d\u09cd\u0a4d\u0acd\u0b4d\u0bcd\u0c4d\u0ccd\u0d4d")  # Indic viramas
# Columns of the Markdown table: (key, header, format).
_COLUMNS = (
    ("lines", "lines", "{:,}"),
    ("tokens_per_word", "tokens/word", "{:.3f}"),
    ("tokens_per_char", "tokens/char", "{:.3f}"),
    ("bytes_per_token", "bytes/token", "{:.3f}"),
    ("unk_rate", "unk %", "{:.2%}"),
    ("byte_fallback_rate", "byte fallback %", "{:.2%}"),
    ("roundtrip_exact", "roundtrip exact %", "{:.2%}"),
    ("cluster_split_rate", "splits in clusters %", "{:.2%}"),
    ("vocab_used", "vocab used %", "{:.1%}"),
    ("encode_mb_per_s", "encode MB/s", "{:.2f}"),
)


@dataclass
class TokenizerReport:
    """Metrics per (tokenizer, language) in `rows`; `premium[tokenizer][lang]` against English."""

    tokenizers: list[str]
    languages: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    premium: dict[str, dict[str, float]] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def metric(self, tokenizer: str, lang: str, key: str) -> Any:
        """One value, e.g. `report.metric("ours", "ko", "bytes_per_token")`."""
        for row in self.rows:
            if row["tokenizer"] == tokenizer and row["lang"] == lang:
                return row[key]
        raise KeyError(f"no row for tokenizer {tokenizer!r} and language {lang!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """A Markdown table per metric row, then the premium table when there is one."""
        header = "| tokenizer | lang | " + " | ".join(h for _, h, _ in _COLUMNS) + " |"
        lines = [header, "|" + "---|" * (len(_COLUMNS) + 2)]
        for row in self.rows:
            cells = ["–" if row[key] is None else fmt.format(row[key]) for key, _, fmt in _COLUMNS]
            lines.append(f"| {row['tokenizer']} | {row['lang']} | " + " | ".join(cells) + " |")
        if self.premium:
            langs = sorted({lang for values in self.premium.values() for lang in values})
            lines += ["", "Tokenization premium against English (tokens(lang) / tokens(en), same lines):", "",
                      "| tokenizer | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
            for name, values in self.premium.items():
                cells = [f"{values[lang]:.3f}" if lang in values else "–" for lang in langs]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Bar chart PNG: bytes per token per language and tokenizer (and the premium, if measured)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2 if self.premium else 1, figsize=(12 if self.premium else 7, 4), squeeze=False)
        width = 0.8 / max(len(self.tokenizers), 1)
        for index, name in enumerate(self.tokenizers):
            values = [self.metric(name, lang, "bytes_per_token") for lang in self.languages]
            xs = [i + index * width for i in range(len(self.languages))]
            axes[0][0].bar(xs, values, width, label=name)
        axes[0][0].set_xticks([i + width * (len(self.tokenizers) - 1) / 2 for i in range(len(self.languages))])
        axes[0][0].set_xticklabels(self.languages)
        axes[0][0].set_title("UTF-8 bytes per token (higher: fewer tokens)")
        axes[0][0].legend(fontsize="small")
        if self.premium:
            langs = sorted({lang for values in self.premium.values() for lang in values})
            ax = axes[0][1]
            for index, name in enumerate(self.tokenizers):
                values = [self.premium.get(name, {}).get(lang, 0.0) for lang in langs]
                ax.bar([i + index * width for i in range(len(langs))], values, width, label=name)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_xticks([i + width * (len(self.tokenizers) - 1) / 2 for i in range(len(langs))])
            ax.set_xticklabels(langs)
            ax.set_title("premium vs English (tokens(lang) / tokens(en))")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write report.json, report.md and report.png into `out_dir`; return their paths."""
        from tongues.manifest import atomic_path, write_json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "png": out_dir / "report.png"}
        write_json(paths["json"], self.to_dict())
        with atomic_path(paths["markdown"]) as tmp:
            tmp.write_text(self.to_markdown(), encoding="utf-8")
        with atomic_path(paths["png"]) as tmp:
            self.plot(tmp)
        return paths


def load_tokenizer(path: str | Path) -> Any:
    """A Hugging Face tokenizer from a directory (never runs remote code)."""
    from transformers import AutoTokenizer

    if not Path(path).exists():
        from tongues.hub import require_hub

        require_hub(f"tokenizer {str(path)!r} (not a local directory)", "pass a tokenizer directory "
                    "(tokenizer.json, tokenizer_config.json)")
    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a Hugging Face tokenizer directory ({str(err).splitlines()[0]})") from None


def tokenizer_report(
    tokenizer_dirs: Sequence[str | Path],
    texts_by_lang: Mapping[str, Sequence[str]],
    parallel: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
    *,
    names: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> TokenizerReport:
    """Measure each tokenizer on each language's lines.

    `texts_by_lang` maps a language code to its lines. `parallel` maps a language code to
    `(lines in that language, the same lines in English)`, aligned one to one, for the premium.
    `names` labels the tokenizers (default: directory names). Blank lines are skipped.
    """
    names = list(names) if names else _names(tokenizer_dirs)
    texts = {lang: _clean(lines) for lang, lines in texts_by_lang.items()}
    empty = [lang for lang, lines in texts.items() if not lines]
    if empty or not texts:
        raise DataError(f"no text to measure for {', '.join(empty) or 'any language'}")
    pairs = {lang: _pairs(lang, *sides) for lang, sides in (parallel or {}).items()}
    report = TokenizerReport(tokenizers=names, languages=list(texts),
                             paths={n: str(p) for n, p in zip(names, tokenizer_dirs, strict=True)})
    for name, directory in zip(names, tokenizer_dirs, strict=True):
        tokenizer = _Encoder(load_tokenizer(directory))
        for lang, lines in texts.items():
            report.rows.append({"tokenizer": name, "lang": lang} | _measure(tokenizer, lang, lines, batch_size))
        if pairs:
            report.premium[name] = {
                lang: round(sum(tokenizer.count(other)) / max(sum(tokenizer.count(english)), 1), 4)
                for lang, (other, english) in pairs.items()
            }
    return report


class _Encoder:
    """Batched encode / decode through the Rust backend when there is one."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        vocab = tokenizer.get_vocab()
        self.vocab_size = len(vocab)
        self.byte_ids = {i for token, i in vocab.items() if _BYTE_TOKEN.match(token)}
        self.unk_id = tokenizer.unk_token_id

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        return [ids for ids, _ in self.encode_with_offsets(lines)]

    def encode_with_offsets(self, lines: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]] | None]]:
        """Ids and character offsets of each line (offsets only from a fast tokenizer)."""
        if self.backend is not None:
            return [(e.ids, e.offsets) for e in self.backend.encode_batch(list(lines), add_special_tokens=False)]
        return [(self.tokenizer.encode(line, add_special_tokens=False), None) for line in lines]

    def decode(self, ids: list[list[int]]) -> list[str]:
        if self.backend is not None:
            return self.backend.decode_batch(ids, skip_special_tokens=False)
        return [self.tokenizer.decode(i, skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in ids]

    def count(self, lines: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encode(lines)]


def _measure(tokenizer: _Encoder, lang: str, lines: list[str], batch_size: int) -> dict[str, Any]:
    tokenizer.encode(lines[:batch_size])  # warm-up (thread pool, caches) before timing
    start = time.perf_counter()
    encoded = [e for i in range(0, len(lines), batch_size) for e in tokenizer.encode_with_offsets(lines[i : i + batch_size])]
    seconds = time.perf_counter() - start
    ids = [seq for seq, _ in encoded]
    splits = [_cluster_splits(line, offsets) for line, (_, offsets) in zip(lines, encoded, strict=True)]
    boundaries = sum(total for _, total in splits)
    decoded = tokenizer.decode(ids)
    n_tokens = sum(map(len, ids))
    n_bytes = sum(len(line.encode("utf-8")) for line in lines)
    n_chars = sum(map(len, lines))
    language = LANGUAGES.get(lang)
    n_words = sum(len(line.split()) for line in lines) if language is None or language.space_delimited else 0
    flat = [i for seq in ids for i in seq]
    return {
        "lines": len(lines),
        "chars": n_chars,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "tokens_per_word": round(n_tokens / n_words, 4) if n_words else None,
        "tokens_per_char": round(n_tokens / n_chars, 4),
        "bytes_per_token": round(n_bytes / max(n_tokens, 1), 4),
        "unk_rate": round(sum(i == tokenizer.unk_id for i in flat) / max(n_tokens, 1), 6)
        if tokenizer.unk_id is not None else 0.0,
        "byte_fallback_rate": round(sum(i in tokenizer.byte_ids for i in flat) / max(n_tokens, 1), 6),
        "roundtrip_exact": round(sum(d == line for d, line in zip(decoded, lines, strict=True)) / len(lines), 6),
        "cluster_split_rate": round(sum(inside for inside, _ in splits) / boundaries, 6)
        if boundaries and encoded[0][1] is not None else None,
        "vocab_used": round(len(set(flat)) / max(tokenizer.vocab_size, 1), 6),
        "encode_mb_per_s": round(n_bytes / 1e6 / max(seconds, 1e-9), 3),
    }


def _cluster_splits(line: str, offsets: list[tuple[int, int]] | None) -> tuple[int, int]:
    """(token boundaries inside a grapheme cluster, all token boundaries) in `line`."""
    if offsets is None:
        return 0, 0
    starts = {start for start, end in offsets if end > start and 0 < start < len(line)}
    inside = sum(
        1 for i in starts if unicodedata.category(line[i]).startswith("M") or line[i - 1] in _VIRAMAS
    )
    return inside, len(starts)


def _clean(lines: Sequence[str]) -> list[str]:
    return [unicodedata.normalize("NFC", line.rstrip("\r\n")) for line in lines if line.strip()]


def _pairs(lang: str, other: Sequence[str], english: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(other) != len(english):
        raise DataError(f"parallel text for {lang}: {len(other)} lines but {len(english)} English lines; "
                        "they must be aligned line by line")
    kept = [(a, b) for a, b in zip(other, english, strict=True) if a.strip() and b.strip()]
    if not kept:
        raise DataError(f"parallel text for {lang}: no line pairs with text on both sides")
    return _clean([a for a, _ in kept]), _clean([b for _, b in kept])


def _names(dirs: Sequence[str | Path]) -> list[str]:
    names = [Path(d).name or str(d) for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(d).parent.name}/{Path(d).name}" if names.count(Path(d).name) > 1 else Path(d).name for d in dirs]


def read_report(path: str | Path) -> TokenizerReport:
    """A report written by `TokenizerReport.save` (report.json)."""
    return TokenizerReport(**json.loads(Path(path).read_text(encoding="utf-8")))


# ---------------------------------------------------------------------------------------------
# Reading text for the command line


def read_lines(path: str | Path, max_lines: int | None = None) -> list[str]:
    """The non-blank lines of a UTF-8 text file (at most `max_lines`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    lines: list[str] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {err.start} of the line)") from None
            if line.strip():
                lines.append(line)
            if max_lines and len(lines) >= max_lines:
                break
    if not lines:
        raise DataError(f"{path}: no text (every line is blank)")
    return lines


def guess_language(lines: Sequence[str], where: str | Path = "text") -> str:
    """The known language whose script covers most letters; ties go to the narrower script
    (English before Vietnamese, whose range includes the Latin letters)."""
    from tongues.errors import ConfigError
    from tongues.languages import script_share

    sample = "\n".join(lines[:2000])

    def breadth(code: str) -> int:
        return sum(hi - lo + 1 for lo, hi in LANGUAGES[code].ranges)

    shares = {code: script_share(sample, language) for code, language in LANGUAGES.items()}
    best = max(shares, key=lambda code: (round(shares[code], 3), -breadth(code)))
    if shares[best] < 0.5:
        raise ConfigError(f"{where}: cannot tell its language from its script; write LANG={where}")
    return best


def read_parallel(
    items: Sequence[tuple[str, Path]], max_lines: int | None = None
) -> dict[str, tuple[list[str], list[str]]]:
    """Line-parallel text: LANG=FILE.tsv (English<TAB>LANG per line) or aligned files incl. en=FILE.

    Returns lang -> (its lines, the English lines), aligned, blank lines kept in place.
    """
    from tongues.errors import ConfigError

    parallel: dict[str, tuple[list[str], list[str]]] = {}
    plain: dict[str, list[str]] = {}
    for lang, path in items:
        if not path.is_file():
            raise DataError(f"--parallel {lang}={path}: no such file")
        if path.suffix == ".tsv":
            english, other = [], []
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if max_lines and number > max_lines:
                    break
                cells = line.split("\t")
                if len(cells) != 2:
                    raise DataError(f"{path}:{number}: expected English<TAB>{lang}, found {len(cells)} columns")
                english.append(cells[0])
                other.append(cells[1])
            parallel[lang] = (other, english)
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            plain[lang] = lines[:max_lines] if max_lines else lines
    if plain:
        if "en" not in plain:
            raise ConfigError("--parallel: aligned text files need the English side too (en=FILE)")
        for lang, lines in plain.items():
            if lang != "en":
                parallel[lang] = (lines, plain["en"])
    return parallel
