"""Text generation: ``tongues.load(DIR).generate(...)`` / ``.chat(...)``, streaming, batches.

Works with any Hugging Face causal LM directory (safetensors weights, a fast tokenizer); remote code is
never run. The decode loop is our own, not ``model.generate``: prefill the (left-padded) prompts with
the model's forward, then one token per step with a KV cache, picking the next token from the last
position only. For Llama models (ours) the decode step runs the layers directly on the model's own
weights with a preallocated KV cache, skipping the per-step mask building, cache bookkeeping and
module dispatch of the generic forward; it performs the same operations in the same order, so its
logits are bitwise those of the model's forward and greedy output equals ``model.generate``'s (see
_LlamaWeights for the weight layout). Other architectures step through their own forward.
"""

from __future__ import annotations

import inspect
import re
import secrets
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tongues.errors import TonguesError
from tongues.hub import resolve_model_dir
from tongues.infer.streaming import TextStream

DEFAULT_MAX_NEW_TOKENS = 256
# Tokens that end an assistant turn in common chat templates, besides the tokenizer's eos.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece byte-fallback pieces
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")


class EmptyPromptWarning(UserWarning):
    """An empty prompt: generation starts from the BOS token alone (unconditional text)."""


@dataclass
class Generation:
    """One generated continuation.

    text: the generated text (cut before a stop string); token_ids: the generated tokens, without the
    end-of-sequence token (they include the tokens that spelled a stop string); logprobs: the model's
    log-probability of each of them (before temperature / top-k / top-p); finish_reason: "stop" (eos,
    end of turn or a stop string), "length" (max_new_tokens or the model's context), "cancelled";
    prompt_tokens: the prompt's length in tokens.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    prompt_tokens: int


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one sequence. temperature 0 means greedy (argmax)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0 (1 = off), got {self.repetition_penalty}")
        if problems:
            raise TonguesError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(eq=False)
class SequenceState:
    """The state of one sequence being decoded (one row of a batch)."""

    prompt_ids: list[int]
    params: SamplingParams
    stop_token_ids: frozenset[int]
    max_new_tokens: int  # params.max_new_tokens, clamped to the model's context
    stream: TextStream | None = None
    on_text: Callable[[str], None] | None = None
    is_cancelled: Callable[[], bool] | None = None
    want_logprobs: bool = False
    generator: torch.Generator | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    text: str | None = None
    guard: Utf8Guard | None = None  # keeps byte-fallback tokens valid UTF-8 (see Utf8Guard)
    utf8: tuple[int, int, int] = (0, 0, 0)  # inside a multi-byte character: (bytes needed, low, high)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def accept(self, token: int, logprob: float | None) -> None:
        """Record a generated token and decide whether the sequence is finished."""
        if self.is_cancelled is not None and self.is_cancelled():
            self._finish("cancelled")
            return
        if token in self.stop_token_ids:
            self._finish("stop")
            return
        self.token_ids.append(token)
        if self.guard is not None:
            self.utf8 = self.guard.state_after(self.utf8, token)
        if self.want_logprobs and logprob is not None:
            self.logprobs.append(logprob)
        if self.stream is not None:
            self._emit(self.stream.push(token))
            if self.stream.stopped:
                self._finish("stop")
                return
        if len(self.token_ids) >= self.max_new_tokens:
            self._finish("length")

    def _finish(self, reason: str) -> None:
        self.finish_reason = reason
        if self.utf8[0] and self.guard is not None:  # stopped inside a character: drop its bytes
            kept = self.guard.complete_prefix(self.token_ids)
            dropped = len(self.token_ids) - len(kept)
            del self.token_ids[len(kept):]
            if self.want_logprobs:
                del self.logprobs[len(kept):]
            if self.stream is not None:
                self.stream.drop_last(dropped)
            self.utf8 = (0, 0, 0)
        if self.stream is not None:
            self._emit(self.stream.finish())
            self.text = self.stream.text

    def _emit(self, text: str) -> None:
        if text and self.on_text is not None:
            self.on_text(text)

    def result(self) -> Generation:
        assert self.text is not None, "decode the batch first"
        return Generation(self.text, list(self.token_ids), list(self.logprobs), self.finish_reason or "length",
                          len(self.prompt_ids))


def _as_list(value: int | Sequence[int] | None) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _find_weights(directory: Path) -> None:
    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.name in _PICKLE_WEIGHTS or p.suffix == ".bin")
    if pickles:
        raise TonguesError(
            f"{directory} has only pickle weights ({', '.join(pickles)}); tongues loads safetensors only, "
            "because unpickling can run arbitrary code. Convert them once where you trust the file, e.g. "
            "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR) writes model.safetensors"
        )
    raise TonguesError(f"{directory} has no model weights: expected model.safetensors (or sharded *.safetensors)")


def _torch_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype | str:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        # float32 on CPU: bfloat16 matmuls are slower there on most CPUs and change greedy output.
        return torch.float32 if device == "cpu" else "auto"
    if dtype == "auto":
        return "auto"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise TonguesError(f"dtype must be one of auto, float32, bfloat16, float16; got {dtype!r}")
    return getattr(torch, dtype)


def load(
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    threads: int | None = None,
) -> LanguageModel:
    """Load a causal LM directory (ours, or any Hugging Face one with safetensors weights) for generation.

    path: the model directory (config.json, *.safetensors, tokenizer files), or a Hub name "org/model".
    device: "cpu" (default, or "cuda" when available), "cuda", "cuda:1", "mps".
    dtype: "float32" (default on CPU), "bfloat16", "float16" or "auto" (the checkpoint's).
    threads: torch CPU threads (torch.set_num_threads); None leaves torch's default.
    Raises TonguesError for a missing directory, pickle-only weights, or a model that needs remote code.
    """
    directory = resolve_model_dir(path)  # before the heavy imports: an offline hub name fails at once
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (directory / "config.json").is_file():
        raise TonguesError(f"{directory} has no config.json; is it a Hugging Face model directory?")
    _find_weights(directory)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if threads is not None:
        if threads < 1:
            raise TonguesError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            directory, config=config, use_safetensors=True, trust_remote_code=False,
            dtype=_torch_dtype(dtype, device.split(":")[0]),
        )
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    except (ValueError, OSError, KeyError) as err:
        raise TonguesError(f"cannot load {directory} as a causal language model: {err}") from err
    model.to(device).eval()
    return LanguageModel(model, tokenizer, directory, column_major=device.startswith("cpu"))


class LanguageModel:
    """A loaded causal LM and its tokenizer. Use `generate` for text, `chat` for conversations.

    Wrapping a model prepares its decode path (for Llama: fused projection weights, the modules'
    parameters becoming views into them, values and the model's own arithmetic unchanged); put the
    model on its device first. `column_major` also stores those weights transposed, faster on CPU
    (see _LlamaWeights); it changes the last bits of the model's own forward too, so only `load`,
    which owns its model, turns it on. Safe to share between threads (the server encodes on one
    thread, decodes on another).
    """

    def __init__(self, model: Any, tokenizer: Any, path: Path | None = None, column_major: bool = False) -> None:
        self.model = model
        # Fast tokenizers reconfigure their Rust object on calls; concurrent calls can clash.
        self._tokenizer_lock = threading.RLock()
        self.tokenizer = tokenizer
        self.path = path
        self.device = next(model.parameters()).device
        config = model.config
        self.context_length: int | None = next(
            (getattr(config, k) for k in ("max_position_embeddings", "n_positions", "max_sequence_length",
                                            "seq_length") if isinstance(getattr(config, k, None), int)),
            None,
        )
        gen = getattr(model, "generation_config", None)
        self.eos_token_ids = frozenset(_as_list(getattr(gen, "eos_token_id", None))
                                       + _as_list(tokenizer.eos_token_id))
        vocab = tokenizer.get_vocab()
        template = getattr(tokenizer, "chat_template", None) or ""
        self.end_of_turn_ids = self.eos_token_ids | {
            vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and t in template
        }
        self.byte_token_ids = frozenset(i for t, i in vocab.items() if _BYTE_TOKEN.fullmatch(t))
        self.utf8_guard = Utf8Guard(vocab) if self.byte_token_ids else None
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else (min(self.eos_token_ids) if self.eos_token_ids else 0)
        self.defaults = _defaults_from(gen)
        self._stepper_factory = _stepper_factory(model, column_major)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (f"LanguageModel({self.path or type(self.model).__name__}, {n / 1e6:.1f}M parameters, "
                f"context {self.context_length}, {self.device})")

    # ---- prompts -----------------------------------------------------------------------------------

    def encode(self, prompt: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of a prompt (with the tokenizer's bos when it adds one and `add_special_tokens`)."""
        with self._tokenizer_lock:
            ids = list(self.tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        if not prompt:
            bos = self.tokenizer.bos_token_id
            if bos is None:
                raise TonguesError("the prompt is empty and the tokenizer has no bos token to start from")
            warnings.warn(f"the prompt is empty: generation starts from the BOS token {self.tokenizer.bos_token!r} "
                          "alone (unconditional text)", EmptyPromptWarning, stacklevel=3)
            ids = ids or [bos]
        return ids

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of generated token ids, special tokens skipped."""
        with self._tokenizer_lock:
            return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text for a conversation: the tokenizer's chat template with the assistant cue."""
        if not getattr(self.tokenizer, "chat_template", None):
            where = self.path / "tokenizer_config.json" if self.path else "the tokenizer"
            raise TonguesError(f"{where} has no chat_template, so chat() cannot format a conversation; "
                               "use generate() with a plain prompt, or a tokenizer that ships a template")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise TonguesError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
        with self._tokenizer_lock:
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def check_prompt_length(self, n_tokens: int) -> None:
        """Raise TonguesError when a prompt of n_tokens leaves no room to generate in the context."""
        if self.context_length is not None and n_tokens >= self.context_length:
            raise TonguesError(
                f"the prompt is {n_tokens} tokens but the model's context is {self.context_length} tokens "
                f"(max_position_embeddings); shorten the prompt to at most {self.context_length - 1} tokens"
            )

    # ---- generation --------------------------------------------------------------------------------

    def params(self, **overrides: Any) -> SamplingParams:
        """SamplingParams from the model's generation_config.json defaults and the given overrides
        (None values keep the default)."""
        values = dict(self.defaults)
        values.update({k: v for k, v in overrides.items() if v is not None})
        stop = values.get("stop", ())
        values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        return SamplingParams(**values)

    def new_sequence(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        stop_token_ids: frozenset[int] | None = None,
        seed_offset: int = 0,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        logprobs: bool = False,
    ) -> SequenceState:
        """A sequence ready for `run` / `decode_steps`. Raises TonguesError when the prompt does not fit
        the context; max_new_tokens is clamped to what the context leaves."""
        self.check_prompt_length(len(prompt_ids))
        room = self.context_length - len(prompt_ids) if self.context_length else params.max_new_tokens
        generator = None
        if not params.greedy:
            generator = torch.Generator(device=self.device)
            seed = params.seed + seed_offset if params.seed is not None else secrets.randbits(62)
            generator.manual_seed(seed)
        text_stream = None
        if stream or on_text is not None or params.stop:
            text_stream = TextStream(self.decode, params.stop, self.byte_token_ids)
        return SequenceState(
            prompt_ids=list(prompt_ids), params=params, guard=self.utf8_guard,
            stop_token_ids=self.eos_token_ids if stop_token_ids is None else stop_token_ids,
            max_new_tokens=min(params.max_new_tokens, room), stream=text_stream, on_text=on_text,
            is_cancelled=is_cancelled, want_logprobs=logprobs, generator=generator,
        )

    def decode_steps(self, seqs: list[SequenceState]) -> Iterator[None]:
        """Decode `seqs` together as one left-padded batch, yielding after every step; when it is
        exhausted each sequence has its text and finish_reason. Streaming text goes to `on_text`."""
        if not seqs:
            return
        width = max(len(s.prompt_ids) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            input_ids[row, width - len(seq.prompt_ids):] = torch.tensor(seq.prompt_ids)
            mask[row, width - len(seq.prompt_ids):] = 1
        stepper = self._stepper_factory(width + max(s.max_new_tokens for s in seqs))
        logits = stepper.prefill(input_ids.to(self.device), mask.to(self.device))
        active = list(seqs)
        while True:
            tokens, logprobs = _pick_tokens(logits, active, self.utf8_guard)
            token_list = tokens.tolist()
            for i, seq in enumerate(active):
                seq.accept(token_list[i], logprobs[i] if logprobs is not None else None)
            keep = [i for i, seq in enumerate(active) if not seq.done]
            if not keep:
                break
            if len(keep) < len(active):
                # Finished rows leave the batch: later steps cost only what is still running.
                stepper.select(torch.tensor(keep, device=self.device))
                tokens = tokens[keep]
                active = [active[i] for i in keep]
            yield
            logits = stepper.step(tokens.view(-1, 1))
        for seq in seqs:
            if seq.text is None:
                seq.text = self.decode(seq.token_ids)
        yield

    def run(self, seqs: list[SequenceState]) -> list[Generation]:
        """Decode `seqs` as one batch to the end; returns their Generations in order."""
        for _ in self.decode_steps(seqs):
            pass
        return [s.result() for s in seqs]

    def generate(
        self,
        prompt: str | Sequence[str],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        *,
        stream: bool = False,
        return_details: bool = False,
        add_special_tokens: bool = True,
        batch_size: int = 16,
    ) -> Any:
        """Continue a prompt (or a list of prompts, decoded in left-padded batches).

        max_new_tokens / temperature / top_p / top_k / repetition_penalty: None takes the model's
        generation_config.json (greedy unless it sets do_sample). temperature 0 = greedy.
        stop: strings that end generation; the text is cut before the first one found.
        seed: fixes sampling (prompt i of a list uses seed + i): same seed, same output.
        stream: yield text pieces as they are decoded (one prompt only); a piece never ends inside a
        character or a grapheme cluster.
        return_details: return Generation(text, token_ids, logprobs, finish_reason, prompt_tokens).
        Returns str (or Generation) for a str prompt, a list of them for a list of prompts.
        Raises TonguesError when a prompt does not fit in the model's context. An empty prompt starts
        from the BOS token alone (unconditional text) and warns (EmptyPromptWarning).
        Byte-fallback tokens are kept valid UTF-8 (Utf8Guard): the text never holds U+FFFD or control
        characters made from bytes, at any temperature.
        """
        params = self.params(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                             repetition_penalty=repetition_penalty, stop=stop, seed=seed)
        single = isinstance(prompt, str)
        prompts = [prompt] if single else list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise TonguesError("prompt must be a string or a non-empty list of strings")
        ids = [self.encode(p, add_special_tokens) for p in prompts]
        return self._generate_ids(ids, params, self.eos_token_ids, single, stream, return_details, batch_size)

    def chat(
        self,
        messages: str | Sequence[dict[str, str]] | Sequence[Sequence[dict[str, str]]],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        repetition_penalty: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        *,
        stream: bool = False,
        return_details: bool = False,
        batch_size: int = 16,
    ) -> Any:
        """Answer a conversation: [{"role": "user", "content": "..."}, ...] (or a plain string as one user
        message, or a list of conversations). The tokenizer's chat template is applied with the
        assistant cue; generation ends at the end-of-turn token. Options and return as `generate`."""
        params = self.params(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                             repetition_penalty=repetition_penalty, stop=stop, seed=seed)
        if isinstance(messages, str):
            conversations, single = [[{"role": "user", "content": messages}]], True
        elif messages and all(isinstance(m, dict) for m in messages):
            conversations, single = [list(messages)], True
        elif messages and all(isinstance(c, (list, tuple)) for c in messages):
            conversations, single = [list(c) for c in messages], False
        else:
            raise TonguesError("messages must be a string, a list of {'role', 'content'} dicts, or a list of those")
        ids = [self.encode(self.render_chat(c), add_special_tokens=False) for c in conversations]
        return self._generate_ids(ids, params, self.end_of_turn_ids, single, stream, return_details, batch_size)

    def _generate_ids(
        self, ids: list[list[int]], params: SamplingParams, stop_ids: frozenset[int], single: bool, stream: bool,
        details: bool, batch_size: int,
    ) -> Any:
        if stream:
            if not single:
                raise TonguesError("stream=True takes one prompt; pass a list without stream for a batch")
            return self._stream(self.new_sequence(ids[0], params, stop_token_ids=stop_ids, stream=True))
        seqs = [self.new_sequence(p, params, stop_token_ids=stop_ids, seed_offset=i, logprobs=details)
                for i, p in enumerate(ids)]
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i].prompt_ids))
        for start in range(0, len(order), max(1, batch_size)):
            self.run([seqs[i] for i in order[start:start + batch_size]])
        results = [s.result() if details else s.text for s in seqs]
        return results[0] if single else results

    def _stream(self, seq: SequenceState) -> Iterator[str]:
        pieces: list[str] = []
        seq.on_text = pieces.append
        for _ in self.decode_steps([seq]):
            if pieces:
                yield "".join(pieces)
                pieces.clear()
        if pieces:
            yield "".join(pieces)

def _defaults_from(gen: Any) -> dict[str, Any]:
    """Sampling defaults from a model's generation_config.json: greedy unless it sets do_sample."""
    values: dict[str, Any] = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, "temperature": 0.0}
    if gen is None:
        return values
    if isinstance(getattr(gen, "max_new_tokens", None), int):
        values["max_new_tokens"] = gen.max_new_tokens
    if getattr(gen, "do_sample", False):
        values["temperature"] = gen.temperature if gen.temperature is not None else 1.0
        if gen.top_p is not None:
            values["top_p"] = gen.top_p
        if gen.top_k is not None:
            values["top_k"] = gen.top_k
    if getattr(gen, "repetition_penalty", None) is not None:
        values["repetition_penalty"] = gen.repetition_penalty
    return values


