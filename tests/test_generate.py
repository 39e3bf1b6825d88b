"""tongues.load(...).generate(): equality with transformers' greedy decoding, stops, sampling, errors,
streaming that keeps characters and grapheme clusters whole.

The models are tiny random-weight causal LMs made here (save_pretrained, safetensors) with a small
SentencePiece-style tokenizer (Unigram with byte fallback, ChatML template) trained on inline text.
`make_tiny_model` lives in model_fixtures.py, shared with test_chat.py and test_serve.py.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import torch
from model_fixtures import make_tiny_model

PROMPTS = ["안녕하세요", "नमस्ते, आप कैसे हैं? हिन्दी भारत की एक प्रमुख भाषा है।", "Xin chào", "The cat sat on the"]


def hf_greedy(lm, prompts: list[str], max_new_tokens: int, model=None, **kwargs) -> list[list[int]]:
    """transformers' model.generate (greedy, KV cache, left padding) on lm's model (or `model`), cut at
    the first eos, with tongues' UTF-8 guard as a logits processor (tongues masks the same tokens)."""
    from transformers import LogitsProcessorList

    from tongues.infer.generate import Utf8LogitsProcessor

    guard = Utf8LogitsProcessor.for_tokenizer(lm.tokenizer)
    kwargs.setdefault("logits_processor", LogitsProcessorList([guard]))
    tok = lm.tokenizer
    tok.padding_side = "left"
    batch = tok(prompts, return_tensors="pt", padding=True)
    model = model if model is not None else lm.model
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0, **kwargs)
    rows = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        rows.append(guard.guard.complete_prefix(row[: row.index(3)] if 3 in row else row))
    return rows


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def lm(model_dir: Path):
    import tongues

    return tongues.load(model_dir, device="cpu")


# ---- equality with transformers ---------------------------------------------------------------------


def test_greedy_equals_transformers_one_by_one_and_batched(lm, model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from tongues.infer.generate import _LlamaStepper

    assert isinstance(lm._stepper_factory(8), _LlamaStepper)  # the fast decode path is what is checked
    vanilla = AutoModelForCausalLM.from_pretrained(model_dir).eval()  # weights as saved, untouched by tongues
    for prompt in PROMPTS:
        got = lm.generate(prompt, max_new_tokens=24, temperature=0, return_details=True).token_ids
        assert got == hf_greedy(lm, [prompt], 24)[0] == hf_greedy(lm, [prompt], 24, model=vanilla)[0]
    # A batch of different lengths (left-padded): each row equals transformers' batched output.
    batched = [g.token_ids for g in lm.generate(PROMPTS, max_new_tokens=24, temperature=0, return_details=True)]
    assert batched == hf_greedy(lm, PROMPTS, 24) == hf_greedy(lm, PROMPTS, 24, model=vanilla)
    assert len({tuple(ids) for ids in batched}) == len(PROMPTS)  # the model's output depends on its input


def test_any_causal_lm_takes_the_generic_path(tmp_path: Path) -> None:
    import tongues
    from tongues.infer.generate import _HFStepper

    gpt2 = tongues.load(make_tiny_model(tmp_path, arch="gpt2"), device="cpu")
    assert isinstance(gpt2._stepper_factory(8), _HFStepper)
    got = gpt2.generate(PROMPTS, max_new_tokens=16, temperature=0, return_details=True)
    assert [g.token_ids for g in got] == hf_greedy(gpt2, PROMPTS, 16)


def test_repetition_penalty_matches_transformers(lm) -> None:
    got = lm.generate(PROMPTS[:2], max_new_tokens=20, temperature=0, repetition_penalty=1.5, return_details=True)
    assert [g.token_ids for g in got] == hf_greedy(lm, PROMPTS[:2], 20, repetition_penalty=1.5)
    plain = lm.generate(PROMPTS[:2], max_new_tokens=20, temperature=0, return_details=True)
    assert [g.token_ids for g in got] != [g.token_ids for g in plain]


def test_details_logprobs_are_the_models(lm) -> None:
    result = lm.generate(PROMPTS[1], max_new_tokens=12, temperature=0, return_details=True)
    prompt = lm.encode(PROMPTS[1])
    assert result.prompt_tokens == len(prompt) and result.finish_reason == "length"
    assert result.text == lm.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    with torch.no_grad():
        logits = lm.model(torch.tensor([prompt + result.token_ids])).logits[0].float()
    steps = torch.log_softmax(logits[len(prompt) - 1: -1], -1)
    expected = steps.gather(1, torch.tensor(result.token_ids).view(-1, 1)).view(-1)
    assert torch.allclose(torch.tensor(result.logprobs), expected, atol=1e-4)
    # greedy picked the most likely token each step among those that keep the text valid UTF-8
    from tongues.infer.generate import Utf8LogitsProcessor

    guard = Utf8LogitsProcessor.for_tokenizer(lm.tokenizer)
    ids = prompt + result.token_ids
    picks = [guard(torch.tensor([ids[:len(prompt) + i]]), steps[i:i + 1]).argmax(-1).item()
             for i in range(len(result.token_ids))]
    assert result.token_ids == picks


# ---- stopping ---------------------------------------------------------------------------------------


def _plain_span(text: str, start: int) -> str:
    """Two characters of `text` from `start` on that are real text (not U+FFFD), as a stop string."""
    for i in range(start, len(text) - 1):
        span = text[i:i + 2]
        if "\ufffd" not in span and span.strip() == span and text.find(span) == i:
            return span
    raise AssertionError(f"no usable stop string in {text!r}")


def test_stop_strings_cut_the_text_before_them(lm) -> None:
    full = lm.generate(PROMPTS[0], max_new_tokens=40, temperature=0)
    stop = _plain_span(full, 6)
    cut = lm.generate(PROMPTS[0], max_new_tokens=40, temperature=0, stop=["never-there", stop],
                      return_details=True)
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]
    streamed = "".join(lm.generate(PROMPTS[0], max_new_tokens=40, temperature=0, stop=stop, stream=True))
    assert streamed == cut.text


