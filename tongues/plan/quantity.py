"""Numbers as people type them on a command line: 3e19, 1.2B, 300M, 20K, 1.5T."""

from __future__ import annotations

import math
import re

from tongues.errors import TonguesError

_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "Q": 1e15}


def parse_quantity(text: str | None, flag: str) -> float | None:
    """'1.2B' -> 1.2e9, '3e19' -> 3e19; TonguesError naming the flag otherwise."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([KkMmBbGgTtQq]?)\s*", str(text))
    if not match:
        raise TonguesError(f"{flag}: expected a number such as 3e19, 1.2B or 300M, got {text!r}")
    value = float(match.group(1)) * _SUFFIX[match.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise TonguesError(f"{flag} must be a positive number, got {text!r}")
    return value


def whole(text: str | None, flag: str) -> int | None:
    value = parse_quantity(text, flag)
    if value is None:
        return None
    if value != int(value):
        raise TonguesError(f"{flag} must be a whole number, got {text!r}")
    return int(value)


__all__ = ["parse_quantity", "whole"]