# ---- valid text from byte-fallback tokens -----------------------------------------------------------

# Bytes a byte-fallback token may stand for outside a multi-byte character: printable ASCII plus tab
# and newline, and the lead bytes of 2-4 byte UTF-8 characters. Continuation bytes, C0/C1/F5-FF
# (never valid in UTF-8) and control characters are not text a model should emit.
_FREE_BYTES = frozenset([0x09, 0x0A, *range(0x20, 0x7F), *range(0xC2, 0xF5)])


def _utf8_next(lead: int) -> tuple[int, int, int]:
    """(continuation bytes still needed, lowest, highest allowed next byte) after a lead byte; the
    narrowed ranges after E0/ED/F0/F4 and C2 exclude overlong forms, surrogates, code points past
    U+10FFFF and the C1 control characters U+0080-U+009F."""
    if lead < 0xE0:
        return 1, (0xA0 if lead == 0xC2 else 0x80), 0xBF
    if lead < 0xF0:
        return 2, (0xA0 if lead == 0xE0 else 0x80), (0x9F if lead == 0xED else 0xBF)
    return 3, (0x90 if lead == 0xF0 else 0x80), (0x8F if lead == 0xF4 else 0xBF)


class Utf8Guard:
    """Keeps generated byte-fallback tokens (``<0xE0>``) valid UTF-8 text.

    Before each pick, a row outside a multi-byte character may not take a byte token that cannot
    start text (a continuation byte, an invalid byte, a control character); a row inside one may take
    only a byte token that continues it (every other token, end of sequence included, is masked).
    A character still unfinished when generation stops is dropped (`complete_prefix`). So no output
    holds U+FFFD or a control character made from byte tokens, whatever the sampling settings.
    """

    def __init__(self, vocab: dict[str, int]) -> None:
        self.byte_of = {i: int(t[3:5], 16) for t, i in vocab.items() if _BYTE_TOKEN.fullmatch(t)}
        self.ids_of: dict[int, int] = {b: i for i, b in self.byte_of.items()}
        self._free_bad: torch.Tensor | None = None
        self._allowed: dict[tuple[int, int], torch.Tensor] = {}

    def __bool__(self) -> bool:
        return bool(self.byte_of)

    def state_after(self, state: tuple[int, int, int], token: int) -> tuple[int, int, int]:
        """The (needed, low, high) state after `token`; (0, 0, 0) is "between characters"."""
        byte = self.byte_of.get(token)
        if byte is None:
            return (0, 0, 0)
        if state[0]:
            return (state[0] - 1, 0x80, 0xBF) if state[0] > 1 else (0, 0, 0)
        return _utf8_next(byte) if byte >= 0xC2 else (0, 0, 0)

    def mask_(self, scores: torch.Tensor, states: Sequence[tuple[int, int, int]]) -> None:
        """Set the scores of tokens a row may not take next to -inf, in place."""
        if self._free_bad is None:
            bad = [i for i, b in self.byte_of.items() if b not in _FREE_BYTES]
            self._free_bad = torch.tensor(bad, dtype=torch.long, device=scores.device)
        free = [row for row, state in enumerate(states) if not state[0]]
        if free:
            rows = torch.tensor(free, dtype=torch.long, device=scores.device)
            scores[rows.unsqueeze(1), self._free_bad.unsqueeze(0)] = float("-inf")
        for row, (need, low, high) in enumerate(states):
            if not need:
                continue
            allowed = self._allowed.get((low, high))
            if allowed is None:
                allowed = torch.tensor([self.ids_of[b] for b in range(low, high + 1) if b in self.ids_of],
                                       dtype=torch.long, device=scores.device)
                self._allowed[(low, high)] = allowed
            if not len(allowed):  # the vocabulary lacks these bytes: nothing can continue, leave the row
                continue
            keep = scores[row, allowed]
            scores[row].fill_(float("-inf"))
            scores[row, allowed] = keep

    def complete_prefix(self, token_ids: list[int]) -> list[int]:
        """`token_ids` without a trailing, unfinished multi-byte character."""
        state, last_complete = (0, 0, 0), 0
        for n, token in enumerate(token_ids, 1):
            state = self.state_after(state, token)
            if not state[0]:
                last_complete = n
        return token_ids[:last_complete]