def test_eos_from_generation_config_ends_generation(tmp_path: Path) -> None:
    from transformers import GenerationConfig

    import tongues

    directory = make_tiny_model(tmp_path)
    greedy = tongues.load(directory).generate(PROMPTS[2], max_new_tokens=20, temperature=0,
                                              return_details=True).token_ids
    end = greedy[4]
    GenerationConfig(eos_token_id=[3, end], bos_token_id=2, pad_token_id=0).save_pretrained(directory)
    result = tongues.load(directory).generate(PROMPTS[2], max_new_tokens=20, temperature=0, return_details=True)
    assert result.finish_reason == "stop"
    assert result.token_ids == greedy[: greedy.index(end)]


# ---- sampling ---------------------------------------------------------------------------------------


def test_same_seed_same_sample(lm) -> None:
    kwargs = {"max_new_tokens": 24, "temperature": 1.2, "top_p": 0.95, "top_k": 50}
    first = lm.generate(PROMPTS, seed=7, **kwargs)
    assert lm.generate(PROMPTS, seed=7, **kwargs) == first
    assert lm.generate(PROMPTS, seed=8, **kwargs) != first
    stream = "".join(lm.generate(PROMPTS[0], seed=7, stream=True, **kwargs))
    assert stream == first[0]
    greedy = lm.generate(PROMPTS[0], max_new_tokens=24, temperature=0)
    assert lm.generate(PROMPTS[0], max_new_tokens=24, temperature=1.5, top_k=1, seed=3) == greedy
    assert lm.generate(PROMPTS[0], max_new_tokens=24, temperature=1.5, top_p=1e-6, seed=3) == greedy


def test_bad_sampling_values_are_user_errors(lm) -> None:
    from tongues.errors import TonguesError

    with pytest.raises(TonguesError, match="top_p must be in"):
        lm.generate("x", top_p=1.5)
    with pytest.raises(TonguesError, match="temperature must be >= 0"):
        lm.generate("x", temperature=-1)
    with pytest.raises(TonguesError, match="one prompt"):
        lm.generate(["a", "b"], stream=True)


# ---- loading and limits -----------------------------------------------------------------------------


