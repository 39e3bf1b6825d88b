"""chat(): the tokenizer's chat template, end of turn, and the `tongues chat` / `tongues generate` CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from model_fixtures import make_tiny_model

CONVERSATION = [{"role": "system", "content": "Trả lời ngắn gọn."}, {"role": "user", "content": "안녕하세요! 한국어 할 줄 아세요?"}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-chat"), seed=1)


@pytest.fixture(scope="module")
def lm(model_dir: Path):
    import tongues

    return tongues.load(model_dir, device="cpu")


def test_chat_applies_the_template_and_matches_transformers(lm) -> None:
    text = lm.tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(4) == 3 and ids.count(5) == 2  # three turns opened, two closed
    assert lm.end_of_turn_ids == {3, 5}  # </s> and <|im_end|>
    result = lm.chat(CONVERSATION, max_new_tokens=20, temperature=0, return_details=True)
    assert result.prompt_tokens == len(ids)
    from transformers import LogitsProcessorList

    from tongues.infer.generate import Utf8LogitsProcessor

    guard = Utf8LogitsProcessor.for_tokenizer(lm.tokenizer)  # tongues keeps byte tokens valid UTF-8
    out = lm.model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False, eos_token_id=[3, 5],
                            pad_token_id=0, logits_processor=LogitsProcessorList([guard]))[0, len(ids):].tolist()
    expected = guard.guard.complete_prefix(out[: next((i for i, t in enumerate(out) if t in (3, 5)), len(out))])
    assert result.token_ids == expected
    # A plain string is one user message; several conversations make a batch.
    one = lm.chat("안녕하세요", max_new_tokens=8, temperature=0)
    assert lm.chat([[{"role": "user", "content": "안녕하세요"}], CONVERSATION], max_new_tokens=8,
                   temperature=0)[0] == one


def test_chat_without_a_template_is_a_clear_error(tmp_path: Path) -> None:
    import tongues
    from tongues.errors import TonguesError

    bare = tongues.load(make_tiny_model(tmp_path, chat_template=None))
    with pytest.raises(TonguesError, match="no chat_template"):
        bare.chat("hello")


def test_repl_keeps_history_streams_and_resets() -> None:
    from tongues.infer.commands import chat_repl

    seen: list[list[dict[str, str]]] = []

    def reply(messages):
        seen.append([dict(m) for m in messages])
        yield from ["Xin ", "chào", f" #{len(seen)}"]

    lines = iter(["안녕", "again", "/reset", "नमस्ते", "/exit", "never read"])
    out = io.StringIO()
    assert chat_repl(reply, read=lambda prompt: next(lines), out=out, system="be brief") == 0
    system = {"role": "system", "content": "be brief"}
    assert seen[0] == [system, {"role": "user", "content": "안녕"}]
    assert seen[1] == [system, {"role": "user", "content": "안녕"}, {"role": "assistant", "content": "Xin chào #1"},
                       {"role": "user", "content": "again"}]
    assert seen[2] == [system, {"role": "user", "content": "नमस्ते"}]  # /reset kept only the system message
    assert "model> Xin chào #2" in out.getvalue() and "(conversation reset)" in out.getvalue()


def test_cli_chat_talks_to_the_model(lm, model_dir: Path, monkeypatch, capsys) -> None:
    from tongues.cli import main

    lines = iter(["안녕하세요"])

    def read(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", read)
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "10", "--temperature", "0"]) == 0
    expected = lm.chat([{"role": "user", "content": "안녕하세요"}], max_new_tokens=10, temperature=0)
    assert f"model> {expected}\n" in capsys.readouterr().out


def test_cli_generate_prints_text_details_and_errors(lm, model_dir: Path, capsys) -> None:
    from tongues.cli import main

    args = ["generate", "--model", str(model_dir), "--max-new-tokens", "12", "--temperature", "0"]
    assert main([*args, "Tiếng Việt"]) == 0
    assert capsys.readouterr().out == lm.generate("Tiếng Việt", max_new_tokens=12, temperature=0) + "\n"
    assert main([*args, "--details", "Tiếng Việt", "हिन्दी"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["Tiếng Việt", "हिन्दी"]
    assert rows[0]["token_ids"] == lm.generate("Tiếng Việt", max_new_tokens=12, temperature=0,
                                               return_details=True).token_ids
    assert main([*args, "--stream", "Tiếng Việt"]) == 0
    assert capsys.readouterr().out == lm.generate("Tiếng Việt", max_new_tokens=12, temperature=0) + "\n"
    assert main([*args, "안녕하세요 " * 100]) == 2
    assert "error: the prompt is" in capsys.readouterr().err