class Utf8LogitsProcessor:
    """The same guard for transformers' ``model.generate`` (a LogitsProcessor): pass
    ``logits_processor=LogitsProcessorList([Utf8LogitsProcessor.for_tokenizer(tokenizer)])``. The
    state of each row is read from its ids (a prompt made from text never ends inside a character).
    Trailing unfinished bytes at max_new_tokens are not dropped here: decode `complete_prefix`."""

    def __init__(self, guard: Utf8Guard) -> None:
        self.guard = guard

    @classmethod
    def for_tokenizer(cls, tokenizer: Any) -> Utf8LogitsProcessor:
        return cls(Utf8Guard(tokenizer.get_vocab()))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        states = []
        for row in input_ids.tolist():
            state = (0, 0, 0)
            for token in row:
                state = self.guard.state_after(state, token)
            states.append(state)
        scores = scores.clone()
        self.guard.mask_(scores, states)
        return scores


# ---- picking the next token -------------------------------------------------------------------------


def _pick_tokens(logits: torch.Tensor, seqs: list[SequenceState],
                 guard: Utf8Guard | None = None) -> tuple[torch.Tensor, list[float] | None]:
    """Next token of each row (greedy argmax, or sampled with the row's own generator) and, when any
    row asks, the model's log-probability of it (from the unmasked logits)."""
    logprobs = None
    scores = logits
    if guard is not None:
        scores = logits.clone()
        guard.mask_(scores, [s.utf8 for s in seqs])
    if all(s.params.greedy and s.params.repetition_penalty == 1 for s in seqs):
        tokens = scores.argmax(-1)  # greedy needs no softmax
    else:
        scores = scores.clone() if scores is logits else scores
        for row, seq in enumerate(seqs):
            penalty = seq.params.repetition_penalty
            if penalty != 1:
                # As in transformers: every token already in the prompt or the output is penalized once.
                seen = torch.tensor(seq.prompt_ids + seq.token_ids, device=scores.device)
                values = scores[row, seen]
                scores[row, seen] = torch.where(values < 0, values * penalty, values / penalty)
        tokens = scores.argmax(-1)
        for row, seq in enumerate(seqs):
            if not seq.params.greedy:
                tokens[row] = _sample(scores[row], seq.params, seq.generator)
    if any(s.want_logprobs for s in seqs):
        logprobs = torch.log_softmax(logits, -1).gather(1, tokens.view(-1, 1)).view(-1).tolist()
    return tokens, logprobs


