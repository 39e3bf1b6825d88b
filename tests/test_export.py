"""Recipe stages end to end (tokenize -> pretrain -> export), the exported model in plain transformers,
the model card, `tongues export` of a chosen checkpoint, and the Slurm launch script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from pretrain_fixtures import make_prepared, make_tokenizer, tiny_config

from tongues.run import Stage, StageContext


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The two recipe stages, as the runner calls them: tokenize-m then pretrain-m (two corpora)."""
    from tongues.data import tokenize
    from tongues.lm import pretrain

    root = tmp_path_factory.mktemp("stages")
    tok = make_tokenizer(root / "tokenizer-t")
    make_prepared(root / "data-vi", n_train=200, lang="vi", seed=1)
    make_prepared(root / "data-en", n_train=120, lang="en", seed=2)
    inputs = {"tokenizer-t": tok, "data-vi": root / "data-vi", "data-en": root / "data-en"}
    stage = Stage("tokenize-m", "tokenize", "tongues.data.tokenize:run_stage", tiny_config(), list(inputs))
    tok_metrics = tokenize.run_stage(StageContext(stage, None, root / "tokenize-m", inputs, seed=5))
    plan = root / "plan-m"
    plan.mkdir()
    (plan / "plan.json").write_text(json.dumps({"params": 20000, "tokens": 3000, "law": "chinchilla"}))
    extra = {"corpora": {"vi": 2.0, "en": 1.0}, "tokenizer": "t", "sample_prompts": ["Xin chào", "The cat"]}
    stage = Stage("pretrain-m", "pretrain", "tongues.lm.pretrain:run_stage", tiny_config(max_steps=8, tensorboard=True),
                  [], extra)
    ctx = StageContext(stage, None, root / "pretrain-m",
                       {"tokenize-m": root / "tokenize-m", "tokenizer-t": tok, "plan-m": plan}, seed=5)
    return root, tok_metrics, pretrain.run_stage(ctx)


def test_stages_report_what_the_demo_prints(trained):
    root, tok_metrics, metrics = trained
    assert set(tok_metrics["corpora"]) == {"vi", "en"} and (root / "tokenize-m" / "vi" / "train.bin").exists()
    assert metrics["steps"] == 8 and set(metrics["val"]) == {"vi", "en"}
    assert "bits/byte" in metrics["headline"] and metrics["val_bpb"] > 0
    assert [s["prompt"] for s in metrics["samples"]] == ["Xin chào", "The cat"]
    assert all(isinstance(s["completion"], str) for s in metrics["samples"])
    json.dumps(metrics)  # the runner stores it in manifest.json
    assert list((root / "pretrain-m" / "tensorboard").glob("events.out.tfevents.*"))


