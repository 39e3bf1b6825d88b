"""Score text with a causal LM the way lm-evaluation-harness's HF backend does, faster.

Conventions (those of lm-eval's `HFLM`, so the numbers agree):
- Context + continuation is encoded whole and split at the context's length; trailing spaces of
  the context move to the continuation; an empty context is replaced by the prefix token.
- The prefix token is the tokenizer's BOS (EOS when it has none). A document scored for bits per
  byte is encoded without special tokens and its first token is predicted from BOS.
- Sequences longer than the window are cut from the left (context first).

Speed comes from computing the vocabulary projection only where a token is scored, with a fused
cross-entropy, on batches packed by length under a token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tongues.errors import TonguesError
from tongues.progress import progress_bar as tqdm

# Model types whose logits are exactly lm_head(final hidden state): the projection can be taken at
# scored positions only. Others (logit soft-capping, scaling) go through the model's own forward.
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2", "gpt_neox", "gpt2"}
_CPU_TOKEN_BUDGET = 2048  # measured: 8 x 256-token rows beat 32 on CPU (benchmarks/eval.py)
_CUDA_TOKEN_BUDGET = 65536
_HEAD_CHUNK = 2048  # rows of the vocabulary projection at a time (bounds the logits' memory)
DEFAULT_MAX_LENGTH = 2048  # lm-eval's default when neither config nor tokenizer says


@dataclass
class ScoredRequest:
    """`tokens`: the sequence (inputs are tokens[:-1]); its last `n_scored` tokens are scored."""

    tokens: list[int]
    n_scored: int


def rolling_windows(n_tokens: int, window: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """Windows that score each of `n_tokens` tokens exactly once, as lm-eval's rolling loglikelihood.

    Positions index the sequence S = [prefix token] + tokens. Each window (start, end, n_scored)
    feeds S[start:end] (at most `window` tokens) and scores its last n_scored predictions, i.e.
    tokens end - n_scored .. end - 1. The first window scores everything it sees; each later one
    scores the next `stride` tokens (the last: what is left) with the window filled by the tokens
    before them as context. stride = window (the default) is lm-eval's setting (context_len=1).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    stride = window if stride is None else stride
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    if n_tokens <= 0:
        return []
    first = min(window, n_tokens)
    spans = [(0, first, first)]
    done = first
    while done < n_tokens:
        n = min(stride, n_tokens - done)
        end = done + n
        spans.append((max(0, end - window), end, n))
        done = end
    return spans


def shared_rows(inputs: Sequence[list[int]]) -> list[tuple[list[int], list[int]]]:
    """Group input sequences so that each is a prefix of (or equal to) its row's sequence.

    Returns (row sequence, indices of the inputs it serves). In descending lexicographic order a
    prefix comes right after the sequences that extend it, so one pass finds every such sharing.
    """
    rows: list[tuple[list[int], list[int]]] = []
    for index in sorted(range(len(inputs)), key=lambda i: inputs[i], reverse=True):
        seq = inputs[index]
        if rows and len(seq) <= len(rows[-1][0]) and rows[-1][0][:len(seq)] == seq:
            rows[-1][1].append(index)
        else:
            rows.append((list(seq), [index]))
    return rows