def _sample(scores: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Sample one token id from a row of scores with temperature, top-k and top-p (nucleus)."""
    scores = scores / params.temperature
    if 0 < params.top_k < scores.numel():
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1:
        ordered, index = scores.sort(descending=True)
        probs = ordered.softmax(-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass (the first stays).
        drop = (probs.cumsum(-1) - probs) >= params.top_p
        scores = scores.scatter(0, index, ordered.masked_fill(drop, float("-inf")))
    return torch.multinomial(scores.softmax(-1), 1, generator=generator)[0]


# ---- decode steps ----------------------------------------------------------------------------------


class _Stepper:
    """Runs a batch through the model: prefill the prompts, then one token per row per step."""

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Left-padded prompts (batch, width) and their 0/1 mask -> float logits of the next token."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (rows, 1) -> float logits (rows, vocab) of the token after them."""
        raise NotImplementedError

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the current batch)."""
        raise NotImplementedError


def _stepper_factory(model: Any, column_major: bool) -> Callable[[int], _Stepper]:
    if _LlamaWeights.supports(model):
        # Laid out once per model: wrapping the same model again (eval does, per call) reuses it.
        weights = model.__dict__.get("_tongues_decode_weights")
        if weights is None:
            weights = model.__dict__["_tongues_decode_weights"] = _LlamaWeights(model, column_major)
        return lambda capacity: _LlamaStepper(weights, capacity)
    return lambda capacity: _HFStepper(model)


class _HFStepper(_Stepper):
    """Any causal LM: its own forward and cache, fed explicit positions and the padding mask."""

    def __init__(self, model: Any) -> None:
        self.model = model
        accepted = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in accepted else "past_key_values"
        self.keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self.cache: Any = None
        self.mask: torch.Tensor | None = None

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.mask = mask if bool((mask == 0).any()) else None  # no mask: the plain causal path
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        self.next_position = positions[:, -1:] + 1
        return self._forward(input_ids, positions, **self.keep_last)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        logits = self._forward(tokens, self.next_position)
        self.next_position = self.next_position + 1
        return logits

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor, **extra: Any) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         **{self.cache_arg: self.cache}, **extra)
        self.cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def select(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        self.next_position = self.next_position[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # LlamaRMSNorm's arithmetic, op for op (float32 statistics), so results match it bit for bit.
    if x.dtype == torch.float32:
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    y = x.to(torch.float32)
    return weight * (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class _LlamaWeights:
    """A Llama model's weights, laid out for decode steps, and its rotary tables; shared by every batch.

    The q/k/v projections become one matrix and gate/up another (one matrix-vector product instead of
    three or two). With `column_major` (CPU) every matrix is also stored transposed: MKL's product of
    one activation row with a row-major weight (sgemm with a transposed B) measured 1.3-2x slower
    than with the same weight column-major, and a decode step is little else. The modules' own
    weights become views into this storage, so no memory is duplicated and the model's forward (the
    prefill) runs on exactly the arithmetic of the decode steps: greedy output is bitwise that of
    ``model.generate`` on this model. With column-major weights a freshly loaded row-major copy may
    round its dot products differently in the last bits (as transformers' own batched and single
    runs of one prompt do); the tests and the benchmark compare token ids with such a copy too.
    """

    _STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # rope tables that do not change with length

    @staticmethod
    def supports(model: Any) -> bool:
        config = model.config
        rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        return (
            type(model).__name__ == "LlamaForCausalLM"
            and getattr(config, "_attn_implementation", None) == "sdpa"
            and rope in _LlamaWeights._STATIC_ROPE
            and layer_types == {"full_attention"}
        )

    def __init__(self, model: Any, column_major: bool) -> None:
        config = model.config
        self.model = model
        self.inner = model.model
        attn = self.inner.layers[0].self_attn
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        self.layers = [self._layer(layer, column_major) for layer in self.inner.layers]
        tied = model.lm_head.weight is self.inner.embed_tokens.weight
        lm_head_weight, lm_head_bias = _relayout([model.lm_head], column_major)
        if tied:  # the embedding reads rows of the same (now column-major) matrix: keep them one tensor
            self.inner.embed_tokens.weight = model.lm_head.weight
        self.embed = self.inner.embed_tokens.weight
        self.norm = (self.inner.norm.weight, self.inner.norm.variance_epsilon)
        self.lm_head = (lm_head_weight, lm_head_bias)
        self.cos = self.sin = torch.empty(0)

    @staticmethod
    def _layer(layer: Any, column_major: bool) -> tuple[Any, ...]:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_weight, qkv_bias = _relayout([attn.q_proj, attn.k_proj, attn.v_proj], column_major)
        gate_up_weight, gate_up_bias = _relayout([mlp.gate_proj, mlp.up_proj], column_major)
        o_weight, o_bias = _relayout([attn.o_proj], column_major)
        down_weight, down_bias = _relayout([mlp.down_proj], column_major)
        return (
            layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon, qkv_weight, qkv_bias,
            o_weight, o_bias,
            layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon,
            gate_up_weight, gate_up_bias, mlp.gate_proj.out_features, down_weight, down_bias,
            F.silu if type(mlp.act_fn).__name__ == "SiLUActivation" else mlp.act_fn,  # same op, no module call
        )

    def rope(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables (positions, head_dim) for positions below `length`, from the model's own
        rotary module (the same values it computes per call); the first half of sin negated."""
        if self.cos.shape[0] < length:
            length = max(length, 2 * self.cos.shape[0])
            positions = torch.arange(length, device=self.embed.device).unsqueeze(0)
            cos, sin = self.inner.rotary_emb(self.embed[:1].unsqueeze(0), positions)
            half = self.head_dim // 2
            self.cos, self.sin = cos[0], torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)
        return self.cos, self.sin


