"""Unit behaviour of the data-prepare building blocks: normalization, PII masking, dedup, split."""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from tongues.data.dedup import MinHasher, NearDupIndex, lsh_params, shingle_hash, shingles
from tongues.data.normalize import normalize_text
from tongues.data.pii import mask_pii
from tongues.data.split import VALIDATION, split_of


def hangul_doc(rng: random.Random, words: int = 8) -> str:
    return " ".join("".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(2, 4))) for _ in range(words))


# --- normalization ----------------------------------------------------------------------------


def test_control_characters_removed_tabs_and_newlines_kept_as_whitespace() -> None:
    assert normalize_text("a\x00b\x07c\x1b[0m d\te\x7f\x85f") == "abc[0m d e\nf"
    assert normalize_text("\ufeff첫 줄\r\n\r\n\r\n\r\n둘째   줄  \n") == "첫 줄\n\n둘째 줄"
    assert normalize_text("\u00a0\u3000 가\u2003나 \u200b") == "가 나"
    assert normalize_text("\x00\x01 \t\n") == ""


def test_nfc_composes_hangul_jamo_and_vietnamese_marks_and_keeps_devanagari_joiners() -> None:
    decomposed_ko = unicodedata.normalize("NFD", "한국어")
    assert len(decomposed_ko) > 3
    assert normalize_text(decomposed_ko) == "한국어"
    decomposed_vi = unicodedata.normalize("NFD", "Tiếng Việt")
    assert normalize_text(decomposed_vi) == "Tiếng Việt"
    # A NUL between a base letter and its combining mark must not block composition.
    assert normalize_text("e\x00\u0301") == "é"
    hindi = "क्\u200dष"  # ZWJ controls the conjunct: it is content, not junk
    assert normalize_text(hindi) == hindi
    assert normalize_text("ｆｕｌｌ", "NFKC") == "full"
    assert normalize_text("ｆｕｌｌ", "NFC") == "ｆｕｌｌ"
    assert normalize_text(decomposed_ko, "none") == decomposed_ko


# --- PII ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected, emails, phones",
    [
        ("메일은 hong.gildong+news@example.co.kr으로 보내 주세요", "메일은 <EMAIL>으로 보내 주세요", 1, 0),
        ("연락처: 010-1234-5678, 사무실 02-123-4567", "연락처: <PHONE>, 사무실 <PHONE>", 0, 2),
        ("Gọi 0912 345 678 hoặc +84 912 345 678 nhé", "Gọi <PHONE> hoặc <PHONE> nhé", 0, 2),
        ("संपर्क करें +91 98765 43210 या 98765-43210", "संपर्क करें <PHONE> या <PHONE>", 0, 2),
        ("Call (555) 123-4567 or 555.123.4567, mail a@b.io", "Call <PHONE> or <PHONE>, mail <EMAIL>", 1, 2),
        ("01012345678로 문자", "<PHONE>로 문자", 0, 1),
    ],
)
def test_pii_masked_and_counted(text: str, expected: str, emails: int, phones: int) -> None:
    assert mask_pii(text) == (expected, emails, phones)


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-14 회의, 2024.03.14, 오후 3:30",
        "가격은 1,234,000원이고 인구는 51,780,579명",
        "ISBN 978 0 306 40615 7 and year 2019-2020",
        "user@localhost is not an address, nor is @handle",
        "버전 3.14.159 와 12.5%",
    ],
)
def test_pii_leaves_dates_prices_and_numbers(text: str) -> None:
    assert mask_pii(text) == (text, 0, 0)


# --- dedup ------------------------------------------------------------------------------------


def test_batched_signatures_equal_datasketch_minhash() -> None:
    rng = random.Random(0)
    texts = [hangul_doc(rng) for _ in range(50)] + [
        "ab", "abcde", "Hello, World! Hello, World!", "नमस्ते दुनिया, आप कैसे हैं?", "x" * 20_000,
    ]
    hasher = MinHasher(num_perm=64, threshold=0.7)
    signatures = hasher.signatures(texts)
    for text, signature in zip(texts, signatures, strict=True):
        reference = MinHash(num_perm=64, seed=1, hashfunc=shingle_hash)
        reference.update_batch(shingles(text))
        np.testing.assert_array_equal(signature, reference.hashvalues)
    assert lsh_params(0.7, 64) == (MinHashLSH(threshold=0.7, num_perm=64).b, MinHashLSH(threshold=0.7, num_perm=64).r)


def test_near_dup_index_keeps_first_of_a_group_within_and_across_batches() -> None:
    rng = random.Random(1)
    base = [hangul_doc(rng, words=60) for _ in range(6)]
    edited = [b[:-3] + "끝이다" for b in base]  # ~200 characters, 3 changed at the end
    hasher = MinHasher(num_perm=128, threshold=0.8)
    index = NearDupIndex()
    first = index.add_batch(hasher.band_keys(hasher.signatures(base[:3] + edited[:1])))
    assert first.tolist() == [False, False, False, True]  # within the batch
    second = index.add_batch(hasher.band_keys(hasher.signatures(edited[1:3] + base[3:] + edited[3:4])))
    assert second.tolist() == [True, True, False, False, False, True]  # across batches, then within
    unrelated = [hangul_doc(rng, words=60) for _ in range(20)]
    assert not index.add_batch(hasher.band_keys(hasher.signatures(unrelated))).any()


# --- split ------------------------------------------------------------------------------------


def test_split_share_is_respected() -> None:
    from tongues.data.dedup import digest

    keys = [digest(f"document {i}") for i in range(4000)]
    share = sum(split_of(k, 0.1) == VALIDATION for k in keys) / len(keys)
    assert 0.08 < share < 0.12
    assert all(split_of(k, 0.0) != VALIDATION for k in keys)
