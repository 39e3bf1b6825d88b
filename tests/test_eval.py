"""The evaluation harness: scoring, rolling windows, metrics, significance, reports, the stage.

Models are tiny random-init LlamaForCausalLM with a byte-level BPE tokenizer built in-process.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tongues.eval.config import EvalConfig
from tongues.eval.registry import load_task_file
from tongues.eval.scoring import Scorer, rolling_windows, shared_rows
from tongues.eval.significance import ItemScores, bootstrap_ci, paired_bootstrap
from tongues.eval.task_kinds import TaskInput, multiple_choice, score_choices

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
TEXT = ["안녕하세요 저는 학생입니다. 질문 답변 지문", "नमस्ते मैं छात्र हूँ। प्रश्न उत्तर",
        "Xin chào, tôi là sinh viên. Câu hỏi Trả lời"]


def make_tokenizer(out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(str(out))
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    return out


def make_model(out: Path, seed: int = 0, context: int = 48, languages: list[str] | None = None) -> Path:
    """A tiny HF model directory (safetensors + tokenizer); `languages` writes tongues_tokenizer.json."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    make_tokenizer(out)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=360, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init: sharper, more distinct predictions
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    model.save_pretrained(str(out))
    if languages:
        (out / "tongues_tokenizer.json").write_text(json.dumps({"languages": languages}), encoding="utf-8")
    return out


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "tiny", seed=0, languages=["ko"])


@pytest.fixture(scope="module")
def scorer(model_dir) -> Scorer:
    return Scorer.load(model_dir, device="cpu", batch_size="auto", progress=False)


def direct_logprobs(scorer: Scorer, ids: list[int]) -> torch.Tensor:
    """log P(ids[i] | ids[:i]) for i >= 1, by one plain forward pass."""
    with torch.no_grad():
        logits = scorer.model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits[:-1], -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


# ---- rolling windows ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 7, 64])
@pytest.mark.parametrize("stride_share", [None, 1, 0.5, 0.25])
def test_rolling_windows_score_every_token_exactly_once(window, stride_share):
    for n in [0, 1, 2, window - 1, window, window + 1, 3 * window + 5, 1000]:
        if n < 0:
            continue
        stride = None if stride_share is None else max(1, int(window * stride_share))
        spans = rolling_windows(n, window, stride)
        scored = [t for start, end, k in spans for t in range(end - k, end)]
        assert scored == list(range(n))  # each token once, in order
        for i, (start, end, k) in enumerate(spans):
            assert 0 <= start < end and end - start <= window  # the input fits the window
            assert 1 <= k <= end - start
            if i > 0:
                # A later window is filled with context up to the window (or the document start).
                assert end - start == min(window, end)
                assert k <= (stride or window)


def test_rolling_windows_match_lm_eval_default():
    lm_utils = pytest.importorskip("lm_eval.utils")
    tokens = list(range(100, 100 + 203))
    for window in (1, 5, 16, 64, 300):
        theirs = [lm_utils.make_disjoint_window(w) for w in
                  lm_utils.get_rolling_token_windows(tokens, prefix_token=-1, max_seq_len=window, context_len=1)]
        sequence = [-1, *tokens]
        ours = [(sequence[s:e + 1], k) for s, e, k in rolling_windows(len(tokens), window)]
        assert [(ctx + pred)[:-1] for ctx, pred in theirs] == [full[:-1] for full, _ in ours]
        assert [pred for _, pred in theirs] == [full[len(full) - k:] for full, k in ours]


def test_rolling_windows_reject_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        rolling_windows(10, 4, 5)


# ---- scoring -----------------------------------------------------------------------------------


