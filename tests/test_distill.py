"""Distillation: the chunked KD loss against a full-logits reference, the teacher cache, the
layer-dropped student, logit KD through the pretraining loop (with exact resume), the report, the
TRL methods on tiny models, and the errors a user meets."""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import make_tiny_model
from pretrain_fixtures import losses, tiny_config, tokenized

from tongues.errors import ConfigError, DataError
from tongues.lm.distill_loss import KDSettings, kd_loss, reference_kd_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("objective", ["fkl", "rkl", "jsd:0.3"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_kd_loss_equals_the_full_logits_loss_and_its_gradients(objective, chunk):
    torch.manual_seed(0)
    n, d, v, k = 40, 8, 30, 6
    hidden = torch.randn(n, d, requires_grad=True)
    weight = torch.randn(v, d, requires_grad=True)
    targets = torch.randint(0, v, (n,))
    targets[[3, 17]] = -100
    teacher_logits = torch.randn(n, v) * 2
    settings = KDSettings(alpha=0.3, temperature=2.0, objective=objective, chunk=chunk).check()
    logp = torch.log_softmax(teacher_logits / 2.0, -1)
    top, ids = logp.topk(k, -1)
    rest = torch.log1p(-top.exp().sum(-1))
    ours = kd_loss(hidden, weight, targets, (ids, top, rest), settings)
    keep = targets != -100
    ref = reference_kd_loss((hidden @ weight.t())[keep], targets[keep], teacher_logits[keep], k, settings)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(torch.autograd.grad(ours, [hidden, weight]), torch.autograd.grad(ref, [hidden, weight]), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():  # validation: the student's own cross-entropy only
        ce = kd_loss(hidden, weight, targets, (ids, top, rest), settings)
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(hidden @ weight.t(), targets,
                                                                         ignore_index=-100, reduction="sum").item(), rel=1e-5)


def test_kd_settings_are_checked():
    with pytest.raises(ConfigError, match="use fkl, rkl or jsd:BETA"):
        KDSettings(objective="kl").check()
    with pytest.raises(ConfigError, match="alpha in"):
        KDSettings(alpha=1.5).check()


def test_kept_layers_are_evenly_spaced_with_both_ends():
    from tongues.distill.student import kept_layers

    assert kept_layers(8, 4) == [0, 2, 5, 7] and kept_layers(4, 2) == [0, 3] and kept_layers(6, 6) == list(range(6))
    with pytest.raises(ConfigError, match="keep between 1 and 4"):
        kept_layers(4, 5)


# ---- logit distillation through the pretraining loop ----------------------------------------------


@pytest.fixture(scope="module")
def teacher_setup(tmp_path_factory):
    from tongues.lm import pretrain as pt

    root = tmp_path_factory.mktemp("distill")
    tok, tokens = tokenized(root)
    model = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 2}
    pt.pretrain(tiny_config(model=model, max_steps=30, eval_every=30, checkpoint_every=30), {"vi": (tokens, 1.0)},
                tok, root / "teacher", seed=1)
    return root, tok, tokens, root / "teacher" / "model"


def test_teacher_cache_holds_the_teachers_top_k_per_window(teacher_setup, tmp_path):
    from transformers import AutoModelForCausalLM

    from tongues.data.tokenize import load_split
    from tongues.distill.cache import build_teacher_cache
    from tongues.lm.teacher_cache import TeacherCache

    root, _, tokens, teacher_dir = teacher_setup
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    cache = TeacherCache.open(build_teacher_cache(teacher, tokens, tmp_path / "c", seq_len=32, k=5, progress=False))
    split = load_split(tokens, "train")
    assert cache.meta["windows"] == (split.num_tokens - 1) // 32
    window = 3
    ids, logp, rest = cache.window(window)
    inputs = torch.tensor(split.tokens[window * 32:window * 32 + 32], dtype=torch.long)[None]
    with torch.no_grad():
        full = torch.log_softmax(teacher(input_ids=inputs).logits[0].float(), -1)
    top, top_ids = full.topk(5, -1)
    assert (torch.from_numpy(ids.astype("int64")) == top_ids).all()
    assert torch.allclose(torch.from_numpy(logp.astype("float32")), top, atol=2e-2)
    mass = torch.from_numpy(logp.astype("float32")).exp().sum(-1) + torch.from_numpy(rest.astype("float32")).exp()
    assert torch.allclose(mass, torch.ones(32), atol=2e-2)  # top-k plus the rest hold all the mass


def test_logit_distillation_trains_a_half_depth_student_and_reports_it(teacher_setup, tmp_path):
    from tongues.distill.assistant import DistillJob, distill

    root, tok, tokens, teacher_dir = teacher_setup
    job = DistillJob(teacher=str(teacher_dir), data=[str(tokens)], out=tmp_path / "d", student_layers=2, k=8,
                     overrides={"seq_len": 32, "global_batch_tokens": 256, "micro_batch_size": 4, "max_steps": 10,
                                "eval_every": 10, "checkpoint_every": 5, "eval_tokens": 512, "precision": "fp32",
                                "num_threads": 1, "lr": 1e-2, "warmup_steps": 2},
                     eval_tasks=[])
    metrics = distill(job, log=lambda _m: None)
    init = json.loads((tmp_path / "d" / "student_init" / "student.json").read_text())
    assert init == {"init": "layer-dropped", "teacher_layers": 4, "kept_layers": [0, 3]}
    for name in ("student", "scratch"):
        config = json.loads((tmp_path / "d" / name / "model" / "config.json").read_text())
        assert config["num_hidden_layers"] == 2
    assert metrics["student_params"] < metrics["teacher_params"]
    assert metrics["student_val_bpb"] and metrics["scratch_val_bpb"] and metrics["cache_seconds"] >= 0
    rows = metrics["comparison"]["models"]
    assert set(rows) == {"teacher", "student", "scratch"} and rows["student"]["decode_tokens_per_s"] > 0
    assert (tmp_path / "d" / "report.md").read_text().startswith("# Distillation (logits)")
    # the student started from the teacher's layers 0 and 3: its first training loss is far below the scratch's
    first = lambda run: losses(tmp_path / "d" / run)[0][1]  # noqa: E731
    assert first("student") < first("scratch")


def test_a_distilled_run_resumes_bit_for_bit(teacher_setup, tmp_path):
    from transformers import AutoModelForCausalLM

    from tongues.distill.cache import build_teacher_cache
    from tongues.lm import pretrain as pt

    _, tok, tokens, teacher_dir = teacher_setup
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    cache = build_teacher_cache(teacher, tokens, tmp_path / "cache", seq_len=32, k=4, progress=False)
    spec = {"caches": {"vi": cache}, "settings": KDSettings(alpha=0.5, objective="jsd:0.5")}
    cfg = tiny_config(max_steps=8, checkpoint_every=4, precision="fp32")
    pt.pretrain(cfg, {"vi": (tokens, 1.0)}, tok, tmp_path / "full", seed=2, export=False, teacher=dict(spec))
    pt.pretrain(cfg, {"vi": (tokens, 1.0)}, tok, tmp_path / "cut", seed=2, export=False, teacher=dict(spec), stop_after=3)
    pt.pretrain(cfg, {"vi": (tokens, 1.0)}, tok, tmp_path / "cut", seed=2, export=False, teacher=dict(spec))
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")
    plain = pt.pretrain(cfg, {"vi": (tokens, 1.0)}, tok, tmp_path / "plain", seed=2, export=False)
    assert losses(tmp_path / "plain") != losses(tmp_path / "full") and plain["steps"] == 8  # the teacher counts


def test_user_errors_are_clear(teacher_setup, tmp_path):
    from tongues.distill.assistant import DistillJob, distill

    root, tok, tokens, teacher_dir = teacher_setup
    other = make_tiny_model(tmp_path / "other")  # another tokenizer entirely
    with pytest.raises(ConfigError, match="vocabularies differ.*--method sequence or --method gold"):
        distill(DistillJob(teacher=str(teacher_dir), data=[str(tokens)], out=tmp_path / "a", student=str(other)),
                log=lambda _m: None)
    with pytest.raises(ConfigError, match="exactly one of --student"):
        distill(DistillJob(teacher=str(teacher_dir), data=[str(tokens)], out=tmp_path / "b"), log=lambda _m: None)
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF not really")
    pytest.importorskip("gguf")
    with pytest.raises(DataError, match="not a readable GGUF model"):
        distill(DistillJob(teacher=str(bad), data=[str(tokens)], out=tmp_path / "c", student_layers=1),
                log=lambda _m: None)


def test_a_student_larger_than_its_teacher_warns(teacher_setup, tmp_path):
    from tongues.distill.assistant import DistillJob, distill

    root, tok, tokens, teacher_dir = teacher_setup
    messages = []
    with pytest.warns(UserWarning, match="larger than its teacher"):
        with pytest.raises(Exception):  # noqa: B017 (stop after the warning: training is not the point)
            distill(DistillJob(teacher=str(teacher_dir), data=["nonexistent"], out=tmp_path / "w",
                               student_params=5e6, tokenizer=str(tok)), log=messages.append)
    assert any("larger than its teacher" in m for m in messages)


# ---- the TRL methods ------------------------------------------------------------------------------


def _conversations(path):
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Xin chào bạn {i}"},
                                         {"role": "assistant", "content": "Tôi khỏe, cảm ơn bạn."}]} for i in range(30)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_sequence_and_on_policy_distillation_produce_students(tmp_path):
    from tongues.distill.assistant import DistillJob, distill

    teacher = make_tiny_model(tmp_path / "teacher", context=256)
    data = _conversations(tmp_path / "c.jsonl")
    seq = distill(DistillJob(teacher=str(teacher), data=[data], out=tmp_path / "seq", method="sequence",
                             student_layers=1, overrides={"max_steps": 2, "per_device_train_batch_size": 4,
                                                          "max_new_tokens": 8}, eval_tasks=[]), log=lambda _m: None)
    assert seq["teacher_answers"] > 0 and (tmp_path / "seq" / "student" / "model" / "config.json").exists()
    answers = [json.loads(line) for line in (tmp_path / "seq" / "teacher_answers.jsonl").read_text().splitlines()]
    assert answers and answers[0]["messages"][-1]["role"] == "assistant"
    on = distill(DistillJob(teacher=str(teacher), data=[data], out=tmp_path / "on", method="on-policy",
                            student_layers=1, overrides={"max_steps": 2, "per_device_train_batch_size": 4,
                                                         "max_completion_length": 8}, eval_tasks=[]),
                 log=lambda _m: None)
    assert on["trl"]["steps"] == 2
    config = json.loads((tmp_path / "on" / "student" / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
