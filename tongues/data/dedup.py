"""Exact and near-duplicate removal.

Exact: a document whose normalized text has the same blake2b-128 digest as an earlier one.

Near: MinHash LSH. A document's signature is datasketch's `MinHash` (affine32 scheme, its
permutations) over its lowercased character 5-grams, computed for a whole batch of documents in
numpy (`MinHasher`; equal to datasketch's `update_batch`, checked by a test). The signature is
cut into b bands of r rows, (b, r) chosen by datasketch's `MinHashLSH` for the threshold and the
number of permutations, so two documents with Jaccard similarity s share a band with probability
1 - (1 - s^r)^b. A document sharing a band with a kept one is a near duplicate: the first of a
group is kept. Character shingles work alike for Hangul, Devanagari and Latin, spaced or not.

The band index is ours, not `MinHashLSH`'s: MinHashLSH keeps a Python set per bucket plus the
band bytes per key (3.4 KB per document, measured with tracemalloc at 128 permutations), while
we keep one 64-bit key per band in sorted numpy runs (72 bytes per document at 128 permutations
and threshold 0.8, i.e. 9 bands).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

SHINGLE_CHARS = 5
MINHASH_SEED = 1
# Shingles permuted per numpy step: 8192 x 128 permutations x 4 bytes = 4 MB, cache-friendly.
_SHINGLE_CHUNK = 8192
_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)
_MAX_HASH = np.uint32(0xFFFFFFFF)


def digest(text: str) -> bytes:
    """blake2b-128 of the UTF-8 text: the exact-duplicate key, the split hash and the document id."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def shingles(text: str, k: int = SHINGLE_CHARS) -> list[str]:
    """The character k-grams of `text` lowercased (a text shorter than k is one shingle)."""
    text = text.lower()
    if len(text) < k:
        return [text]
    return [text[i : i + k] for i in range(len(text) - k + 1)]