def _relayout(linears: list[Any], column_major: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stack the weights (and biases) of linear layers that read the same input into one matrix,
    column-major if asked, and make the layers' parameters views into it; returns (weight, bias)."""
    first = linears[0]
    if len(linears) == 1 and not column_major:
        return first.weight, first.bias
    with torch.no_grad():
        weight = torch.cat([linear.weight for linear in linears])
        bias = torch.cat([linear.bias for linear in linears]) if first.bias is not None else None
        if column_major:
            weight = weight.t().contiguous().t()  # same values, transposed storage
        start = 0
        for linear in linears:
            end = start + linear.weight.shape[0]
            linear.weight = torch.nn.Parameter(weight[start:end], requires_grad=False)
            if bias is not None:
                linear.bias = torch.nn.Parameter(bias[start:end], requires_grad=False)
            start = end
    return weight, bias


class _LlamaStepper(_Stepper):
    """Llama decode steps on the model's weights with a preallocated KV cache.

    Prefill goes through the model's forward (one call, any prompt shape). Each decode step then runs
    the arithmetic of LlamaDecoderLayer with sdpa, without the generic forward's per-step work (mask
    construction, cache objects, module hooks, output records), which on a small model costs more
    than the matrix products.
    """

    def __init__(self, weights: _LlamaWeights, capacity: int) -> None:
        self.w = weights
        self.capacity = capacity

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        w = self.w
        batch, width = input_ids.shape
        padded = bool((mask == 0).any())
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        cache = DynamicCache(config=w.model.config)
        out = w.model(input_ids=input_ids, attention_mask=mask if padded else None, position_ids=positions,
                      cache=cache, use_cache=True, logits_to_keep=1)
        shape = (batch, w.n_kv_heads, self.capacity, w.head_dim)
        self.keys = [w.embed.new_empty(shape) for _ in w.layers]
        self.values = [w.embed.new_empty(shape) for _ in w.layers]
        for i, layer in enumerate(cache.layers):
            self.keys[i][:, :, :width] = layer.keys
            self.values[i][:, :, :width] = layer.values
        self.valid: torch.Tensor | None = None
        if padded:
            self.valid = torch.ones((batch, self.capacity), dtype=torch.bool, device=w.embed.device)
            self.valid[:, :width] = mask.bool()
        self.length = width
        self.position = positions[:, -1] + 1
        self.cos, self.sin = w.rope(int(self.position.max()) + self.capacity - width + 1)  # sin: signed
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        w = self.w
        rows, t = tokens.shape[0], self.length
        if t >= self.capacity:
            raise RuntimeError("KV cache capacity exceeded")  # max_new_tokens bounds the steps; a bug if hit
        n_heads, n_kv, head_dim = w.n_heads, w.n_kv_heads, w.head_dim
        n_qk, n_rep, half = n_heads + n_kv, n_heads // n_kv, head_dim // 2
        # narrow / select / copy_ rather than [] indexing: the same views, less Python per call.
        cos = self.cos.index_select(0, self.position).unsqueeze(1)  # (rows, 1, head_dim): over heads
        sin = self.sin.index_select(0, self.position).unsqueeze(1)
        mask = self.valid.narrow(1, 0, t + 1)[:, None, None, :] if self.valid is not None else None
        h = F.embedding(tokens, w.embed)  # (rows, 1, hidden)
        for i, (norm1, eps1, w_qkv, b_qkv, w_o, b_o, norm2, eps2, w_gu, b_gu, n_inter, w_down, b_down, act) in (
            enumerate(w.layers)
        ):
            qkv = F.linear(_rms(h, norm1, eps1), w_qkv, b_qkv).view(rows, -1, head_dim)  # (rows, heads, dim)
            qk = qkv.narrow(1, 0, n_qk)
            # Rotary on the query and key heads at once: rotate_half(x) * sin as roll(x) * (sin with its
            # first half negated), which is the same arithmetic in fewer operations.
            qk = qk * cos + qk.roll(half, -1) * sin
            keys, values = self.keys[i], self.values[i]
            keys.select(2, t).copy_(qk.narrow(1, n_heads, n_kv))
            values.select(2, t).copy_(qkv.narrow(1, n_qk, n_kv))
            keys, values = keys.narrow(2, 0, t + 1), values.narrow(2, 0, t + 1)
            # Grouped heads as transformers' sdpa path runs them: enable_gqa without a mask, else the
            # query heads of a group folded into the query-length axis.
            if n_rep > 1 and mask is None:
                q = qk.narrow(1, 0, n_heads).unsqueeze(2)
                o = F.scaled_dot_product_attention(q, keys, values, scale=w.scaling, enable_gqa=True)
            else:
                q = qk.narrow(1, 0, n_heads).reshape(rows, n_kv, n_rep, head_dim)
                o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=w.scaling)
            h = h + F.linear(o.reshape(rows, 1, -1), w_o, b_o)
            gate_up = F.linear(_rms(h, norm2, eps2), w_gu, b_gu)
            h = h + F.linear(act(gate_up.narrow(-1, 0, n_inter)) * gate_up.narrow(-1, n_inter, n_inter), w_down,
                             b_down)
        self.length += 1
        self.position = self.position + 1
        return F.linear(_rms(h[:, -1], *w.norm), *w.lm_head).float()

    @torch.inference_mode()
    def select(self, rows: torch.Tensor) -> None:
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.position = self.position[rows]
        if self.valid is not None:
            self.valid = self.valid[rows]