def test_bits_per_byte_equals_direct_sum_of_token_logprobs(scorer):
    text = "Xin chào, tôi là sinh viên."
    ids = scorer.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < scorer.max_length  # one window: the direct sum from BOS is the reference
    direct = direct_logprobs(scorer, [scorer.tokenizer.bos_token_id, *ids]).sum().item()
    (logprob, n_tokens), = scorer.loglikelihood_rolling([text])
    assert n_tokens == len(ids)
    assert logprob == pytest.approx(direct, abs=1e-4)
    from tongues.eval.task_kinds import bits_per_byte

    spec = SimpleNamespace(task="t", path="t.yaml", kind="bits_per_byte", doc_to_target="text")
    outcome = bits_per_byte(TaskInput(spec, [{"text": text}]), scorer)
    expected = -direct / (math.log(2) * len(text.encode("utf-8")))
    assert outcome.metrics["bits_per_byte"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("stride", [None, 11])
def test_long_documents_are_scored_window_by_window(scorer, stride):
    texts = ["안녕하세요 저는 학생입니다. " * 6, "नमस्ते मैं छात्र हूँ। " * 5, "Xin chào"]
    window = scorer.max_length
    got = scorer.loglikelihood_rolling(texts, stride=stride)
    for text, (logprob, n_tokens) in zip(texts, got, strict=True):
        ids = [scorer.prefix_token_id, *scorer.tokenizer(text, add_special_tokens=False)["input_ids"]]
        assert n_tokens == len(ids) - 1
        expected = 0.0
        for start, end, k in rolling_windows(len(ids) - 1, window, stride):
            expected += direct_logprobs(scorer, ids[start:end + 1])[-k:].sum().item()
        assert logprob == pytest.approx(expected, abs=1e-3)
    assert len(texts[0]) > 0 and got[0][1] > window  # the long ones did need several windows


def test_loglikelihood_matches_direct_computation_and_batching(scorer):
    pairs = [("질문: 안녕하세요\n답변:", " 학생"), ("", "Xin chào"), ("प्रश्न:  ", "उत्तर"), ("Câu hỏi", " Trả lời"),
             ("Câu hỏi", " T"), ("Câu hỏi", " x")]  # one-token answers after the same prompt share a row
    batched = scorer.loglikelihood(pairs)
    one_by_one = Scorer(scorer.model, scorer.tokenizer, batch_size=1, progress=False).loglikelihood(pairs)
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    for (context, continuation), value in zip(pairs, batched, strict=True):
        ctx, cont = scorer.encode_pair(context, continuation)
        expected = direct_logprobs(scorer, ctx + cont)[-len(cont):].sum().item()
        assert value == pytest.approx(expected, abs=1e-4)


def test_shared_rows_put_every_prefix_with_an_extension():
    rng = random.Random(3)
    inputs = [[rng.randint(0, 2) for _ in range(rng.randint(1, 5))] for _ in range(300)]
    rows = shared_rows(inputs)
    served = sorted(i for _, members in rows for i in members)
    assert served == list(range(len(inputs)))  # every input served once
    for row, members in rows:
        assert all(row[:len(inputs[i])] == inputs[i] for i in members)
    # Maximal sharing: no row's sequence is a prefix of another row's.
    seqs = [tuple(row) for row, _ in rows]
    assert not any(a != b and b[:len(a)] == a for a in seqs for b in seqs)


def test_encode_pair_follows_lm_eval_conventions(scorer):
    ctx, cont = scorer.encode_pair("", "Xin chào")
    assert ctx == [scorer.prefix_token_id] == [2]  # empty context: predicted from BOS
    ctx, cont = scorer.encode_pair("답변: ", "예")  # trailing space moves to the continuation
    assert scorer.tokenizer.decode(ctx) == "답변:" and scorer.tokenizer.decode(cont) == " 예"


# ---- multiple choice ---------------------------------------------------------------------------


class FakeScorer:
    """Returns fixed log-likelihoods per continuation: the metric logic alone is under test."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.seen: list[tuple[str, str]] = []

    def loglikelihood(self, pairs, desc=""):
        self.seen += list(pairs)
        return [self.table[cont] for _, cont in pairs]


def test_acc_and_acc_norm_on_hand_built_items(tmp_path):
    task_file = tmp_path / "toy_mc.yaml"
    task_file.write_text(
        "task: toy_mc\nlanguage: ko\nversion: 1\nkind: multiple_choice\nsummary: toy\n"
        "data: {files: {test: items.jsonl}}\n"
        "doc_to_text: \"질문: {{q}}\\n답변:\"\ndoc_to_choice: choices\ndoc_to_target: gold\n", encoding="utf-8")
    spec = load_task_file(task_file)
    docs = [
        # Item 1: "가" wins on total log-likelihood and per byte: both right.
        {"q": "하나", "choices": ["가", "나나나나"], "gold": 0},
        # Items 2 and 3: the short choice has the higher total (-1 > -2) but the long one the
        # higher score per byte (-2 / 12 bytes > -1 / 3 bytes). Item 2 (gold short): acc right,
        # acc_norm wrong; item 3 (gold long): acc wrong, acc_norm right.
        {"q": "둘", "choices": ["다", "라라라라"], "gold": 0},
        {"q": "셋", "choices": ["마", "바바바바"], "gold": 1},
    ]
    table = {" 가": -1.0, " 나나나나": -9.0, " 다": -1.0, " 라라라라": -2.0, " 마": -1.0, " 바바바바": -2.0}
    fake = FakeScorer(table)
    outcome = multiple_choice(TaskInput(spec, docs), fake)
    assert outcome.metrics["acc"] == pytest.approx(2 / 3)
    assert outcome.metrics["acc_norm"] == pytest.approx(2 / 3)
    assert [r["pred"] for r in outcome.records] == [0, 0, 0]
    assert [r["pred_norm"] for r in outcome.records] == [0, 1, 1]
    assert fake.seen[0] == ("질문: 하나\n답변:", " 가")  # native prompt + target delimiter


def test_fewshot_examples_are_fixed_by_seed_and_never_the_item(tmp_path):
    from tongues.eval.runner import task_inputs

    docs = [{"q": f"q{i}", "choices": [f"a{i}", f"b{i}"], "gold": i % 2} for i in range(12)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (tmp_path / "toy_mc.yaml").write_text(
        "task: toy_mc\nlanguage: vi\nversion: 1\nkind: multiple_choice\nsummary: toy\n"
        f"data: {{files: {{test: {tmp_path / 'items.jsonl'}}}}}\ndoc_to_text: \"Câu hỏi: {{{{q}}}}\\nTrả lời:\"\n"
        "doc_to_choice: choices\ndoc_to_target: gold\n", encoding="utf-8")

    def contexts(**settings):
        config = EvalConfig(tasks=["toy_mc"], num_fewshot=3, **settings)
        task, = task_inputs([load_task_file(tmp_path / "toy_mc.yaml")], config, log=lambda m: None)
        return task, [task.context(i) for i in range(len(task.docs))]

    task, full = contexts(seed=7)
    _, limited = contexts(seed=7, limit=5)
    _, reseeded = contexts(seed=8)
    assert limited == full[:5]  # --limit does not change an item's examples
    assert reseeded != full
    for i in range(12):
        shots = task.shots(i)
        assert len(shots) == 3 and docs[i] not in shots
    shot = task.shots(1)[0]
    assert full[1].startswith(f"Câu hỏi: {shot['q']}\nTrả lời: {shot['choices'][shot['gold']]}\n\n")
    assert full[1].endswith("\n\nCâu hỏi: q1\nTrả lời:")


def test_score_choices_ties_go_to_the_first_choice():
    outcome = score_choices("t", [[-1.0, -1.0]], [0], [[3, 3]])
    assert outcome.metrics == {"acc": 1.0, "acc_norm": 1.0}


# ---- significance ------------------------------------------------------------------------------


def test_paired_bootstrap_flags_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    n = 300
    base = rng.random(n) < 0.5
    better = base | (rng.random(n) < 0.4)  # right on every item base gets, and on more
    real = paired_bootstrap(ItemScores(better.astype(float)), ItemScores(base.astype(float)), 1000, 0)
    assert real.significant and real.difference > 0.1 and real.ci[0] > 0 and real.p_value < 0.01
    # Null: the same accuracy, the right answers on different items.
    swapped = base.copy()
    flip_on, flip_off = np.flatnonzero(~base)[:20], np.flatnonzero(base)[:20]
    swapped[flip_on], swapped[flip_off] = True, False
    null = paired_bootstrap(ItemScores(swapped.astype(float)), ItemScores(base.astype(float)), 1000, 0)
    assert null.difference == 0 and not null.significant and null.p_value > 0.5
    assert null.ci[0] < 0 < null.ci[1]


def test_paired_bootstrap_on_bits_per_byte_ratio():
    rng = np.random.default_rng(1)
    n_bytes = rng.integers(100, 1000, 50).astype(float)
    nll_a = n_bytes * 0.8 * (1 + 0.05 * rng.standard_normal(50))
    nll_b = nll_a * 1.03  # model b is 3% worse on every document
    a, b = ItemScores(nll_a, n_bytes, 1 / math.log(2)), ItemScores(nll_b, n_bytes, 1 / math.log(2))
    assert a.value() == pytest.approx(nll_a.sum() / n_bytes.sum() / math.log(2))
    result = paired_bootstrap(a, b, 500, 0)
    assert result.significant and result.difference < 0
    low, high = bootstrap_ci(a, 500, 0)
    assert low < a.value() < high


# ---- the whole run: CLI, report, stage ---------------------------------------------------------


def test_cli_compares_two_models_and_writes_a_report(tmp_path, model_dir, capsys):
    from tongues.cli import main

    other = make_model(tmp_path / "other", seed=1)
    out = tmp_path / "report"
    code = main(["eval", "--model", str(model_dir), "--model", str(other), "--tasks", "ko_heldout_bpb,ko_mc",
                 "--limit", "6", "--out", str(out), "--quiet", "--bootstrap", "200"])
    assert code == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    from tongues.manifest import sha256_file

    assert results["models"]["tiny"]["sha256"] == sha256_file(model_dir / "model.safetensors")
    assert results["tasks"]["ko_mc"]["version"] == 1 and results["tasks"]["ko_mc"]["n_items"] == 6
    assert results["tasks"]["ko_mc"]["seed"] == 1234
    bpb = results["results"]["tiny"]["ko_heldout_bpb"]
    low, high = bpb["ci95"]["bits_per_byte"]
    assert low <= bpb["metrics"]["bits_per_byte"] <= high
    pairs = {(c["task"], c["metric"]) for c in results["comparisons"]}
    assert ("ko_mc", "acc") in pairs and ("ko_heldout_bpb", "bits_per_byte") in pairs
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| ko_mc | ko | 1 | 6 | acc ↑ |" in table and "tiny" in table and "other" in table
    for name in ("bits_per_byte.png", "accuracy.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "samples" / "tiny" / "ko_mc.jsonl").read_text().splitlines()) == 6
    assert "ko_heldout_bpb" in capsys.readouterr().out


def test_stage_evaluates_the_model_and_rewrites_its_card(tmp_path):
    from tongues.eval import stage

    pretrain = tmp_path / "pretrain-ko"
    make_model(pretrain / "model", seed=2, languages=["ko"])
    (pretrain / "model" / "README.md").write_text("# tiny-ko\n\nA model card.\n", encoding="utf-8")
    config = EvalConfig(limit=3, bootstrap=100)  # no tasks: the embedded ones of the model's corpora
    recipe = SimpleNamespace(models={"ko": SimpleNamespace(corpora={"wiki-ko": 1.0})},
                             corpora={"wiki-ko": SimpleNamespace(lang="ko")})
    ctx = SimpleNamespace(config=config, out_dir=tmp_path / "eval-ko", inputs={"pretrain-ko": pretrain},
                          stage=SimpleNamespace(name="eval-ko", extra={}), recipe=recipe, resuming=False,
                          input_of_kind=lambda kind: {"pretrain-ko": pretrain})
    metrics = stage.run_stage(ctx)
    assert set(metrics) >= {"ko_heldout_bpb", "ko_mc", "ko_gen", "ko_tokenizer_parity", "headline"}
    assert not any(name.startswith(("hi_", "vi_")) for name in metrics)
    assert (tmp_path / "eval-ko" / "results.json").is_file()
    assert metrics["ko_mc"]["acc"] in (0, 1 / 3, 2 / 3, 1)
    assert "ko bpb" in metrics["headline"]
    card = (pretrain / "model" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# tiny-ko") and card.count("## Evaluation") == 1 and "ko_mc (v1)" in card
    again = stage.run_stage(ctx)  # resumes from the cache, re-writes the section in place
    assert again["ko_mc"] == metrics["ko_mc"]
    assert (pretrain / "model" / "README.md").read_text(encoding="utf-8").count("## Evaluation") == 1


def test_generation_stops_at_the_stop_string(scorer, tmp_path):
    from tongues.eval.task_kinds import generation, normalize_answer

    (tmp_path / "toy_gen.yaml").write_text(
        "task: toy_gen\nlanguage: vi\nversion: 1\nkind: generation\nsummary: toy\n"
        "data: {files: {test: x.jsonl}}\ndoc_to_text: prompt\ndoc_to_target: reference\n"
        "generation: {until: ['\\n', 'a'], max_new_tokens: 8}\n", encoding="utf-8")
    spec = load_task_file(tmp_path / "toy_gen.yaml")
    docs = [{"prompt": "Thủ đô của Việt Nam là", "reference": "Hà Nội"}, {"prompt": "Xin", "reference": "chào"}]
    outcome = generation(TaskInput(spec, docs), scorer)
    for record in outcome.records:
        assert "\n" not in record["prediction"] and "a" not in record["prediction"]
    assert 0 <= outcome.metrics["chrf"] <= 100 and outcome.metrics["exact_match"] in (0.0, 0.5, 1.0)
    assert normalize_answer(" Hà Nội. ") == normalize_answer("hà nội") == "hà nội"


# ---- agreement with lm-evaluation-harness (slow: lm-eval's own pipeline) ------------------------


@pytest.mark.slow
def test_agrees_with_lm_evaluation_harness(tmp_path, model_dir, scorer):
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tongues.eval.harness import export_task
    from tongues.eval.registry import resolve_tasks
    from tongues.eval.task_kinds import run_task

    rng = random.Random(0)
    words = TEXT[0].split() + TEXT[2].split()
    docs = [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 60)))} for _ in range(30)]
    (tmp_path / "bpb.txt").write_text("\n\n".join(d["text"] for d in docs), encoding="utf-8")
    (tmp_path / "toy_bpb.yaml").write_text(
        f"task: toy_bpb\nlanguage: vi\nversion: 1\nkind: bits_per_byte\nsummary: toy\n"
        f"data: {{files: {{test: {tmp_path / 'bpb.txt'}}}}}\ndoc_to_target: text\n", encoding="utf-8")
    bpb_spec = load_task_file(tmp_path / "toy_bpb.yaml")
    mc_spec = resolve_tasks(["ko_mc"])[0]
    from tongues.eval.documents import load_split

    mc_docs = load_split(mc_spec, "test")[:40]
    names = [export_task(bpb_spec, docs, tmp_path / "lm_eval"), export_task(mc_spec, mc_docs, tmp_path / "lm_eval")]
    lm = HFLM(pretrained=scorer.model, tokenizer=scorer.tokenizer, batch_size=4)
    theirs = simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(tmp_path / "lm_eval")),
                             num_fewshot=0)["results"]
    ours_bpb = run_task(TaskInput(bpb_spec, docs), scorer).metrics["bits_per_byte"]
    ours_mc = run_task(TaskInput(mc_spec, mc_docs), scorer).metrics
    assert ours_bpb == pytest.approx(theirs[names[0]]["bits_per_byte,none"], rel=0.005)
    assert ours_mc["acc"] == theirs[names[1]]["acc,none"]
    assert ours_mc["acc_norm"] == theirs[names[1]]["acc_bytes,none"]


def test_model_labels_and_stage_directories(tmp_path, model_dir):
    from tongues.eval.runner import model_directory, model_names

    assert model_names(["runs/demo/pretrain-ko/model", "a/x", "b/x", "c/y", "c/y"]) == \
        ["pretrain-ko", "a/x", "b/x", "c/y#4", "c/y#5"]
    stage_dir = tmp_path / "pretrain-ko"
    (stage_dir / "model").mkdir(parents=True)
    (stage_dir / "model" / "config.json").write_text("{}", encoding="utf-8")
    assert model_directory(stage_dir) == stage_dir / "model"  # --model accepts the stage directory
    assert model_directory(model_dir) == model_dir
