"""Which language a text is in, and `language_consistency`: is an answer in the language asked for?

The common failure of small national assistants is answering in the wrong language or switching
into English mid-answer. `language_consistency(prompt, completion)` scores that in [0, 1]: the
share of the completion's letters that are in the expected language (by default the prompt's).

- Languages with a script of their own (Korean: Hangul, Hindi: Devanagari) are told apart by
  script (`tongues.languages.script_share`), which is exact for them.
- Languages sharing the Latin script (Vietnamese vs English) are told apart clause by clause: with
  lingua (`pip install "tongues[lid]"`) when it is installed, otherwise by Vietnamese's own
  letters — a clause is Vietnamese when at least 20% of its words carry a Vietnamese-only letter
  or tone mark (ă â đ ê ô ơ ư, à á ả ã ạ, ...). Plain-ASCII Vietnamese ("toi khong biet") is
  the documented blind spot of that fallback.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from tongues.languages import LANGUAGES, get_language, script_share

# Latin letters that occur in Vietnamese and not in English (after NFC): the base letters with
# their own shapes, and any letter carrying a tone mark.
_VI_ONLY = set("ăâđêôơưĂÂĐÊÔƠƯ")
_TONE_MARKS = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}  # grave, acute, tilde, hook, dot below
_CLAUSE = re.compile(r"[^.!?;:\n。]+[.!?;:\n。]*")
_WORD = re.compile(r"[^\W\d_]+")
VI_WORD_SHARE = 0.2
_SCRIPT_OWN = ("ko", "hi")  # languages identified by script alone


def _vietnamese_word(word: str) -> bool:
    if any(c in _VI_ONLY for c in word):
        return True
    return any(m in _TONE_MARKS for m in unicodedata.normalize("NFD", word))


@lru_cache(maxsize=1)
def _lingua() -> object | None:
    try:
        from lingua import Language as L
        from lingua import LanguageDetectorBuilder
    except ImportError:
        return None
    return LanguageDetectorBuilder.from_languages(L.VIETNAMESE, L.ENGLISH).build()


def latin_language(text: str) -> str:
    """"vi" or "en" for a Latin-script clause (lingua if installed, else Vietnamese letters)."""
    detector = _lingua()
    if detector is not None:
        found = detector.detect_language_of(text)  # type: ignore[attr-defined]
        if found is not None:
            return "vi" if found.name == "VIETNAMESE" else "en"
    words = _WORD.findall(text)
    if not words:
        return "en"
    share = sum(map(_vietnamese_word, words)) / len(words)
    return "vi" if share >= VI_WORD_SHARE else "en"


def language_share(text: str, lang: str) -> float:
    """Share of the letters of `text` that are in language `lang` (0 when `text` has no letters)."""
    get_language(lang)
    if lang in _SCRIPT_OWN:
        return script_share(text, LANGUAGES[lang])
    letters_total, letters_in = 0, 0
    for clause in _CLAUSE.findall(text):
        letters = sum(len(w) for w in _WORD.findall(clause))
        if not letters:
            continue
        letters_total += letters
        if script_share(clause, LANGUAGES["vi"]) >= 0.5:  # a Latin-script clause
            clause_lang = latin_language(clause)
        else:
            clause_lang = next((c for c in _SCRIPT_OWN if script_share(clause, LANGUAGES[c]) >= 0.5), "other")
        if clause_lang == lang:
            letters_in += letters
    return letters_in / letters_total if letters_total else 0.0


def detect_language(text: str, candidates: tuple[str, ...] = ("ko", "hi", "vi", "en")) -> str | None:
    """The candidate language holding most of `text`'s letters, or None for text without letters."""
    shares = {c: language_share(text, c) for c in candidates}
    best = max(shares, key=shares.get)  # type: ignore[arg-type]
    return best if shares[best] > 0 else None


def language_consistency(prompt: str, completion: str, expected: str | None = None) -> float:
    """In [0, 1]: the share of `completion`'s letters in the `expected` language (default: the
    prompt's own language). An empty completion, or one without letters, scores 0."""
    lang = expected or detect_language(prompt)
    if lang is None or not completion.strip():
        return 0.0
    return language_share(completion, lang)


__all__ = ["detect_language", "language_consistency", "language_share", "latin_language"]
