"""Unicode normalization shared by the SentencePiece model and the Hugging Face tokenizer.

SentencePiece's built-in rules are NFKC variants (they fold compatibility characters and, in
`nmt_nfkc`, rewrite whitespace) or `identity` (nothing at all, so decomposed NFD Vietnamese or
conjoining Hangul jamo would be tokenized differently from the composed text). We compile our own
rule table from Python's `unicodedata` instead: every canonically decomposed spelling of a
composed character (with its combining marks in any canonically equivalent order, and partly
composed spellings such as "ê" + dot below) maps to the composed NFC character. SentencePiece
embeds the table in `tokenizer.model` (its `precompiled_charsmap`), so the `.model` normalizes on
its own; `tokenizer.json` uses the exact `tokenizers.normalizers.NFC`. Hangul syllables,
Devanagari conjuncts and matras (NFC leaves them as they are) and Vietnamese tone marks stay whole.
"""

from __future__ import annotations

import itertools
import unicodedata
from functools import lru_cache
from pathlib import Path

from tongues.errors import ConfigError
from tongues.languages import get_language

# The normal forms the tokenizer can apply identically in SentencePiece and Hugging Face.
SUPPORTED_FORMS = ("NFC",)
# Name recorded in the SentencePiece model's normalizer spec.
RULE_NAME = "tongues_nfc"
# Above this many combining marks we do not enumerate their orders (n! grows fast; none occur).
_MAX_PERMUTED_MARKS = 4


def normalization_for(langs: list[str]) -> str:
    """The normal form for a tokenizer covering `langs` (from `tongues.languages`); one for all."""
    forms = {code: get_language(code).normalization for code in langs}
    unsupported = {code: form for code, form in forms.items() if form not in SUPPORTED_FORMS}
    if unsupported:
        detail = ", ".join(f"{code}: {form}" for code, form in sorted(unsupported.items()))
        raise ConfigError(
            f"tokenizers apply {' or '.join(SUPPORTED_FORMS)} only ({detail}); apply other forms to the "
            "corpus in `data prepare` (its `normalization` key), the tokenizer keeps them"
        )
    return "NFC"


def normalize_text(text: str, form: str = "NFC") -> str:
    """`text` in normal form `form` (what the tokenizer sees before it splits into pieces)."""
    return unicodedata.normalize(form, text)


@lru_cache(maxsize=2)
def rule_table(form: str = "NFC") -> dict[str, str]:
    """Source string -> normalized string, for SentencePiece's leftmost-longest-match normalizer.

    Covers single characters that the form rewrites (e.g. U+212B ANGSTROM SIGN -> U+00C5) and
    every decomposed or partly composed spelling of each composed character, combining marks in
    any canonically equivalent order, so that NFD input comes out as NFC.
    """
    if form not in SUPPORTED_FORMS:
        raise ConfigError(f"normal form {form!r} is not supported (supported: {', '.join(SUPPORTED_FORMS)})")
    rules: dict[str, str] = {}
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:  # surrogates are not characters
            continue
        char = chr(code_point)
        target = unicodedata.normalize(form, char)
        if target != char:
            rules[char] = target
        decomposed = unicodedata.normalize("NFD", char)
        if decomposed == char:
            continue
        base, marks = decomposed[0], decomposed[1:]
        orders = {marks} if len(marks) > _MAX_PERMUTED_MARKS else {"".join(p) for p in itertools.permutations(marks)}
        for order in orders:
            if unicodedata.normalize("NFD", base + order) != decomposed:
                continue  # not canonically equivalent (marks of the same combining class swapped)
            for split in range(len(order) + 1):
                source = unicodedata.normalize(form, base + order[:split]) + order[split:]
                if source != target and unicodedata.normalize(form, source) == target:
                    rules.setdefault(source, target)
    return rules


def write_rule_tsv(path: str | Path, form: str = "NFC") -> Path:
    """Write `rule_table(form)` in SentencePiece's TSV format ("41 302<TAB>C2", hex code points)."""
    path = Path(path)

    def hexes(text: str) -> str:
        return " ".join(f"{ord(char):X}" for char in text)

    lines = [f"{hexes(source)}\t{hexes(target)}" for source, target in sorted(rule_table(form).items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