def test_prompt_longer_than_the_context_is_refused_with_the_lengths(lm) -> None:
    from tongues.errors import TonguesError

    with pytest.raises(TonguesError) as err:
        lm.generate("안녕하세요 " * 200, max_new_tokens=4)
    n = len(lm.encode("안녕하세요 " * 200))
    assert f"{n} tokens" in str(err.value) and "context is 128 tokens" in str(err.value)
    # A prompt that fits stops at the context: finish_reason "length", never an error mid-way.
    prompt = "Hello"
    while len(lm.encode(prompt + " Hello")) < 110:
        prompt += " Hello"
    result = lm.generate(prompt, max_new_tokens=100, temperature=0, return_details=True)
    assert len(lm.encode(prompt)) + len(result.token_ids) <= 128


def test_pickle_only_directory_is_refused(tmp_path: Path, model_dir: Path) -> None:
    import shutil

    import tongues
    from tongues.errors import TonguesError

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(TonguesError, match="only pickle weights.*safetensors"):
        tongues.load(tmp_path)
    with pytest.raises(TonguesError, match="does not exist"):
        tongues.load(tmp_path / "missing")


# ---- streaming keeps characters and clusters whole --------------------------------------------------


def test_grapheme_clusters_follow_uax29() -> None:
    from tongues.infer.streaming import grapheme_clusters

    assert grapheme_clusters("क्षत्रिय") == ["क्ष", "त्रि", "य"]  # virama + consonant joins (GB9c)
    assert grapheme_clusters(unicodedata.normalize("NFD", "한국")) == [unicodedata.normalize("NFD", c) for c in "한국"]
    assert grapheme_clusters(unicodedata.normalize("NFD", "Việt")) == ["V", "i", "e\u0323\u0302", "t"]


def test_stable_length_holds_back_incomplete_text() -> None:
    from tongues.infer.streaming import stable_length

    assert stable_length("안녕\ufffd\ufffd") == 1  # bytes of a character pending, and '녕' may still grow
    assert stable_length("नमस्") == 2  # 'स्' waits: a consonant after the virama joins it
    assert stable_length("ab\ufffdcd") == 4  # an invalid byte with text after it is final


def _check_chunks(chunks: list[str], final: str) -> None:
    from tongues.infer.streaming import cluster_boundaries

    assert "".join(chunks) == final
    boundaries, at = cluster_boundaries(final), 0
    for chunk in chunks:
        at += len(chunk)
        assert at in boundaries, f"chunk boundary at {at} splits a grapheme cluster of {final!r}"


@pytest.mark.parametrize("text", [
    "क्षत्रिय ज्ञान नमस्ते हिन्दी",
    "똠방각하 안녕하세요",  # syllables the tokenizer has not seen: byte fallback, 3 bytes each
    unicodedata.normalize("NFD", "한국어 Tiếng Việt rất hay"),  # conjoining jamo, combining tone marks
    "👩\u200d👩\u200d👧 xin chào",
])
def test_text_stream_never_splits_a_character_or_cluster(lm, text: str) -> None:
    from tongues.infer.streaming import TextStream

    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(lm.decode, byte_token_ids=lm.byte_token_ids)
    chunks = [stream.push(i) for i in ids] + [stream.finish()]
    final = lm.decode(ids)
    _check_chunks([c for c in chunks if c], final)
    assert not any("\ufffd" in c for c in chunks)  # every character arrived whole


def test_a_byte_run_is_shown_only_once_it_is_final(lm) -> None:
    from tongues.infer.streaming import TextStream

    # '&' alone decodes as '&', but the ByteFallback decoder turns a whole run with an invalid byte
    # into U+FFFD: the stream must not show '&' before the run is over.
    ids = lm.tokenizer.convert_tokens_to_ids(["<0x26>", "<0xCA>", "▁a"])
    assert lm.decode(ids[:1]) == "&" and lm.decode(ids).startswith("\ufffd")
    stream = TextStream(lm.decode, byte_token_ids=lm.byte_token_ids)
    chunks = [stream.push(i) for i in ids] + [stream.finish()]
    assert chunks[:2] == ["", ""] and "".join(chunks) == lm.decode(ids)


