"""Text normalization before any filter: Unicode normal form, control characters, whitespace.

The order matters: control characters are removed first so that a stray NUL between a base
letter and its combining mark does not stop NFC from composing them; whitespace is collapsed last.
"""

from __future__ import annotations

import re
import unicodedata

# Horizontal whitespace that becomes one ASCII space. \t is whitespace, not a control character
# to delete: "a\tb" must stay two words.
_SPACES = "\t\x0b\x0c\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
# Line breaks of every kind become \n.
_NEWLINES = "\r\x85\u2028\u2029"
# Deleted: C0/C1 control characters (NUL, BEL, ESC, ...), DEL, the BOM / zero-width no-break
# space, zero-width space, the noncharacters U+FFFE/U+FFFF and lone surrogates. Zero-width (non-)joiners
# U+200C/U+200D are kept: Devanagari needs them to control conjuncts.
_DELETED = (
    [c for c in range(0x00, 0x20) if chr(c) not in "\t\n\r\x0b\x0c"]
    + [0x7F]
    + [c for c in range(0x80, 0xA0) if c != 0x85]
    + [0x200B, 0xFEFF, 0xFFFE, 0xFFFF]
    # Lone surrogates (JSON "\ud800" escapes decode to them) cannot be written as UTF-8.
    + list(range(0xD800, 0xE000))
)

_TABLE: dict[int, str | None] = {c: None for c in _DELETED}
_TABLE.update({ord(c): " " for c in _SPACES})
_TABLE.update({ord(c): "\n" for c in _NEWLINES})

_RUN_OF_SPACES = re.compile(r" {2,}")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_MANY_NEWLINES = re.compile(r"\n{3,}")

NORMAL_FORMS = ("NFC", "NFKC", "none")


def normalize_text(text: str, form: str = "NFC") -> str:
    """Return `text` with control characters removed, Unicode normalized to `form` ("NFC",
    "NFKC" or "none"), runs of spaces collapsed, spaces around line breaks dropped, at most one
    blank line in a row, and no leading or trailing whitespace. "\\r\\n" becomes "\\n"."""
    text = text.replace("\r\n", "\n").translate(_TABLE)
    if form != "none" and not unicodedata.is_normalized(form, text):
        text = unicodedata.normalize(form, text)
    if "  " in text:
        text = _RUN_OF_SPACES.sub(" ", text)
    if "\n" in text:
        text = _SPACE_AROUND_NEWLINE.sub("\n", text)
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def visible(text: str, limit: int = 160) -> str:
    """`text` shortened to `limit` characters for a report, line breaks and controls shown as escapes."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return "".join(
        ch if (ch == " " or not unicodedata.category(ch).startswith(("C", "Z"))) else repr(ch)[1:-1]
        for ch in text
    )
