"""Instruction tuning through TRL: the data validator, the chat template's assistant mask, language
consistency and the GRPO rewards, TRL config defaults and --set, and sft -> reward -> dpo -> grpo on
a tiny model (each output a plain transformers directory with its lineage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
from model_fixtures import make_tiny_model

from tongues.errors import ConfigError, DataError
from tongues.instruct.data import (
    FAILURE_KINDS,
    check_messages,
    in_heldout,
    load_conversations,
    load_preferences,
    split_records,
)
from tongues.langid import language_consistency

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write(path: Path, rows: list, raw: bytes | None = None) -> str:
    path.write_bytes(raw if raw is not None else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    return str(path)


# ---- data -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ko", "hi", "vi"])
def test_embedded_sets_are_large_varied_and_split_stably(lang):
    convs, prefs = load_conversations([f"embedded:{lang}"]), load_preferences([f"embedded:{lang}"])
    assert len(convs) >= 300 and len(prefs) >= 200
    assert {p.failure for p in prefs} == set(FAILURE_KINDS)
    categories = {c.category for c in convs}
    assert {"translate_to_en", "translate_from_en", "image_prompt", "summarize", "classify"} <= categories
    train, held = split_records(convs)
    assert 0.12 < len(held) / len(convs) < 0.28
    assert split_records(convs[:100])[1] == [c for c in held if c in convs[:100]]  # a record's side never moves
    # no templated filler: distinct word 4-grams (words kept whole, Devanagari marks included)
    for texts in ([" ".join(m["content"] for m in c.messages) for c in convs], [p.chosen for p in prefs]):
        grams = [tuple(w[i:i + 4]) for t in texts for w in [regex.findall(r"\w+", t.lower())] for i in range(len(w) - 3)]
        assert len(set(grams)) / len(grams) >= 0.9


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "assistant", "content": "x"}]}, "roles out of order at message 0"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "roles out of order"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "b"}]}, "is empty"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}, "no assistant turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}, "role 'bot'"),
    ({"text": "plain"}, "expected 'messages'"),
])
def test_bad_conversations_name_file_and_line(tmp_path, row, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = _write(tmp_path / "c.jsonl", [good, row])
    with pytest.raises(DataError, match=rf"c\.jsonl:2: .*{regex.escape(message)}"):
        load_conversations([path])


def test_bad_files_and_preferences_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"p\.jsonl:1: missing 'chosen'"):
        load_preferences([_write(tmp_path / "p.jsonl", [{"prompt": "q", "rejected": "r"}])])
    with pytest.raises(DataError, match="unknown failure 'rude'"):
        load_preferences([_write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "c", "rejected": "r", "failure": "rude"}])])
    with pytest.raises(DataError, match=r"u\.jsonl:2: invalid UTF-8"):
        load_conversations([_write(tmp_path / "u.jsonl", [], raw=b'{"prompt": "a", "completion": "b"}\n\xff\xfe\n')])
    with pytest.raises(DataError, match="empty"):
        load_conversations([_write(tmp_path / "e.jsonl", [], raw=b"\n\n")])
    with pytest.raises(DataError, match="no such file"):
        load_conversations([str(tmp_path / "missing.jsonl")])
    csv_path = tmp_path / "qa.csv"
    csv_path.write_text("Q,A,label\n안녕?,안녕하세요!,0\n밥 먹었어?,네 먹었어요.,0\n", encoding="utf-8")
    convs = load_conversations([str(csv_path)])
    assert [c.messages[-1]["content"] for c in convs] == ["안녕하세요!", "네 먹었어요."]
    csv_path.write_text("x,y\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"qa\.csv:1: no question/answer columns"):
        load_conversations([str(csv_path)])
    assert check_messages([{"role": "user", "content": "q"}], "w", end_with_assistant=False)
    assert in_heldout("abc") == in_heldout("abc")


# ---- language consistency and rewards -------------------------------------------------------------


def test_language_consistency_scores_the_answers_language():
    assert language_consistency("오늘 날씨 어때?", "오늘은 맑아요.") == 1.0
    assert language_consistency("오늘 날씨 어때?", "It is sunny today.") == 0.0
    assert 0.1 < language_consistency("오늘 날씨 어때?", "오늘은 맑아요. But it will rain tomorrow.") < 0.9
    assert language_consistency("आज मौसम कैसा है?", "आज धूप खिली है।") == 1.0
    assert language_consistency("Hôm nay trời thế nào?", "Hôm nay trời nắng đẹp.") == 1.0
    assert language_consistency("Hôm nay trời thế nào?", "It is sunny today.") == 0.0
    assert language_consistency("Dịch sang tiếng Anh: xin chào", "Hello", expected="en") == 1.0
    assert language_consistency("안녕", "") == 0.0


def test_grpo_rewards_take_trls_arguments_and_combine_with_weights(tmp_path):
    from tongues.instruct.grpo import language_consistency_reward, length_reward, parse_rewards

    prompts = [[{"role": "user", "content": "오늘 날씨 어때?"}]] * 2
    completions = [[{"role": "assistant", "content": "맑아요."}], [{"role": "assistant", "content": "Sunny."}]]
    assert language_consistency_reward(prompts, completions, completion_ids=None, answer_lang=["ko", "ko"]) == [1.0, 0.0]
    assert length_reward(prompts, [[{"role": "assistant", "content": "a" * 5}]]) == [0.5]
    parsed = parse_rewards("language_consistency,length=0.2")
    assert [(n, w) for n, _, w in parsed] == [("language_consistency", 1.0), ("length", 0.2)]
    with pytest.raises(ConfigError, match="'politeness': unknown reward"):
        parse_rewards("politeness")
    with pytest.raises(ConfigError, match="not a reward model directory"):
        parse_rewards(f"model:{tmp_path}")


# ---- TRL config -------------------------------------------------------------------------------------


def test_trl_config_defaults_and_set_keys(tmp_path):
    from trl import SFTConfig

    from tongues.instruct.training import fast_bf16_here, parse_sets, trl_config

    cfg = trl_config(SFTConfig, tmp_path, params=1_000_000, seed=3,
                     overrides=parse_sets(["num_train_epochs=3", "learning_rate=1e-4"]))
    # CPU, small model; bf16 only on a CPU with fast bf16 matmuls (AMX / AVX512-BF16), never TRL's bf16=True
    assert cfg.use_cpu and cfg.bf16 is fast_bf16_here() and cfg.gradient_checkpointing is False
    assert trl_config(SFTConfig, tmp_path, params=1, seed=0, precision="fp32").bf16 is False
    assert cfg.num_train_epochs == 3 and cfg.learning_rate == 1e-4 and cfg.report_to == []
    assert trl_config(SFTConfig, tmp_path, params=200_000_000, seed=0).gradient_checkpointing is True
    with pytest.raises(ConfigError, match=r"--set learning_rat: not a SFTConfig key \(did you mean learning_rate"):
        trl_config(SFTConfig, tmp_path, params=1, seed=0, overrides={"learning_rat": 1.0})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_sets(["epochs"])


def test_the_chat_template_trains_exactly_the_assistant_tokens(tmp_path):
    """Every assistant turn's content and its <|im_end|> are in the mask; nothing else is."""
    from tongues.instruct.training import load_tokenizer

    tok = load_tokenizer(make_tiny_model(tmp_path / "m"))
    messages = [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "안녕하세요"},
                {"role": "assistant", "content": "안녕하세요. 반갑습니다."}, {"role": "user", "content": "서울은?"},
                {"role": "assistant", "content": "대한민국의 수도입니다."}]
    enc = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    rendered = tok.apply_chat_template(messages, tokenize=False)
    spans, at = [], 0
    for m in messages:  # where each assistant content + <|im_end|> sits in the rendered text
        if m["role"] == "assistant":
            start = rendered.index(m["content"] + "<|im_end|>", at)
            at = start + len(m["content"]) + len("<|im_end|>")
            spans.append((start, at))
    offsets = tok(rendered, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    expected = [int(any(lo <= s_ < hi for lo, hi in spans)) for s_, e_ in offsets]
    assert enc["assistant_masks"] == expected and sum(expected) > 0
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m].count(end) == 2
    assert "generation" not in rendered and rendered.count("<|im_start|>") == 5  # the markers render nothing