def model_max_length(model: Any, tokenizer: Any = None) -> int:
    """The model's context in tokens: config n_positions / max_position_embeddings / n_ctx, else the
    tokenizer's model_max_length, else 2048 (lm-eval's resolution order)."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        length = getattr(config, key, None)
        if isinstance(length, int) and length > 0:
            return length
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < 1_000_000_000:
        return length
    return DEFAULT_MAX_LENGTH


class Scorer:
    """A loaded causal LM + tokenizer that scores log-likelihoods and generates.

    batch_size: rows per forward pass, or "auto" (rows packed under a token budget, halved on
    CUDA out-of-memory). max_length: the window (default: the model's context).
    """

    def __init__(self, model: Any, tokenizer: Any, *, path: str | Path | None = None,
                 batch_size: int | str = "auto", max_length: int | None = None, progress: bool = True) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.path = Path(path) if path else None
        self.device = next(model.parameters()).device
        self.max_length = max_length or model_max_length(model, tokenizer)
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
            raise TonguesError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
        self.batch_size = batch_size
        self.token_budget = _CUDA_TOKEN_BUDGET if self.device.type == "cuda" else _CPU_TOKEN_BUDGET
        self.progress = progress
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        if bos is None and eos is None:
            raise TonguesError(f"{self.path or 'the tokenizer'}: no BOS or EOS token to predict a first token from")
        self.prefix_token_id: int = bos if bos is not None else eos
        self.pad_token_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.prefix_token_id
        model_type = getattr(model.config, "model_type", "")
        self._head = model.get_output_embeddings() if model_type in _PLAIN_HEAD else None
        self._body = getattr(model, "base_model", None) if self._head is not None else None
        if self._body is model:  # no separate body module: use the whole forward
            self._head = self._body = None

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, dtype: str = "float32",
             batch_size: int | str = "auto", max_length: int | None = None, progress: bool = True) -> Scorer:
        """Load a Hugging Face causal LM directory (safetensors, no remote code)."""
        from tongues.infer.generate import load

        lm = load(path, device=device, dtype=dtype)
        return cls(lm.model, lm.tokenizer, path=lm.path, batch_size=batch_size, max_length=max_length,
                   progress=progress)

    # ---- tokens ----------------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """Token ids; None uses the tokenizer's default (lm-eval's `tok_encode`)."""
        kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return list(self.tokenizer.encode(text, **kwargs))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval splits them (see the module docstring)."""
        if not context:
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids):]

    # ---- scoring ---------------------------------------------------------------------------------

    def loglikelihood(self, pairs: Sequence[tuple[str, str]], desc: str = "loglikelihood") -> list[float]:
        """log P(continuation | context) in nats for each (context, continuation) pair."""
        requests = []
        for context, continuation in pairs:
            ctx, cont = self.encode_pair(context, continuation)
            if not cont:
                raise TonguesError(f"the continuation {continuation!r} encodes to no tokens after {context[-40:]!r}")
            whole = (ctx + cont)[-(self.max_length + 1):]
            requests.append(ScoredRequest(whole, min(len(cont), self.max_length)))
        return self.score(requests, desc=desc)

    def loglikelihood_rolling(self, texts: Sequence[str], stride: int | None = None,
                              desc: str = "bits per byte") -> list[tuple[float, int]]:
        """(log P(text) in nats, number of tokens) per text, each scored on its own from the prefix
        token, every token exactly once, in windows of max_length tokens moving by `stride`."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        requests, owner = [], []
        for index, ids in enumerate(encoded):
            sequence = [self.prefix_token_id, *ids]
            for start, end, n in rolling_windows(len(ids), self.max_length, stride):
                requests.append(ScoredRequest(sequence[start:end + 1], n))
                owner.append(index)
        scores = self.score(requests, desc=desc)
        totals = [0.0] * len(encoded)
        for index, value in zip(owner, scores, strict=True):
            totals[index] += value
        return [(totals[i], len(ids)) for i, ids in enumerate(encoded)]

    def score(self, requests: Sequence[ScoredRequest], desc: str = "scoring") -> list[float]:
        """Sum of the log-probabilities of each request's scored tokens (nats).

        Requests whose inputs are a prefix of another's share its forward pass (causal attention:
        the hidden states of a prefix do not depend on what follows), which is lm-eval's logits
        cache for one-token answers (A/B/C/D, 예/아니오), generalized.
        """
        for r in requests:
            if not 1 <= r.n_scored < len(r.tokens) or len(r.tokens) - 1 > self.max_length:
                raise ValueError(f"bad request: {len(r.tokens)} tokens, {r.n_scored} scored, window {self.max_length}")
        rows = shared_rows([r.tokens[:-1] for r in requests])
        rows.sort(key=lambda row: -len(row[0]))  # longest first: each batch's width is its first row
        results = [0.0] * len(requests)
        bar = tqdm(total=len(requests), desc=desc, unit="seq", disable=not self.progress, leave=False)
        position = 0
        with torch.inference_mode():
            while position < len(rows):
                width = len(rows[position][0])
                count = self._rows(width, len(rows) - position)
                batch = rows[position:position + count]
                try:
                    values = self._score_batch(batch, requests, width)
                except torch.OutOfMemoryError:
                    if self.batch_size != "auto" or count == 1:
                        raise
                    self.token_budget = max(width, self.token_budget // 2)
                    torch.cuda.empty_cache()
                    continue
                for index, value in values.items():
                    results[index] = value
                position += count
                bar.update(sum(len(members) for _, members in batch))
        bar.close()
        return results

    def _rows(self, width: int, left: int) -> int:
        if self.batch_size == "auto":
            return max(1, min(left, self.token_budget // max(width, 1)))
        return min(left, int(self.batch_size))

    def _score_batch(self, batch: list[tuple[list[int], list[int]]], requests: Sequence[ScoredRequest],
                     width: int) -> dict[int, float]:
        inputs = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        rows, cols, targets, owners, members = [], [], [], [], []
        for r, (row_input, indices) in enumerate(batch):
            # Right padding needs no attention mask: causal attention never looks right.
            inputs[r, :len(row_input)] = torch.tensor(row_input)
            for index in indices:
                request = requests[index]
                n_in, k = len(request.tokens) - 1, request.n_scored
                rows += [r] * k
                cols += range(n_in - k, n_in)
                targets += request.tokens[n_in + 1 - k:]
                owners += [len(members)] * k
                members.append(index)
        inputs = inputs.to(self.device)
        index_r = torch.tensor(rows, device=self.device)
        index_c = torch.tensor(cols, device=self.device)
        target = torch.tensor(targets, device=self.device)
        if self._head is not None:
            hidden = self._body(input_ids=inputs).last_hidden_state[index_r, index_c]
            logprobs = torch.cat([
                -F.cross_entropy(self._head(hidden[i:i + _HEAD_CHUNK]).float(), target[i:i + _HEAD_CHUNK],
                                 reduction="none")
                for i in range(0, len(target), _HEAD_CHUNK)
            ])
        else:
            logits = self.model(input_ids=inputs).logits[index_r, index_c].float()
            logprobs = -F.cross_entropy(logits, target, reduction="none")
        sums = torch.zeros(len(members), dtype=torch.float64, device=self.device)
        sums.index_add_(0, torch.tensor(owners, device=self.device), logprobs.double())
        return dict(zip(members, sums.tolist(), strict=True))

    # ---- generation ------------------------------------------------------------------------------

    def generate_until(self, prompts: Sequence[str], until: Sequence[str], max_new_tokens: int,
                       batch_size: int = 16) -> list[str]:
        """Greedy continuations, each cut before the first of `until` (and at EOS)."""
        from tongues.infer.generate import LanguageModel

        lm = LanguageModel(self.model, self.tokenizer, self.path)
        params = lm.params(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, top_k=0,
                           repetition_penalty=1.0, stop=tuple(until))
        room = max(1, self.max_length - max_new_tokens)
        seqs = []
        for prompt in prompts:
            ids = self.encode(prompt) or [self.prefix_token_id]
            seqs.append(lm.new_sequence(ids[-room:], params))  # left-truncated, as lm-eval does
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].prompt_ids))
        bar = tqdm(total=len(seqs), desc="generating", unit="seq", disable=not self.progress, leave=False)
        for start in range(0, len(order), batch_size):
            chunk = [seqs[i] for i in order[start:start + batch_size]]
            lm.run(chunk)
            bar.update(len(chunk))
        bar.close()
        return [s.text or "" for s in seqs]