def test_export_loads_and_generates_without_tongues(trained, tmp_path):
    model_dir = trained[0] / "pretrain-m" / "model"
    script = f"""
import sys, json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(model_dir)!r})
model = AutoModelForCausalLM.from_pretrained({str(model_dir)!r})
ids = tok("the cat sat", return_tensors="pt", add_special_tokens=False).input_ids
out = model.generate(ids, max_new_tokens=6, do_sample=False, min_new_tokens=6)
chat = tok.apply_chat_template([{{"role": "user", "content": "hi"}}], tokenize=False, add_generation_prompt=True)
print(json.dumps({{"new": out.shape[1] - ids.shape[1], "tongues": any(m.startswith("tongues") for m in sys.modules),
                  "eos": model.generation_config.eos_token_id, "pad": model.generation_config.pad_token_id,
                  "chat": chat, "type": type(model).__name__}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"new": 6, "tongues": False, "eos": [3, 5], "pad": 0, "type": "LlamaForCausalLM",
                   "chat": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"}


def test_model_card_has_metadata_data_plan_curve_and_bpb(trained):
    root, _, metrics = trained
    model_dir = root / "pretrain-m" / "model"
    text = (model_dir / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["language"] == ["en", "vi"] and front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation" and "tongues" in front["tags"] and front["license"] == "cc0-1.0"
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == round(metrics["val_bpb"], 4)
    assert f"{metrics['val_bpb']:.4f}" in text and "![training curve](training_curve.png)" in text
    assert "counts.train | 200" in text and "| tokens | 3000 |" in text  # data card and plan numbers
    assert (model_dir / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tie_word_embeddings"] and config["eos_token_id"] == 3 and config["vocab_size"] == 120


def test_export_command_writes_a_chosen_checkpoint(trained, tmp_path):
    from safetensors.torch import load_file

    from tongues.cli import main

    run = trained[0] / "pretrain-m"
    assert main(["export", "--run", str(run), "--step", "4", "--out", str(tmp_path / "m4")]) == 0
    step4 = load_file(run / "checkpoints" / "step-00000004" / "model" / "model.safetensors")
    exported = load_file(tmp_path / "m4" / "model.safetensors")
    final = load_file(run / "model" / "model.safetensors")
    key = "model.layers.0.mlp.up_proj.weight"
    assert exported[key].equal(step4[key]) and not exported[key].equal(final[key])
    assert (tmp_path / "m4" / "tokenizer.json").exists() and (tmp_path / "m4" / "README.md").exists()
    assert main(["export", "--run", str(run), "--step", "3", "--out", str(tmp_path / "x")]) == 2  # no such step


def test_slurm_script_runs_accelerate_on_every_node(tmp_path, monkeypatch):
    from tongues.cli import main

    text = tmp_path / "ko.txt"
    text.write_text("한국어 문장입니다.\n" * 10, encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "corpora": {"ko": {"lang": "ko", "sources": [str(text)]}},
        "tokenizers": {"ko": {"corpora": ["ko"]}}, "models": {"small": {"tokenizer": "ko", "corpora": {"ko": 1.0}}}}))
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "slurm", "--nodes", "2", "--gpus-per-node", "4", "--recipe", str(recipe),
                 "--set", "models.small.pretrain.lr=0.001"]) == 0
    script = (tmp_path / "pretrain-small.sbatch").read_text()
    for needle in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=4",
                   'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1', "--num_machines 2",
                   "--num_processes 8", r"--machine_rank \$SLURM_NODEID", "--main_process_ip $MASTER_ADDR",
                   "recipes/accelerate/fsdp.yaml", "-m tongues pretrain --recipe", "--model small",
                   "--set models.small.pretrain.lr=0.001"):
        assert needle in script, needle
    assert subprocess.run(["bash", "-n", str(tmp_path / "pretrain-small.sbatch")]).returncode == 0
    assert main(["launch", "slurm", "--nodes", "1", "--gpus-per-node", "1", "--recipe", str(recipe),
                 "--accelerate-config", "nope.yaml"]) == 2


def test_cli_tokenize_and_direct_pretrain_errors(trained, tmp_path, capsys):
    from tongues.cli import main
    from tongues.lm.commands import focus_recipe

    root = trained[0]
    assert main(["data", "tokenize", "--data", str(root / "data-en"), "--tokenizer", str(root / "tokenizer-t"),
                 "--out", str(tmp_path / "en"), "--num-proc", "1"]) == 0
    assert "train: 120 documents" in capsys.readouterr().out
    assert (tmp_path / "en" / "meta.json").exists()
    assert main(["pretrain", "--data", str(tmp_path / "en")]) == 2
    assert "--tokenizer, --out required" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nothing"), "--tokenizer", "t", "--out", "o"]) == 2
    assert "not a token directory" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "en"), "--tokenizer", str(root / "tokenizer-t"),
                 "--out", str(tmp_path / "o"), "--set", "global_batch_tokens=100"]) == 2
    assert "must be a multiple of seq_len" in capsys.readouterr().err

    from tongues.config import Recipe

    recipe = Recipe.model_validate({
        "name": "r", "corpora": {c: {"lang": "en", "sources": [str(tmp_path)]} for c in ("a", "b", "c")},
        "tokenizers": {"t1": {"corpora": ["a"]}, "t2": {"corpora": ["c"]}},
        "models": {"m1": {"tokenizer": "t1", "corpora": {"a": 1, "b": 2}}, "m2": {"tokenizer": "t2", "corpora": {"c": 1}}}})
    sub, name = focus_recipe(recipe, "m1")
    assert name == "m1" and set(sub.corpora) == {"a", "b"} and set(sub.tokenizers) == {"t1"} and set(sub.models) == {"m1"}
    with pytest.raises(Exception, match="--model is required"):
        focus_recipe(recipe, None)