# ---- the stages on a tiny model ---------------------------------------------------------------------


def _toy_data(root: Path) -> dict[str, str]:
    """Korean conversations and preference pairs, enough for a held-out share."""
    topics = ["날씨", "음식", "여행", "운동", "책", "음악", "영화", "공부", "가족", "친구", "바다", "산"]
    convs, prefs = [], []
    for i in range(60):
        t = topics[i % len(topics)]
        convs.append({"id": f"c{i}", "messages": [{"role": "user", "content": f"{t}에 대해 말해 줘 {i}"},
                                                  {"role": "assistant", "content": f"{t}는 좋아요. 오늘도 {t} 이야기를 해요."}]})
        prefs.append({"id": f"p{i}", "prompt": f"{t} 이야기 {i}", "chosen": f"{t}는 정말 좋아요.",
                      "rejected": f"I like {t} very much.", "failure": "wrong_language"})
    return {"conv": _write(root / "conv.jsonl", convs), "pref": _write(root / "pref.jsonl", prefs)}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from tongues.instruct.stage import Job, run_job

    root = tmp_path_factory.mktemp("instruct")
    base = make_tiny_model(root / "base", context=128)
    data = _toy_data(root)
    quick = {"max_steps": 3, "save_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 4}
    quiet = lambda _m: None  # noqa: E731
    sft = run_job(Job("sft", base, [data["conv"]], root / "sft", overrides=quick, max_eval=8, max_new_tokens=8), quiet)
    rm = run_job(Job("reward", root / "sft" / "model", [data["pref"]], root / "rm", overrides=quick), quiet)
    dpo = run_job(Job("dpo", root / "sft" / "model", [data["pref"]], root / "dpo", overrides=quick,
                      reward_model=root / "rm" / "model", eval_data=[data["conv"]], max_eval=8, max_new_tokens=8), quiet)
    grpo = run_job(Job("grpo", root / "dpo" / "model", [data["conv"]], root / "grpo",
                       overrides={**quick, "max_completion_length": 8, "num_generations": 2},
                       rewards=f"language_consistency,model:{root / 'rm' / 'model'}=0.5,length=0.2",
                       reward_model=root / "rm" / "model", max_eval=8, max_new_tokens=8), quiet)
    return root, data, {"sft": sft, "reward": rm, "dpo": dpo, "grpo": grpo}


def test_every_stage_writes_a_plain_transformers_directory_with_its_lineage(chain):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    root, _, metrics = chain
    for stage in ("sft", "dpo", "grpo"):
        model = AutoModelForCausalLM.from_pretrained(root / stage / "model")
        tok = AutoTokenizer.from_pretrained(root / stage / "model")
        assert "{% generation %}" in tok.chat_template and model.config.model_type == "llama"
    rm = AutoModelForSequenceClassification.from_pretrained(root / "rm" / "model")
    assert rm.config.num_labels == 1
    lineage = json.loads((root / "grpo" / "model" / "lineage.json").read_text())
    assert [e["stage"] for e in lineage] == ["base", "sft", "dpo", "grpo"]
    card = (root / "grpo" / "model" / "README.md").read_text()
    assert "base → sft → dpo → grpo" in card and "language_consistency" in card
    for stage, m in metrics.items():
        assert m["steps"] == 3, stage
        assert (root / {"reward": "rm"}.get(stage, stage) / "train.jsonl").exists()
    assert 0 <= metrics["reward"]["heldout_accuracy"] <= 1 and "wrong_language" in metrics["reward"]["heldout_accuracy_by_failure"]
    assert metrics["dpo"]["heldout_reward_accuracy"] is not None
    for stage in ("sft", "dpo", "grpo"):
        m = metrics[stage]
        assert {"language_consistency", "language_consistency_before", "chrf", "alignment_tax"} <= set(m)
    assert 0 <= metrics["dpo"]["win_rate_vs_base"] <= 1


def test_sft_labels_only_the_assistant_tokens(chain):
    """The SFT dataset TRL built: every label that is not -100 is an assistant token."""
    from transformers import AutoTokenizer

    root, data, _ = chain
    tok = AutoTokenizer.from_pretrained(root / "sft" / "model")
    conv = load_conversations([data["conv"]])[0]
    enc = tok.apply_chat_template(conv.messages, return_assistant_tokens_mask=True, return_dict=True)
    assert 0 < sum(enc["assistant_masks"]) < len(enc["input_ids"])


def test_an_interrupted_stage_resumes_and_a_finished_one_is_not_retrained(chain):
    import shutil

    from tongues.instruct.stage import Job, run_job

    root, data, metrics = chain
    job = Job("reward", root / "sft" / "model", [data["pref"]], root / "rm",
              overrides={"max_steps": 3, "save_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 4})
    assert run_job(job, lambda _m: None) == json.loads((root / "rm" / "metrics.json").read_text())  # done: skipped
    # a run killed after its step-2 checkpoint: no model yet; the same command resumes there
    out = root / "rm-resume"
    quick = {"save_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 4}
    run_job(Job("reward", root / "sft" / "model", [data["pref"]], out, overrides={**quick, "max_steps": 2}), lambda _m: None)
    shutil.rmtree(out / "model")
    (out / "metrics.json").unlink()
    again = run_job(Job("reward", root / "sft" / "model", [data["pref"]], out, overrides={**quick, "max_steps": 3}),
                    lambda _m: None)
    assert again["resumed_from"].endswith("checkpoint-2") and again["steps"] == 3
    logged = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3] and (out / "model" / "config.json").exists()


def test_lora_is_merged_at_export(chain, tmp_path):
    import torch
    from safetensors.torch import load_file

    from tongues.instruct.stage import Job, run_job

    root, data, _ = chain
    run_job(Job("sft", root / "base", [data["conv"]], tmp_path / "lora", lora={"r": 4, "alpha": 8, "dropout": 0.0},
                overrides={"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 0.05}, max_eval=4,
                max_new_tokens=4), lambda _m: None)
    files = {p.name for p in (tmp_path / "lora" / "model").iterdir()}
    assert "model.safetensors" in files and not any("adapter" in f for f in files)
    merged, base = load_file(tmp_path / "lora" / "model" / "model.safetensors"), load_file(root / "base" / "model.safetensors")
    assert set(merged) == set(base)  # plain Llama weights, no lora_A / lora_B
    assert any(not torch.equal(merged[k], base[k]) for k in base)


def test_cli_errors_are_one_line(chain, capsys, tmp_path):
    from tongues.cli import main

    root, data, _ = chain
    assert main(["sft", "--base", str(root / "base"), "--data", data["conv"], "--out", str(tmp_path / "x"),
                 "--set", "num_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set num_epochs: not a SFTConfig key") and err.count("\n") == 1
    assert main(["dpo", "--base", str(tmp_path / "nope"), "--data", data["pref"], "--out", str(tmp_path / "y")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_recipe_stages_follow_pretraining_in_order(tmp_path):
    from tongues.config import Recipe, validate
    from tongues.run import build_stages

    recipe = validate(Recipe, {
        "name": "r", "corpora": {"ko": {"lang": "ko", "sources": ["embedded:ko"]}},
        "tokenizers": {"ko": {"corpora": ["ko"], "vocab_size": 512}},
        "models": {"ko": {"tokenizer": "ko", "corpora": {"ko": 1.0}, "instruct": {
            "sft": {"data": ["embedded:ko"], "set": {"num_train_epochs": 1}}, "reward": {"data": ["embedded:ko"]},
            "dpo": {"data": ["embedded:ko"]}, "grpo": {"data": ["embedded:ko"], "rewards": "language_consistency,model:reward"}}}},
    }, "r.yaml")
    stages = {s.name: s for s in build_stages(recipe)}
    names = list(stages)
    assert names.index("pretrain-ko") < names.index("sft-ko") < names.index("reward-ko") < names.index("dpo-ko") < names.index("grpo-ko")
    assert stages["sft-ko"].inputs == ["pretrain-ko"] and stages["reward-ko"].inputs == ["sft-ko"]
    assert stages["dpo-ko"].inputs == ["sft-ko", "reward-ko"] and stages["grpo-ko"].inputs == ["dpo-ko", "reward-ko"]
    with pytest.raises(ConfigError, match=r"models\.ko\.instruct\.sft\.lora: .*unknown key"):
        validate(Recipe, {"name": "r", "corpora": {"ko": {"lang": "ko", "sources": ["embedded:ko"]}},
                          "tokenizers": {"ko": {"corpora": ["ko"]}},
                          "models": {"ko": {"tokenizer": "ko", "corpora": {"ko": 1.0},
                                            "instruct": {"sft": {"data": ["embedded:ko"], "lora": {"rank": 4}}}}}}, "r.yaml")


def test_eval_chat_task_answers_the_held_out_conversations(tmp_path):
    from tongues.eval.documents import load_split
    from tongues.eval.registry import embedded_tasks, resolve_tasks
    from tongues.eval.scoring import Scorer
    from tongues.eval.task_kinds import TaskInput, run_task
    from tongues.instruct.data import in_heldout

    spec = resolve_tasks(["ko_chat"])[0]
    docs = load_split(spec, "test")
    held = split_records(load_conversations(["embedded:ko"]))[1]
    assert [d["id"] for d in docs] == [c.id for c in held] and all(in_heldout(d["id"]) for d in docs)
    model = make_tiny_model(tmp_path / "m", context=1024)  # the tiny tokenizer spells Hangul in bytes: long prompts
    outcome = run_task(TaskInput(spec, docs[:6]), Scorer.load(model, progress=False))
    assert set(outcome.metrics) >= {"language_consistency", "language_consistency_mean", "chrf"}
    assert 0 <= outcome.metrics["language_consistency"] <= 1 and len(outcome.records) == outcome.n_items
    assert "ko_chat" not in embedded_tasks(["ko"]) and "ko_chat" in embedded_tasks(["ko"], chat=True)


def test_a_saved_stage_model_keeps_the_bases_sentencepiece_model(tmp_path):
    """The chat stages' models carry the base's tokenizer.model (GGUF export and SentencePiece users
    read it; the vocabulary does not change in training)."""
    from transformers import AutoModelForCausalLM

    from tongues.instruct.training import load_tokenizer, save_model

    base = make_tiny_model(tmp_path / "base")
    (base / "tokenizer.model").write_bytes(b"sentencepiece model bytes")
    out = save_model(AutoModelForCausalLM.from_pretrained(base), load_tokenizer(base), tmp_path / "sft", stage="sft",
                     base=base, data=["embedded:ko"], metrics={}, card="card")
    assert (out / "tokenizer.model").read_bytes() == b"sentencepiece model bytes"