def test_generated_stream_equals_the_non_streamed_text(lm) -> None:
    for seed, prompt in enumerate(PROMPTS):
        kwargs = {"max_new_tokens": 30, "temperature": 0.9, "seed": seed}
        chunks = list(lm.generate(prompt, stream=True, **kwargs))
        _check_chunks(chunks, lm.generate(prompt, **kwargs))


def test_stream_holds_back_a_possible_stop_string() -> None:
    from tongues.infer.streaming import TextStream

    pieces = ["Hel", "lo ", "wo", "rl", "d!"]
    stream = TextStream(lambda ids: "".join(pieces[i] for i in ids), stops=["world"])
    out = [stream.push(i) for i in range(len(pieces))]
    assert stream.stopped and "".join(out) == "Hello " and stream.text == "Hello "
    assert not any("w" in piece for piece in out)  # "w", "wo", "wor", "worl" might start "world"


# ---- valid text from byte-fallback tokens ----------------------------------------------------------


def _invalid(text: str) -> bool:
    return "\ufffd" in text or any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t" for c in text)


def test_a_thousand_samples_at_temperature_one_are_valid_text(lm) -> None:
    outs = lm.generate(["안녕", "नमस्ते"] * 500, max_new_tokens=24, temperature=1.0, seed=0, batch_size=250)
    assert len(outs) == 1000 and not [t for t in outs if _invalid(t)]
    streamed = "".join(lm.generate("Xin chào", max_new_tokens=48, temperature=1.0, seed=3, stream=True))
    assert not _invalid(streamed)
    # The same sampling without the guard does emit broken bytes: the check above can fail.
    guard, lm.utf8_guard = lm.utf8_guard, None
    try:
        unguarded = lm.generate(["안녕", "नमस्ते"] * 50, max_new_tokens=24, temperature=1.0, seed=0)
    finally:
        lm.utf8_guard = guard
    assert sum(map(_invalid, unguarded)) > 10


def test_utf8_guard_follows_the_utf8_grammar(lm) -> None:
    guard = lm.utf8_guard
    byte = {b: i for i, b in guard.byte_of.items()}
    ids = [byte[b] for b in "한".encode()]
    state = (0, 0, 0)
    for expected_need, token in zip((2, 1, 0), ids, strict=True):
        state = guard.state_after(state, token)
        assert state[0] == expected_need
    assert guard.state_after((0, 0, 0), byte[0xE0]) == (2, 0xA0, 0xBF)  # no overlong forms
    assert guard.state_after((0, 0, 0), byte[0xED]) == (2, 0x80, 0x9F)  # no surrogates
    assert guard.state_after((0, 0, 0), byte[0xF4]) == (3, 0x80, 0x8F)  # nothing past U+10FFFF
    # an unfinished character at the end is dropped, a finished one kept
    assert guard.complete_prefix([7, *ids]) == [7, *ids] and guard.complete_prefix([7, *ids[:2]]) == [7]
    scores = torch.zeros(2, len(lm.tokenizer))
    guard.mask_(scores, [(0, 0, 0), (1, 0x80, 0xBF)])
    finite = [set(torch.nonzero(row.isfinite()).view(-1).tolist()) for row in scores]
    assert byte[0x80] not in finite[0] and byte[0x1B] not in finite[0] and byte[0xE0] in finite[0]
    assert byte[0x41] in finite[0] and 300 in finite[0]  # ASCII bytes and ordinary pieces stay
    assert finite[1] == {byte[b] for b in range(0x80, 0xC0)}  # inside a character: only its continuations


def test_an_empty_prompt_starts_from_bos_and_says_so(lm, model_dir, capsys) -> None:
    from tongues.cli import main
    from tongues.infer.generate import EmptyPromptWarning

    with pytest.warns(EmptyPromptWarning, match="starts from the BOS token"):
        result = lm.generate("", max_new_tokens=4, temperature=0, return_details=True)
    assert result.prompt_tokens == 1  # the BOS token alone
    assert main(["generate", "--model", str(model_dir), "", "--max-new-tokens", "3"]) == 0
    assert "empty prompt starts from the BOS token" in capsys.readouterr().err
