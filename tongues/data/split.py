"""Deterministic train/validation split by a hash of each document's normalized text.

A document goes to validation when the first 8 bytes of its blake2b-128 digest, read as a
fraction of 2^64, fall below `validation_share`. The decision depends on the document alone, so
adding documents to a corpus never moves an existing one to the other split (no leakage from
a re-run), and the same text lands in the same split in every corpus that holds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
HELDOUT_SHARE = 0.2  # the share of embedded conversations, preferences and caption pairs held out
TRAIN = "train"
VALIDATION = "validation"


def split_point(key: bytes) -> float:
    """Where a document's digest falls in [0, 1)."""
    return int.from_bytes(key[:8], "big") / 2**64


def split_of(key: bytes, validation_share: float) -> str:
    """"validation" or "train" for a document with digest `key`."""
    return VALIDATION if split_point(key) < validation_share else TRAIN


def in_heldout(record_id: str, share: float = HELDOUT_SHARE) -> bool:
    """The held-out side of a record set (conversations, preferences, caption pairs): sha256 of the record's id,
    so adding records never moves old ones. Training stages train on the rest; eval scores only these."""
    digest = int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < share


def heldout_split(items: list[T], key: Callable[[T], str], share: float = HELDOUT_SHARE) -> tuple[list[T], list[T]]:
    """(train, held-out) of `items` by `in_heldout` of each item's `key`."""
    held = [in_heldout(key(item), share) for item in items]
    return [x for x, h in zip(items, held, strict=True) if not h], [x for x, h in zip(items, held, strict=True) if h]