def shingle_hash(shingle: str) -> int:
    """32-bit FNV-1a over the code points of `shingle`: the scalar twin of the vectorized hash in
    `MinHasher`, usable as a datasketch `hashfunc`."""
    h = int(_FNV_OFFSET)
    for ch in shingle:
        h = ((h ^ ord(ch)) * int(_FNV_PRIME)) & 0xFFFFFFFF
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the pre-mix datasketch's "affine32" scheme applies."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH picks for this threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class MinHasher:
    """MinHash signatures of whole batches of texts, `num_perm` uint32 values each.

    The values are exactly those of datasketch's `MinHash(num_perm, seed=1,
    hashfunc=shingle_hash)` after `update_batch(shingles(text))` (the permutations are taken from
    datasketch; a test checks the equality), computed for a batch of documents at once: calling
    update_batch per document costs ~40 us of fixed overhead, which was a third of the whole
    pipeline's time on short documents (profiled on NSMC reviews).
    """

    def __init__(self, num_perm: int, threshold: float, k: int = SHINGLE_CHARS) -> None:
        from datasketch import MinHash

        self.k = k
        self.num_perm = num_perm
        self.bands, self.rows = lsh_params(threshold, num_perm)
        sketch = MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme="affine32")
        a, b = sketch.permutations
        self._a = np.asarray(a, dtype=np.uint32)
        self._b = np.asarray(b, dtype=np.uint32)

    def _shingle_hashes(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(hash of every shingle, index of its document), grouped by document in order."""
        k = self.k
        lowered = [t.lower() for t in texts]
        lens = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
        points = np.frombuffer("".join(lowered).encode("utf-32-le"), dtype=np.uint32)
        windows = np.where(lens >= k, lens - k + 1, 0)
        hashes = np.zeros(0, dtype=np.uint32)
        if points.size >= k and windows.sum():
            rolling = np.full(points.size - k + 1, _FNV_OFFSET, dtype=np.uint32)
            for j in range(k):
                rolling = (rolling ^ points[j : points.size - k + 1 + j]) * _FNV_PRIME
            starts = np.cumsum(lens) - lens
            first = np.cumsum(windows) - windows
            offsets = np.arange(windows.sum()) - np.repeat(first, windows)
            hashes = rolling[np.repeat(starts, windows) + offsets]
        owners = np.repeat(np.arange(len(texts)), windows)
        short = np.flatnonzero(lens < k)
        if short.size:  # a text shorter than k is a single shingle
            extra = np.array([shingle_hash(lowered[i]) for i in short.tolist()], dtype=np.uint32)
            hashes = np.concatenate([hashes, extra])
            owners = np.concatenate([owners, short])
            order = np.argsort(owners, kind="stable")
            hashes, owners = hashes[order], owners[order]
        return hashes, owners

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures; every text must be non-empty."""
        sig = np.full((len(texts), self.num_perm), _MAX_HASH, dtype=np.uint32)
        hashes, owners = self._shingle_hashes(texts)
        hashes = _fmix32(hashes)
        # (permutations x shingles) layout: reduceat along the last axis is ~4x faster than along
        # the first, and a cache-sized chunk beats one big temporary (measured).
        buffer = np.empty((self.num_perm, min(_SHINGLE_CHUNK, hashes.size)), dtype=np.uint32)
        for start in range(0, hashes.size, _SHINGLE_CHUNK):
            h = hashes[start : start + _SHINGLE_CHUNK]
            owner = owners[start : start + _SHINGLE_CHUNK]
            permuted = buffer[:, : h.size]
            np.multiply(self._a[:, None], h[None, :], out=permuted)  # wraps mod 2^32, as datasketch
            permuted += self._b[:, None]
            cuts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            docs = owner[cuts]
            sig[docs] = np.minimum(sig[docs], np.minimum.reduceat(permuted, cuts, axis=1).T)
        return sig

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One 64-bit key per band: (n, num_perm) signatures -> (n, bands) uint64."""
        return band_keys(signatures, self.bands, self.rows)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Hash each band of `rows` signature values (and the band's index) into one uint64."""
    n = signatures.shape[0]
    cut = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    acc = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15), (n, bands)).copy()
    for j in range(rows):  # FNV-style fold of the row values, then a splitmix64 finish
        acc ^= cut[:, :, j]
        acc *= np.uint64(0x100000001B3)
    acc ^= acc >> np.uint64(30)
    acc *= np.uint64(0xBF58476D1CE4E5B9)
    acc ^= acc >> np.uint64(27)
    acc *= np.uint64(0x94D049BB133111EB)
    acc ^= acc >> np.uint64(31)
    return acc


class NearDupIndex:
    """Band keys of the kept documents, in a few sorted numpy runs (merged like an LSM tree)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(run.size for run in self._runs)

    def _seen(self, keys: np.ndarray) -> np.ndarray:
        hit = np.zeros(keys.shape, dtype=bool)
        for run in self._runs:
            pos = np.minimum(np.searchsorted(run, keys), run.size - 1)
            hit |= run[pos] == keys
        return hit

    def add_batch(self, keys: np.ndarray) -> np.ndarray:
        """Check (n, bands) keys in order; return a bool mask of near duplicates (of an earlier
        batch or an earlier kept document of this batch) and index the others."""
        n = keys.shape[0]
        if n == 0:
            return np.zeros(0, dtype=bool)
        earlier = self._seen(keys).any(axis=1)
        duplicate = earlier.copy()
        batch_seen: set[int] = set()
        for i, row in enumerate(keys.tolist()):
            if earlier[i]:
                continue
            if not batch_seen.isdisjoint(row):
                duplicate[i] = True
            else:
                batch_seen.update(row)
        kept = keys[~duplicate].ravel()
        if kept.size:
            self._runs.append(np.sort(kept))
            while len(self._runs) > 1 and self._runs[-2].size <= 2 * self._runs[-1].size:
                last = self._runs.pop()
                # Timsort ("stable") merges two sorted runs in linear time.
                self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]), kind="stable")
        return duplicate


class ExactDedup:
    """Digests of the documents seen so far (16 bytes each)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def is_duplicate(self, key: bytes) -> bool:
        """True when `key` was seen before; otherwise remember it."""
        if key in self._seen:
            return True
        self._seen.add(key)
        return False
