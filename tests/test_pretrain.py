"""Pretraining loop: exact resume, a kill during a checkpoint write, NaN / spike handling."""

from __future__ import annotations

import math
import shutil

import pytest
from pretrain_fixtures import losses, tiny_config, tokenized

from tongues.lm import checkpoint as ckpt
from tongues.lm import pretrain as pt


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tok, tokens = tokenized(tmp_path_factory.mktemp("corpus"))
    return tok, {"vi": (tokens, 1.0)}


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted 12-step run: its per-step losses are what every resumed run must reproduce."""
    tok, corpora = data
    out = tmp_path_factory.mktemp("reference")
    result = pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)
    return out, result


def test_uninterrupted_run_learns_and_reports(reference):
    out, result = reference
    got = losses(out)
    assert [s for s, _ in got] == list(range(1, 13))
    assert got[-1][1] < got[0][1] - 0.5  # it learns
    assert result["status"] == "complete" and result["skipped_steps"] == 0
    assert 0 < result["val_bpb"] < 8 and math.isfinite(result["val_loss"])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == [
        "step-00000004", "step-00000008", "step-00000012"]


def test_resume_reproduces_every_loss_bit_for_bit(data, reference, tmp_path):
    """Interrupted after step 3 and after step 8 (one mid-checkpoint-interval, one on a checkpoint)."""
    tok, corpora = data
    out = tmp_path / "run"
    first = pt.pretrain(tiny_config(), corpora, tok, out, seed=7, stop_after=3, export=False)
    assert first["status"] == "stopped" and ckpt.latest_checkpoint(out / "checkpoints").name == "step-00000003"
    pt.pretrain(tiny_config(), corpora, tok, out, seed=7, stop_after=8, export=False)
    final = pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)
    assert losses(out) == losses(reference[0])  # exact float equality, every step
    assert final["val_loss"] == reference[1]["val_loss"]


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(data, reference, tmp_path, monkeypatch):
    tok, corpora = data
    out = tmp_path / "run"
    real_save = ckpt._save_optimizer

    def dies_at_step_8(accelerator, model, optimizer, path):
        if "00000008" in path.name:
            (path / "optimizer.pt").write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
        real_save(accelerator, model, optimizer, path)

    monkeypatch.setattr(ckpt, "_save_optimizer", dies_at_step_8)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)
    monkeypatch.setattr(ckpt, "_save_optimizer", real_save)
    root = out / "checkpoints"
    assert ckpt.latest_checkpoint(root).name == "step-00000004"  # the partial step 8 is not a checkpoint
    assert (root / ".step-00000008.tmp").exists()
    from transformers import LlamaForCausalLM

    LlamaForCausalLM.from_pretrained(root / "step-00000004" / "model")  # loadable as is
    pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)  # the same command resumes
    assert not (root / ".step-00000008.tmp").exists()
    assert losses(out) == losses(reference[0])


def _inject(monkeypatch, accum: int, factors: dict[int, float]) -> None:
    """Multiply the loss of the micro-batches of the given (1-based) steps by a factor (nan, 10...)."""
    real, calls = pt.lm_loss, {"n": 0}

    def faulty(*args):
        step = calls["n"] // accum + 1
        calls["n"] += 1
        loss = real(*args)
        return loss * factors[step] if step in factors else loss

    monkeypatch.setattr(pt, "lm_loss", faulty)


def test_nan_and_spike_steps_are_skipped_and_counted(data, tmp_path, monkeypatch):
    tok, corpora = data
    _inject(monkeypatch, accum=2, factors={5: float("nan"), 10: 10.0})
    result = pt.pretrain(tiny_config(), corpora, tok, tmp_path / "run", seed=7, export=False)
    assert result["status"] == "complete" and result["skipped_steps"] == 2
    records = dict(losses(tmp_path / "run"))
    assert math.isnan(records[5]) and records[10] > 10
    assert all(math.isfinite(v) for s, v in records.items() if s != 5)  # the NaN never reached the weights
    assert math.isfinite(result["val_loss"])


def test_k_bad_steps_in_a_row_stop_with_a_clear_message(data, tmp_path, monkeypatch):
    tok, corpora = data
    _inject(monkeypatch, accum=2, factors={s: float("nan") for s in range(6, 13)})
    out = tmp_path / "run"
    with pytest.raises(pt.TrainingDiverged, match=r"last 3 steps had a non-finite or spiking loss") as err:
        pt.pretrain(tiny_config(max_bad_steps=3), corpora, tok, out, seed=7, export=False)
    assert "step-00000004" in str(err.value) and "stopped at step 8" in str(err.value)
    last = ckpt.latest_checkpoint(out / "checkpoints")
    assert ckpt.read_state(last)["step"] == 4
    from transformers import LlamaForCausalLM

    LlamaForCausalLM.from_pretrained(last / "model")


def test_changed_data_settings_refuse_to_resume(data, reference, tmp_path):
    tok, corpora = data
    out = tmp_path / "run"
    shutil.copytree(reference[0] / "checkpoints", out / "checkpoints")
    with pytest.raises(pt.ConfigError, match="different data settings"):
        pt.pretrain(tiny_config(seq_len=16), corpora, tok, out, seed=7, export=False)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # eager: what `attention: auto` picks compiled on a CPU
def test_document_mask_keeps_attention_inside_each_document(attention):
    import torch

    from tongues.lm.config import PretrainConfig

    cfg = PretrainConfig(model={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "num_key_value_heads": 2}, seq_len=16)
    model = pt.build_model(pt.model_config(cfg, vocab_size=50), seed=0).eval()
    model.set_attn_implementation(attention)
    second_doc = [17, 8, 9, 30, 11]
    packed = torch.tensor([[12, 40, 7, 22, pt.EOS_ID, *second_doc]])
    with torch.no_grad():
        masked = pt.forward_logits(model, packed, doc_mask=True)[0, 5:]
        plain = pt.forward_logits(model, packed, doc_mask=False)[0, 5:]
        alone = pt.forward_logits(model, torch.tensor([second_doc]), doc_mask=False)[0]
    torch.testing.assert_close(masked, alone, rtol=1e-4, atol=1e-5)  # as if the first document were absent
    assert not torch.allclose(plain, alone, atol=1e-3)


def test_sigint_writes_a_checkpoint_and_the_same_command_resumes(data, reference, tmp_path, monkeypatch):
    import os
    import signal

    tok, corpora = data
    real, calls = pt.lm_loss, {"n": 0}

    def interrupt_in_step_6(*args):
        calls["n"] += 1
        if calls["n"] == 11:  # first micro-batch of step 6 (2 per step)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(pt, "lm_loss", interrupt_in_step_6)
    out = tmp_path / "run"
    with pytest.raises(pt.TrainingInterrupted, match="interrupted at step 6"):
        pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)
    assert ckpt.latest_checkpoint(out / "checkpoints").name == "step-00000006"  # the step was finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers given back
    monkeypatch.setattr(pt, "lm_loss", real)
    pt.pretrain(tiny_config(), corpora, tok, out, seed=7, export=False)
    assert losses(out) == losses(reference[0])


def test_chunked_loss_trains_like_the_logits_loss(data, tmp_path):
    """`fused_loss` (the default) changes how the loss is computed, not what it is: in fp32 the two
    runs' per-step losses and validation loss agree to float rounding."""
    tok, corpora = data
    runs = {}
    for fused in (True, False):
        out = tmp_path / f"fused-{fused}"
        result = pt.pretrain(tiny_config(precision="fp32", fused_loss=fused, max_steps=8), corpora, tok, out,
                             seed=7, export=False)
        runs[fused] = (losses(out), result["val_loss"])
    (fused, fused_val), (plain, plain_val) = runs[True], runs[False]
    assert [s for s, _ in fused] == [s for s, _ in plain] == list(range(1, 9))
    assert [v for _, v in fused] == pytest.approx([v for _, v in plain], rel=1e-4)
    assert fused_val == pytest.approx(plain_val, rel=1e-4)


