"""Document-level filters: length, share of the language's script, language identification.

Each filter is a named step with a reason that the data card prints next to its counts.
Language identification uses lingua (offline, an optional extra: `pip install 'tongues[lid]'`);
it matters where a script is shared (Vietnamese and English both pass a Latin-script filter).
"""

from __future__ import annotations

from collections.abc import Callable

from tongues.data.config import CorpusConfig
from tongues.errors import ConfigError
from tongues.languages import Language, get_language, script_share

# Steps in the order they run, with the reason the card gives for each removal.
STEPS = ("normalize", "too_short", "too_long", "script", "language", "exact_duplicate", "near_duplicate")

# lingua's names for the languages tongues knows, and for the ones that share their scripts.
LINGUA_NAMES = {
    "ko": "KOREAN", "hi": "HINDI", "vi": "VIETNAMESE", "en": "ENGLISH", "mr": "MARATHI",
    "ne": "NEPALI", "fr": "FRENCH", "de": "GERMAN", "id": "INDONESIAN", "ja": "JAPANESE", "zh": "CHINESE",
}


def step_reasons(config: CorpusConfig, near_dup: str | None = None) -> dict[str, str]:
    """Human-readable reason for each step, with this config's thresholds."""
    lang = get_language(config.lang)
    return {
        "normalize": f"empty after {config.normalization} normalization, control-character removal and whitespace cleanup",
        "too_short": f"shorter than min_chars={config.min_chars} characters",
        "too_long": f"longer than max_chars={config.max_chars} characters",
        "script": f"less than {config.min_script_share:.0%} of its letters in the {lang.script} script",
        "language": f"language identification (lingua) did not say {lang.name}",
        "exact_duplicate": "same normalized text as an earlier document (blake2b-128 of the text)",
        "near_duplicate": near_dup or "near duplicate of an earlier document (MinHash LSH)",
    }


def length_reason(chars: int, config: CorpusConfig) -> str | None:
    """"too_short" / "too_long" when `chars` is outside [min_chars, max_chars], else None."""
    if chars < config.min_chars:
        return "too_short"
    if chars > config.max_chars:
        return "too_long"
    return None


def script_ok(text: str, lang: Language, min_share: float) -> bool:
    """Whether at least `min_share` of the letters of `text` are in `lang`'s script."""
    return min_share <= 0.0 or script_share(text, lang) >= min_share


def language_identifier(config: CorpusConfig) -> Callable[[str], bool] | None:
    """A predicate "is this text in config.lang?" backed by lingua, or None when `lid` is off.

    The detector knows the target language, the languages that share its script and English,
    so that it answers the question the script filter cannot. Raises ConfigError with the
    install command when lingua is missing."""
    if not config.lid:
        return None
    try:
        import lingua
    except ImportError:
        raise ConfigError(
            "lid: true needs the lingua language detector, which is not installed: pip install 'tongues[lid]'"
        ) from None
    lang = get_language(config.lang)
    target = getattr(lingua.Language, LINGUA_NAMES.get(lang.code, ""), None)
    if target is None:
        raise ConfigError(f"lid: lingua has no model for {lang.name} ({lang.code}); set lid: false")
    codes = dict.fromkeys((lang.code, *lang.shares_script_with, "en"))
    candidates = [getattr(lingua.Language, LINGUA_NAMES.get(c, ""), None) for c in codes]
    candidates = list(dict.fromkeys(c for c in candidates if c is not None))
    if len(candidates) < 2:
        # lingua needs at least two languages; any other one is a fair contrast.
        candidates.append(lingua.Language.ENGLISH if target != lingua.Language.ENGLISH else lingua.Language.FRENCH)
    detector = lingua.LanguageDetectorBuilder.from_languages(*candidates).build()

    def is_target(text: str) -> bool:
        return detector.detect_language_of(text) == target

    return is_target
