"""What tongues knows about each language: script, word spacing, normalization.

Adding a language is adding one `Language` entry here; every stage reads this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tongues.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    script: str
    # Unicode code point ranges (inclusive) of the characters that count as "in the script".
    ranges: tuple[tuple[int, int], ...]
    # Whether words are separated by spaces (tokens-per-word is only meaningful then).
    space_delimited: bool = True
    # Unicode normal form applied to text. NFC keeps Hangul syllables, Devanagari
    # conjuncts/matras and Vietnamese precomposed tone marks whole; NFKC would also fold
    # compatibility characters (full-width Latin, ligatures), which some teams want.
    normalization: str = "NFC"
    # SentencePiece character_coverage: 1.0 for small alphabets; slightly below for
    # scripts with many rare characters (Hangul syllables, CJK) so rare ones fall back to bytes.
    character_coverage: float = 1.0
    # Another language sharing the script, whose presence a language-ID model should check.
    shares_script_with: tuple[str, ...] = ()


_LATIN = ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F))
_VIETNAMESE_EXTRA = ((0x1EA0, 0x1EF9), (0x0300, 0x0323))  # precomposed + combining tone marks

LANGUAGES: dict[str, Language] = {
    "ko": Language(
        code="ko",
        name="Korean",
        script="Hangul",
        # Hangul syllables, Jamo, compatibility Jamo, Jamo extended A/B.
        ranges=((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF)),
        character_coverage=0.9995,
    ),
    "hi": Language(
        code="hi",
        name="Hindi",
        script="Devanagari",
        ranges=((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
        shares_script_with=("mr", "ne"),
    ),
    "vi": Language(
        code="vi",
        name="Vietnamese",
        script="Latin (Vietnamese)",
        ranges=_LATIN + _VIETNAMESE_EXTRA,
        shares_script_with=("en", "fr", "id"),
    ),
    "en": Language(
        code="en",
        name="English",
        script="Latin",
        ranges=_LATIN,
        shares_script_with=("vi", "fr", "de"),
    ),
}


def get_language(code: str) -> Language:
    """Return the `Language` for `code`, or raise a ConfigError that lists the known codes."""
    try:
        return LANGUAGES[code]
    except KeyError:
        known = ", ".join(sorted(LANGUAGES))
        raise ConfigError(f"unknown language {code!r} (known: {known})") from None


_LETTER = re.compile(r"[^\W\d_]")
_SCRIPT_PATTERNS: dict[str, re.Pattern[str]] = {}


def script_pattern(lang: Language) -> re.Pattern[str]:
    """A compiled regex matching one character of `lang`'s script."""
    pattern = _SCRIPT_PATTERNS.get(lang.code)
    if pattern is None:
        body = "".join(f"\\u{lo:04x}-\\u{hi:04x}" if hi > lo else f"\\u{lo:04x}" for lo, hi in lang.ranges)
        pattern = _SCRIPT_PATTERNS[lang.code] = re.compile(f"[{body}]")
    return pattern


def script_share(text: str, lang: Language) -> float:
    """Share of the letters in `text` (not digits, spaces, punctuation or marks) in `lang`'s script."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return 0.0
    inside = len(_LETTER.findall("".join(script_pattern(lang).findall(text))))
    return inside / letters
