"""Incremental detokenization that never splits a character or a grapheme cluster.

A decoded token stream is only safe to show up to a point:

- byte-fallback tokens (SentencePiece ``<0xE0>``) and byte-level BPE pieces can end in the middle of a
  multi-byte UTF-8 character; the tokenizer decodes the incomplete bytes as U+FFFD, which turns into
  the real character once the remaining bytes arrive, so trailing U+FFFD is held back;
- the last grapheme cluster can still grow: a Devanagari matra or virama + consonant (a conjunct),
  a Vietnamese combining tone mark, a Hangul jamo V/T after L, a ZWJ sequence — so it is held back
  until more text arrives or generation ends;
- text that could be the start of a stop string is held back until it is clear it is not one;
- text from a trailing run of byte-fallback tokens (``<0x26>``) is held back until a regular token
  ends the run: the ByteFallback decoder turns a whole run into U+FFFD when any byte of it is
  invalid, so an '&' shown early could later decode as U+FFFD.

Grapheme clusters are the extended clusters of UAX #29 (including the Indic conjunct rule GB9c), as
implemented by the ``regex`` module's ``\\X`` (a dependency of transformers, so always installed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import regex

_CLUSTER = regex.compile(r"\X")
_REPLACEMENT = "\ufffd"


def grapheme_clusters(text: str) -> list[str]:
    """Split text into extended grapheme clusters (UAX #29), e.g. 'क्षत्रिय' -> ['क्ष', 'त्रि', 'य']."""
    return _CLUSTER.findall(text)


def cluster_boundaries(text: str) -> set[int]:
    """Character offsets in `text` where a grapheme cluster starts or the text ends (0 and len included)."""
    offsets = {0}
    for match in _CLUSTER.finditer(text):
        offsets.add(match.end())
    return offsets


def stable_length(text: str, start: int = 0) -> int:
    """How much of `text` can be shown now: up to the start of its last grapheme cluster, before any
    trailing U+FFFD (incomplete UTF-8). `start` must be a cluster boundary already shown; the result is
    at least `start`."""
    end = len(text)
    while end > start and text[end - 1] == _REPLACEMENT:
        end -= 1
    last_start = start
    for match in _CLUSTER.finditer(text, start, end):
        last_start = match.start()
    return max(start, last_start)


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class TextStream:
    """Turns token ids, pushed one at a time, into text deltas that are safe to show.

    ``decode(ids) -> str`` is the tokenizer's decode of the generated ids (special tokens skipped); the
    whole generated sequence is re-decoded at each push, which keeps the shown text an exact prefix of
    the final decode (windowed decoding can disagree with it on leading spaces). Decoding a few hundred
    ids costs microseconds, far less than a decode step of the model. ``byte_token_ids`` are the
    tokenizer's byte-fallback tokens (see the module docstring).

    After a push, ``stopped`` is True when the text contains one of `stops`; ``text`` is then cut
    before the earliest stop string and the stream is over.
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: Sequence[str] = (),
                 byte_token_ids: frozenset[int] = frozenset()) -> None:
        self._decode = decode
        self._stops = [s for s in stops if s]
        self._byte_ids = byte_token_ids
        self._run_start = 0  # where the trailing run of byte tokens starts
        self._ids: list[int] = []
        self._full = ""
        self.emitted = 0  # characters of the text already handed out
        self.stopped = False

    @property
    def text(self) -> str:
        """The text decoded so far (cut before a stop string once one is found)."""
        return self._full

    def push(self, token_id: int) -> str:
        """Add one generated token; returns the newly safe text ('' when nothing can be shown yet)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        if token_id not in self._byte_ids:
            self._run_start = len(self._ids)
        full = self._decode(self._ids)
        if self._stops:
            # Search only where a new match can be: text before `emitted` was checked already.
            begin = max(0, self.emitted - max(len(s) for s in self._stops))
            cuts = [i for i in (full.find(s, begin) for s in self._stops) if i >= 0]
            if cuts:
                self._full = full[: min(cuts)]
                self.stopped = True
                return self.finish()
        self._full = full
        safe = stable_length(full, self.emitted)
        if self._run_start < len(self._ids):
            # The byte run's text is not final: show only what stands before it.
            safe = min(safe, stable_length(self._decode(self._ids[: self._run_start]), self.emitted))
        if self._stops:
            safe = max(self.emitted, min(safe, len(full) - _stop_prefix_length(full, self._stops)))
        return self._take(safe)

    def drop_last(self, n: int) -> None:
        """Forget the last `n` pushed tokens (an unfinished character's bytes, never shown)."""
        if n <= 0 or self.stopped:
            return
        del self._ids[len(self._ids) - n:]
        self._run_start = min(self._run_start, len(self._ids))
        self._full = self._decode(self._ids)

    def finish(self) -> str:
        """Generation is over: return all text not shown yet."""
        return self._take(len(self._full))

    def _take(self, end: int) -> str:
        delta = self._full[self.emitted : end]
        self.emitted = max(self.emitted, end)
        return delta