def test_attention_auto_is_eager_only_when_compiled_on_a_cpu():
    import torch

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert pt.attention_kernel(tiny_config(compile=True), cpu) == "eager"
    assert pt.attention_kernel(tiny_config(compile=False), cpu) == "sdpa"
    assert pt.attention_kernel(tiny_config(compile=True), gpu) == "sdpa"
    assert pt.attention_kernel(tiny_config(compile=True, attention="sdpa"), cpu) == "sdpa"


@pytest.mark.slow  # torch.compile warms up for tens of seconds on a CPU
def test_compiled_run_with_chunked_loss_and_eager_attention_matches_eager_run(data, tmp_path):
    """`compile: true` on a CPU trains with eager attention (attention: auto) and the chunked loss
    inside the compiled forward; its losses follow the uncompiled run's to float tolerance."""
    tok, corpora = data
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        pt.pretrain(tiny_config(precision="fp32", compile=compiled, max_steps=4, eval_every=100), corpora, tok, out,
                    seed=7, export=False)
        runs[compiled] = [v for _, v in losses(out)]
    assert len(runs[True]) == 4
    assert runs[True] == pytest.approx(runs[False], rel=1e-3)


def test_a_compiled_models_checkpoint_has_the_models_own_weight_names(tmp_path):
    """accelerate keeps torch.compile's wrapper, whose state dict names every weight `_orig_mod.<name>`;
    a checkpoint (and so the exported model) written from it must load into plain transformers with
    every weight, and a checkpoint written with the wrapper's names must still resume."""
    import torch
    from accelerate import Accelerator
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(config)
    accelerator = Accelerator(cpu=True)
    compiled = torch.compile(model)  # lazy: nothing is compiled until a forward
    assert all(k.startswith("_orig_mod.") for k in accelerator.get_state_dict(compiled))
    opt = torch.optim.AdamW(model.parameters())
    path = ckpt.save_checkpoint(accelerator, compiled, opt, tmp_path, 1, {"tokens": 0}, keep=1)
    loaded = LlamaForCausalLM.from_pretrained(path / "model", use_safetensors=True)
    for name, weight in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name

    old = path / "model" / "model.safetensors"  # as compiled runs wrote it before
    save_file({f"_orig_mod.{k}": v.contiguous() for k, v in load_file(old).items()}, old, metadata={"format": "pt"})
    fresh = LlamaForCausalLM(config)
    ckpt.load_model_weights(path, fresh)
    assert torch.equal(fresh.model.embed_tokens.weight, model.model.embed_tokens.weight)


