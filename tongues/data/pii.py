"""Masking of e-mail addresses and phone numbers (the PII a web corpus carries most often).

Patterns are ASCII on purpose: Korean, Hindi and Vietnamese text glues particles and
punctuation straight onto an address ("hong@example.com으로"), so a Unicode `\\w` boundary would
miss it. Phone numbers need a telling shape (a leading + or 0, brackets, or a known grouping)
and 9-15 digits, so that dates (2024-03-14), prices (1,234,000) and years are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL_MASK = "<EMAIL>"
PHONE_MASK = "<PHONE>"

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)

_SEP = r"[ .-]"
_PHONE = re.compile(
    r"(?<![\d+])(?:"
    # international: +82 10-1234-5678, +91 98765 43210, +84 912 345 678, +1 (555) 123-4567
    rf"\+\d{{1,3}}{_SEP}?(?:\(\d{{1,4}}\){_SEP}?)?\d{{1,5}}(?:{_SEP}?\d{{2,5}}){{1,4}}"
    # domestic with a trunk 0: 010-1234-5678, 02-123-4567, 0912 345 678, 01012345678
    rf"|0\d{{1,4}}(?:{_SEP}\d{{2,5}}){{1,3}}|0\d{{8,11}}"
    # area code in brackets: (02) 123-4567, (555) 123-4567
    rf"|\(\d{{2,5}}\){_SEP}?\d{{3,4}}{_SEP}?\d{{4}}"
    # North American 555-123-4567 / 555.123.4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    # Indian mobile 98765 43210 / 98765-43210
    r"|[6-9]\d{4}[ -]\d{5}"
    r")(?!\d)"
)


# \d and \D are disjoint, so this cannot backtrack badly.
_NINE_DIGITS = re.compile(r"(?:\d\D*){8}\d")


@dataclass
class PiiCounts:
    emails: int = 0
    phones: int = 0
    documents: int = 0  # documents with at least one mask

    def add(self, other: PiiCounts) -> None:
        self.emails += other.emails
        self.phones += other.phones
        self.documents += other.documents


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def mask_pii(text: str) -> tuple[str, int, int]:
    """Replace e-mail addresses with <EMAIL> and phone numbers with <PHONE>.

    Returns (masked text, number of e-mails masked, number of phone numbers masked)."""
    emails = phones = 0
    if "@" in text:
        text, emails = _EMAIL.subn(EMAIL_MASK, text)

    def phone(match: re.Match[str]) -> str:
        nonlocal phones
        if 9 <= _digits(match.group()) <= 15:
            phones += 1
            return PHONE_MASK
        return match.group()

    # Cheap pre-check: a phone number needs at least 9 digits somewhere.
    if _NINE_DIGITS.search(text):
        text = _PHONE.sub(phone, text)
    return text, emails, phones
