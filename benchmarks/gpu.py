"""Benchmark: pretraining throughput and MFU on GPUs, tongues against Hugging Face Trainer, side by side.

On a CUDA machine: a ~125M-parameter Llama (12 layers x 768, seq 2048, bf16), FSDP2 full shard
over 1, 2, 4, ... up to the visible GPUs, each system for the same steps on the same synthetic
token stream; tokens/s per GPU and MFU against the device's dense bf16 peak from
`tongues/plan/hardware.py`. Goal: MFU >= 45% on one H100/A100-class GPU.

    .venv/bin/python benchmarks/gpu.py                 # on a GPU machine; updates RESULTS.md
    .venv/bin/python benchmarks/gpu.py --tiny          # the same path end to end on CPU (gloo), tiny model

`--tiny` exists so the first GPU run does not fail on a typo: it runs both systems, one and two
processes, and writes the section marked as a CPU dry run (its numbers are not GPU figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

GPU_MODEL = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
             "num_key_value_heads": 12}
TINY_MODEL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4}


def synthetic_tokens(root: Path, n_docs: int) -> tuple[Path, Path]:
    """A tokenizer and token shards of generated text (throughput needs no real text); the model's
    vocabulary is set to 32,000 all the same, so the LM head costs what a real one does."""
    sys.path.insert(0, str(_HERE.parent / "tests"))
    from pretrain_fixtures import make_prepared, make_tokenizer

    from tongues.data.tokenize import tokenize_corpus

    tok = make_tokenizer(root / "tok", vocab_size=400)
    make_prepared(root / "prep", n_train=n_docs, n_val=20, shard_docs=5000)
    tokenize_corpus(root / "prep", tok, root / "tokens")
    return tok, root / "tokens"


def tongues_run(nproc: int, tok: Path, tokens: Path, out: Path, cfg: dict, cpu: bool) -> dict:
    import yaml

    config = out.with_suffix(".yaml")
    config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "tongues",
           "pretrain", "--data", str(tokens), "--tokenizer", str(tok), "--out", str(out), "--config", str(config),
           "--no-export"]
    env = {**os.environ, "TQDM_DISABLE": "1", **({"OMP_NUM_THREADS": "1"} if cpu else {})}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"tongues pretrain failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    steady = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")][1:] or [0.0]
    return {"tokens_per_s": sorted(steady)[len(steady) // 2], "seconds": time.perf_counter() - start,
            "mfu": next((r["mfu"] for r in reversed(rows) if r.get("mfu")), None)}


TRAINER_SCRIPT = r'''
import json, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments, TrainerCallback
import numpy as np
spec = json.loads(sys.argv[1])
ids = np.fromfile(spec["tokens"], dtype=np.uint16).astype(np.int64)
L = spec["seq_len"]
n = (len(ids) - 1) // L
class Windows(torch.utils.data.Dataset):
    def __len__(self): return n
    def __getitem__(self, i):
        x = torch.from_numpy(ids[i * L:(i + 1) * L])
        return {"input_ids": x, "labels": x}
model = LlamaForCausalLM(LlamaConfig(vocab_size=spec["vocab"], max_position_embeddings=L, **spec["model"]))
times = []
class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw): times.append(time.perf_counter())
args = TrainingArguments(output_dir=spec["out"], per_device_train_batch_size=spec["micro"], max_steps=spec["steps"],
                         learning_rate=3e-4, bf16=spec["bf16"], use_cpu=spec["cpu"], report_to=[], save_strategy="no",
                         logging_steps=10, dataloader_num_workers=0,
                         fsdp="full_shard auto_wrap" if spec["fsdp"] else "",
                         fsdp_config={"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]} if spec["fsdp"] else None)
Trainer(model=model, args=args, train_dataset=Windows(), callbacks=[Clock()]).train()
if args.process_index == 0:
    dt = (times[-1] - times[1]) / max(1, len(times) - 2)
    json.dump({"tokens_per_s": spec["micro"] * L * args.world_size / dt}, open(spec["result"], "w"))
'''


def trainer_run(nproc: int, tokens: Path, out: Path, spec: dict, cpu: bool) -> dict:
    script = out.with_suffix(".py")
    script.write_text(TRAINER_SCRIPT)
    result = out.with_suffix(".json")
    spec = {**spec, "out": str(out), "result": str(result), "tokens": str(tokens / "train.bin")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script),
           json.dumps(spec)]
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if cpu else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"HF Trainer run failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU processes: the dry run")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 30 GPU, 6 tiny)")
    parser.add_argument("--max-gpus", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import torch

    from benchmarks.results import report
    from tongues.plan.flops import flops_per_token
    from tongues.plan.hardware import gpu_for_device_name

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA device: run on a GPU machine, or --tiny for the CPU dry run")
    model = GPU_MODEL if cuda else TINY_MODEL
    seq_len, micro = (2048, 8) if cuda else (64, 4)
    steps = args.steps or (30 if cuda else 6)
    counts = [n for n in (1, 2, 4, 8) if n <= (torch.cuda.device_count() if cuda else 2) and n <= args.max_gpus]
    peak, device = None, "cpu"
    if cuda:
        device = torch.cuda.get_device_name(0)
        gpu = gpu_for_device_name(device)
        peak = gpu.peak_flops if gpu else None
    from transformers import LlamaConfig

    fpt = flops_per_token(LlamaConfig(vocab_size=32000, **model), seq_len)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok, tokens = synthetic_tokens(root, 4000 if cuda else 300)
        for n in counts:
            systems = []
            for strategy in (("ddp",) if n == 1 else ("ddp", "fsdp")):  # FSDP2 beside DDP at the same size
                cfg = {"model": {**model, "vocab_size": 32000}, "seq_len": seq_len, "micro_batch_size": micro,
                       "global_batch_tokens": seq_len * micro * n, "max_steps": steps, "warmup_steps": 2,
                       "eval_every": 10_000, "checkpoint_every": 10_000, "log_every": 2, "tensorboard": False,
                       "precision": "bf16" if cuda else "fp32", "strategy": strategy}
                name = "tongues" if n == 1 else f"tongues {strategy}"
                systems.append((name, tongues_run(n, tok, tokens, root / f"tongues{n}{strategy}", cfg, cpu=not cuda)))
            theirs = trainer_run(n, tokens, root / f"trainer{n}", {"model": model, "vocab": 32000, "seq_len": seq_len,
                                                                    "micro": micro, "steps": steps, "bf16": cuda,
                                                                    "cpu": not cuda, "fsdp": n > 1}, cpu=not cuda)
            systems.append(("HF Trainer" + (" fsdp" if n > 1 else ""), theirs))
            for name, r in systems:
                per = r["tokens_per_s"] / n
                mfu = per * fpt / peak if peak else None
                rows.append((n, name, r["tokens_per_s"], per, mfu))
                print(f"{n} x {device}: {name} {r['tokens_per_s']:,.0f} tokens/s"
                      + (f", MFU {mfu:.1%}" if mfu else ""), flush=True)
    title = ("GPU pretraining throughput" if cuda else
             "CPU dry run of benchmarks/gpu.py --tiny (not GPU figures: the path runs end to end)")
    lines = ["## gpu", "", f"{title}; {device}; {date.today().isoformat()}; "
             f"`benchmarks/gpu.py{' --tiny' if args.tiny else ''}`; model {model['num_hidden_layers']} x "
             f"{model['hidden_size']}, vocab 32000, seq {seq_len}, micro-batch {micro}, {steps} steps, "
             f"{'bf16' if cuda else 'fp32'}, FSDP2 full shard when more than one process.", "",
             "| processes | system | tokens/s | tokens/s per device | MFU |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {name} | {t:,.0f} | {per:,.0f} | {f'{m:.1%}' if m else '–'} |" for n, name, t, per, m in rows]
    if cuda:
        one = next((m for n, name, _, _, m in rows if n == 1 and name == "tongues"), None)
        lines += ["", f"Goal MFU >= 45% on one GPU: {'met' if one and one >= 0.45 else 'not met'} "
                      f"({one:.1%})." if one else ""]
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