# ---- best-validation export, early stopping, dropout ---------------------------------------------


def _evals(run_dir):
    import json

    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def _scripted_validation(monkeypatch, values):
    """Validation losses in the order given (the run under test decides on them as on real ones)."""
    calls = iter(values)

    def evaluate(*args, **kwargs):
        v = next(calls)
        return {"val_loss": v, "val_bpb": v / 2}

    monkeypatch.setattr(pt, "evaluate", evaluate)


def test_export_best_keeps_the_lowest_validation_checkpoint(data, tmp_path, monkeypatch):
    """Validation is best at step 4 and worse after: the exported model is step 4's, not the last
    step's (export: best, the default); export: last exports the last."""
    import torch
    from safetensors.torch import load_file

    tok, corpora = data
    cfg = tiny_config(max_steps=12, eval_every=2, precision="fp32")
    out = tmp_path / "best"
    _scripted_validation(monkeypatch, [3.0, 2.0, 2.5, 2.6, 2.4, 2.7] * 2)
    result = pt.pretrain(cfg, corpora, tok, out, seed=3)
    evals = _evals(out)
    best = min(evals, key=lambda r: r["val_loss"])
    assert best["step"] == 4 and evals[-1]["val_loss"] > best["val_loss"]
    assert result["exported"] == "best" and result["best_step"] == best["step"]
    assert result["val_loss"] == best["val_loss"]  # the reported validation is the exported model's
    exported = load_file(out / "model" / "model.safetensors")
    at_best = load_file(out / "checkpoints" / "best" / "model" / "model.safetensors")
    last = load_file(ckpt.checkpoint_path(out / "checkpoints", 12) / "model" / "model.safetensors")
    assert all(torch.equal(exported[k], at_best[k]) for k in exported)
    assert any(not torch.equal(exported[k], last[k]) for k in exported)
    last_run = pt.pretrain(cfg.model_copy(update={"export": "last"}), corpora, tok, tmp_path / "last", seed=3)
    assert last_run["exported"] == "last" and last_run["val_loss"] == evals[-1]["val_loss"]


def test_patience_stops_when_validation_stops_improving_and_stays_stopped(data, tmp_path, monkeypatch):
    tok, corpora = data
    cfg = tiny_config(max_steps=40, eval_every=2, precision="fp32", patience=2, checkpoint_every=100)
    out = tmp_path / "run"
    _scripted_validation(monkeypatch, [3.0, 2.0, 2.1, 1.9, 2.2, 2.3, 1.0, 0.5])
    result = pt.pretrain(cfg, corpora, tok, out, seed=3)
    evals = _evals(out)
    best = min(range(len(evals)), key=lambda i: evals[i]["val_loss"])
    assert result["steps"] < 40 and result["early_stopped_at"] == result["steps"] == evals[-1]["step"]
    assert best == 3 and len(evals) == 6  # the best (step 8), then `patience` evaluations without a new best
    assert result["status"] == "complete" and (out / "model" / "config.json").exists()
    again = pt.pretrain(cfg, corpora, tok, out, seed=3)  # re-running a finished run trains no further
    assert again["steps"] == result["steps"] and len(_evals(out)) == len(evals)


def test_dropout_changes_training_not_the_model(data, tmp_path):
    tok, corpora = data
    plain = pt.pretrain(tiny_config(max_steps=4), corpora, tok, tmp_path / "plain", seed=7, export=False)
    dropped = pt.pretrain(tiny_config(max_steps=4, dropout=0.3), corpora, tok, tmp_path / "drop", seed=7, export=False)
    assert losses(tmp_path / "plain")[0] != losses(tmp_path / "drop")[0]  # active while training
    assert plain["params"] == dropped["params"]
    from transformers import LlamaConfig

    model = pt.build_model(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=2), seed=0)
    handles = pt.install_dropout(model, 0.5)
    ids = __import__("torch").randint(0, 64, (2, 8))
    model.eval()
    a, b = model(input_ids=ids).logits, model(input_ids=ids).logits
    assert (a == b).all()  # off in eval mode: evaluation and export see the plain model
    model.train()
    assert not (model(input_ids=ids).logits == model(input_ids=ids).logits).all()
    assert len(handles) == 3  # embeddings, attention and MLP of the one layer
