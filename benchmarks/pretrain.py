"""Pretraining throughput: `tongues pretrain` against Hugging Face `Trainer` and a minimal PyTorch loop.

Same model (a 6.6M-parameter Llama, seq_len 256, vocabulary 8000, tied embeddings), same data,
same precision, same global batch (4096 tokens = 16 sequences, micro-batch 8, 2 accumulation steps),
same optimizer (AdamW, fused) and schedule. Each system runs in its own fresh process; the systems
alternate, round by round, in rotating order.

The 2 CPU cores are shared with other users, whose load swings the wall-clock speed of a run by
2-3x within minutes. So every step is timed twice: wall clock and the process's CPU time. With
one torch thread per process (the default here, `--threads 1`) CPU time is the compute a step
really needs, whatever else runs, and tokens per CPU-second is the throughput on one idle core;
it is the figure to compare. MFU divides model FLOPs (6 x matmul weights + attention, PaLM's
formula) per CPU-second by the matmul peak per CPU-second, measured in the same rounds by square
1024 and 2048 matmul loops in the training dtype (best round); the same worker times the model's
own matmul shapes, the ceiling its GEMMs alone reach. The first `--warmup` steps are left out.
The goal ratio compares each system at its best, eager or compiled (`--compile`).

    .venv/bin/python benchmarks/pretrain.py                        # precision auto (bf16 where fast)
    .venv/bin/python benchmarks/pretrain.py --compile               # adds the torch.compile variants
    .venv/bin/python benchmarks/pretrain.py --precision bf16 --steps 3 --rounds 1 --no-write

Writes the `## pretrain` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results import write_section  # noqa: E402  (benchmarks/results.py)

ROOT = Path(__file__).resolve().parents[1]
# Running this file puts benchmarks/ first on sys.path, where other benchmarks' names (tokenizers.py)
# would shadow the libraries of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
SHARED = Path("/work/shared/corpora")
MODEL = {"hidden_size": 256, "intermediate_size": 640, "num_hidden_layers": 6, "num_attention_heads": 4,
         "num_key_value_heads": 4, "tie_word_embeddings": True}
SEQ_LEN, MICRO, GLOBAL_TOKENS, VOCAB, LR = 256, 8, 4096, 8000, 1e-3


# ---------------------------------------------------------------------------------------------
# Setup: a real-text corpus, a tokenizer trained on it, token shards


def corpus_texts() -> list[str]:
    files = [SHARED / "ko/ud_gsd.train.txt", SHARED / "vi/ud_vtb.train.txt", SHARED / "hi/hiner.validation.txt",
             SHARED / "en/xquad_contexts.txt", SHARED / "vi/xquad_contexts.txt", SHARED / "hi/xquad_contexts.txt"]
    texts = [line.strip() for f in files if f.exists() for line in f.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if len(t) > 20]
    if len(texts) < 1000:  # no shared corpora here: generated text keeps the benchmark runnable
        sys.path.insert(0, str(ROOT / "tests"))
        from pretrain_fixtures import make_documents

        texts = make_documents(20000, seed=0, min_words=30, max_words=120)
    return texts


def setup(work: Path) -> tuple[Path, Path]:
    """Tokenizer dir and token dir under `work` (made once)."""
    tok_dir, tokens = work / "tokenizer", work / "tokens"
    if (tokens / "meta.json").exists():
        return tok_dir, tokens
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tongues.data.tokenize import tokenize_corpus

    texts = corpus_texts()
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(tok_dir))
    prep = work / "prepared"
    n_val = max(50, len(texts) // 50)
    for split, chunk in (("train", texts[n_val:]), ("validation", texts[:n_val])):
        (prep / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": chunk, "id": [str(i) for i in range(len(chunk))], "source": ["b"] * len(chunk)}),
                       prep / split / "shard-00000.parquet")
    (prep / "stats.json").write_text(json.dumps({"lang": "mixed"}))
    tokenize_corpus(prep, tok_dir, tokens, num_proc=1)
    return tok_dir, tokens


# ---------------------------------------------------------------------------------------------
# Workers: each runs in a fresh process and prints one JSON line


def _model_and_data(tokens: Path, tok_dir: Path):
    import torch

    from tongues.data.tokenize import load_split, read_meta
    from tongues.lm.config import PretrainConfig
    from tongues.lm.packing import PackedMixture
    from tongues.lm.pretrain import build_model, model_config

    cfg = PretrainConfig(model=MODEL, seq_len=SEQ_LEN)
    config = model_config(cfg, read_meta(tokens)["vocab_size"])
    model = build_model(config, seed=0)
    mixture = PackedMixture([load_split(tokens, "train")], [1.0], SEQ_LEN, seed=0)
    return torch, config, model, mixture


def worker_tongues(args, tok_dir: Path, tokens: Path, fused_loss: bool = True) -> dict:
    from tongues.lm import metrics_log
    from tongues.lm.config import PretrainConfig
    from tongues.lm.pretrain import pretrain

    clock = StepClock()
    real_write = metrics_log.MetricsLog.write

    def timed_write(self, name, record, scalars=()):  # a train record is written once per step
        if name == "train":
            clock.mark()
        real_write(self, name, record, scalars)

    metrics_log.MetricsLog.write = timed_write
    out = Path(args.work) / f"run-tongues-{os.getpid()}"
    cfg = PretrainConfig(model=MODEL, seq_len=SEQ_LEN, global_batch_tokens=GLOBAL_TOKENS, micro_batch_size=MICRO,
                         lr=LR, warmup_steps=2, max_steps=args.steps, eval_every=10**6, checkpoint_every=10**6,
                         log_every=10**6, tensorboard=False, precision=args.precision, compile=args.compile,
                         eval_tokens=SEQ_LEN * 4, peak_flops=1.0, fused_loss=fused_loss)
    clock.start()  # set-up time lands in step 1, which is left out as warm-up
    pretrain(cfg, {"b": (tokens, 1.0)}, tok_dir, out, seed=0, export=False)
    return clock.result()


class StepClock:
    """Wall and process CPU time of consecutive steps."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def start(self) -> None:
        if not self.marks:
            self.marks.append((time.perf_counter(), time.process_time()))

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def result(self) -> dict:
        pairs = list(zip(self.marks, self.marks[1:], strict=False))
        return {"wall": [b[0] - a[0] for a, b in pairs], "cpu": [b[1] - a[1] for a, b in pairs]}


def worker_minimal(args, tok_dir: Path, tokens: Path) -> dict:
    """The loop a careful person writes by hand: autocast, fused AdamW, flat cross-entropy."""
    torch, config, model, mixture = _model_and_data(tokens, tok_dir)
    import torch.nn.functional as F

    accum = GLOBAL_TOKENS // SEQ_LEN // MICRO
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if args.compile else model
    bf16 = _bf16(args.precision)
    clock = StepClock()
    clock.start()
    for step in range(args.steps):
        for a in range(accum):
            batch = mixture.batch((step * accum + a) * MICRO, MICRO)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = fwd(input_ids=batch[:, :-1], use_cache=False).logits
                loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()) / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        clock.mark()
    return clock.result()


def worker_trainer_eager_attention(args, tok_dir: Path, tokens: Path) -> dict:
    """The Trainer given the attention kernel tongues picks when compiling on a CPU (eager)."""
    return worker_trainer(args, tok_dir, tokens, attention="eager")


def worker_trainer(args, tok_dir: Path, tokens: Path, attention: str = "sdpa") -> dict:
    """Hugging Face Trainer at the settings its docs give for CPU training: use_cpu, bf16 autocast
    (when the precision is bf16), fused AdamW, no pinned memory, no checkpoint or eval during the run,
    torch_compile when --compile."""
    torch, config, model, mixture = _model_and_data(tokens, tok_dir)
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model.set_attn_implementation(attention)

    class Windows(torch.utils.data.Dataset):
        def __len__(self):
            return 10**7

        def __getitem__(self, i):
            ids = mixture.batch(i, 1)[0, :-1]
            return {"input_ids": ids, "labels": ids}

    clock = StepClock()

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            clock.start()

        def on_step_end(self, *a, **k):
            clock.mark()

    targs = TrainingArguments(
        output_dir=str(Path(args.work) / f"run-trainer-{os.getpid()}"), use_cpu=True, bf16=_bf16(args.precision),
        per_device_train_batch_size=MICRO, gradient_accumulation_steps=GLOBAL_TOKENS // SEQ_LEN // MICRO,
        max_steps=args.steps, learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.1,
        adam_beta2=0.95, max_grad_norm=1.0, optim="adamw_torch_fused", logging_steps=10**6, save_strategy="no",
        eval_strategy="no", report_to="none", dataloader_num_workers=0, dataloader_pin_memory=False,
        disable_tqdm=True, torch_compile=args.compile, seed=0,
    )
    Trainer(model=model, args=targs, train_dataset=Windows(), callbacks=[StepTimer()]).train()
    return clock.result()


def worker_tongues_plain(args, tok_dir: Path, tokens: Path) -> dict:
    """tongues with the plain logits loss (fused_loss off): what the chunked loss is worth."""
    return worker_tongues(args, tok_dir, tokens, fused_loss=False)


def _mm_rate(pairs: list) -> dict:
    """FLOP per CPU-second (and per wall second) of running `torch.mm` over the (a, b) pairs, in a
    loop of at least 1.5 CPU-seconds, after one warm-up pass (oneDNN picks its kernels on first use)."""
    import torch

    flops = sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in pairs)
    for a, b in pairs:
        torch.mm(a, b)
    runs, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.process_time() - cpu < 1.5 or runs < 2:
        for a, b in pairs:
            torch.mm(a, b)
        runs += 1
    return {"cpu": flops * runs / (time.process_time() - cpu), "wall": flops * runs / (time.perf_counter() - wall)}


def worker_peak(args, tok_dir: Path, tokens: Path) -> dict:
    """FLOP per CPU-second (and per wall second) of square matmul loops in the training dtype: the
    best of sizes 1024 and 2048 (512 where bf16 is emulated, ~45x slower on AVX2-only CPUs); and
    `shape_cpu`, the rate of this model's own matmuls."""
    import torch

    dtype = torch.bfloat16 if _bf16(args.precision) else torch.float32
    sizes = (1024, 2048) if dtype == torch.float32 or _bf16("auto") else (512,)
    rates = [_mm_rate([(torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype))]) for n in sizes]
    best = max(rates, key=lambda r: r["cpu"])
    return {"peak_cpu": best["cpu"], "peak_wall": best["wall"], "shape_cpu": _model_gemm_rate(torch, dtype)}


def _model_gemm_rate(torch, dtype) -> float:  # noqa: ANN001
    """FLOP per CPU-second of this model's own matmuls, forward and backward, for one micro-batch
    (M = micro x seq_len tokens): what its GEMMs alone reach, a ceiling below the square-loop peak."""
    m, d, f = MICRO * SEQ_LEN, MODEL["hidden_size"], MODEL["intermediate_size"]
    layer = [(d, d)] * 4 + [(d, f)] * 2 + [(f, d)]  # q, k, v, o; gate, up; down: (in, out)
    gemms = layer * MODEL["num_hidden_layers"] + [(d, VOCAB)]
    pairs = []
    for k, n in gemms:  # forward x@w, backward grad_x = g@w.T and grad_w = x.T@g
        x, w, g = (torch.randn(*s, dtype=dtype) for s in ((m, k), (k, n), (m, n)))
        pairs += [(x, w), (g, w.T), (x.T, g)]
    return _mm_rate(pairs)["cpu"]


def _bf16(precision: str) -> bool:
    from tongues.plan.flops import fast_bf16

    return precision == "bf16" or (precision == "auto" and fast_bf16())


WORKERS = {"tongues": worker_tongues, "tongues-plain-loss": worker_tongues_plain, "trainer": worker_trainer,
           "trainer-eager-attention": worker_trainer_eager_attention, "minimal": worker_minimal,
           "peak": worker_peak}


# ---------------------------------------------------------------------------------------------
# Driver


def run_worker(name: str, args: argparse.Namespace, compile_: bool, precision: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--work", str(args.work), "--steps", str(args.steps),
           "--precision", precision or args.precision, "--threads", str(args.threads)] + (["--compile"] if compile_ else [])
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def steady_rate(step_seconds: list[float], warmup: int) -> float:
    """Tokens per second over the steps after the warm-up."""
    kept = step_seconds[warmup:]
    return GLOBAL_TOKENS * len(kept) / sum(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the rate")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: CPU time is exact)")
    parser.add_argument("--compile", action="store_true", help="also run the torch.compile variants")
    parser.add_argument("--work", default="/tmp/tongues-bench-pretrain")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()
    args.work = Path(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    tok_dir, tokens = setup(args.work)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(WORKERS[args.worker](args, tok_dir, tokens)))
        return

    from tongues.lm.config import PretrainConfig
    from tongues.lm.pretrain import model_config
    from tongues.plan.flops import flops_per_token

    config = model_config(PretrainConfig(model=MODEL, seq_len=SEQ_LEN), VOCAB)
    fpt = flops_per_token(config, SEQ_LEN)
    systems = [("tongues", False), ("tongues-plain-loss", False), ("trainer", False), ("minimal", False)]
    if args.compile:
        systems += [("tongues", True), ("trainer", True), ("trainer-eager-attention", True)]
    keys = [f"{n}{' +compile' if c else ''}" for n, c in systems]
    cpu_rates: dict[str, list[float]] = {k: [] for k in keys}
    wall_rates: dict[str, list[float]] = {k: [] for k in keys}
    peaks: list[dict] = []
    precision = "bf16" if _bf16(args.precision) else "fp32"
    print(f"{fpt / 1e6:.1f} MFLOP/token, {precision}, {args.threads} torch thread(s) per process", flush=True)
    for r in range(args.rounds):
        order = systems[r % len(systems):] + systems[: r % len(systems)]  # rotate who goes first
        peaks.append(run_worker("peak", args, False))
        for name, comp in order:
            key = f"{name}{' +compile' if comp else ''}"
            times = run_worker(name, args, comp)
            cpu_rates[key].append(steady_rate(times["cpu"], args.warmup))
            wall_rates[key].append(steady_rate(times["wall"], args.warmup))
            print(f"round {r + 1}: {key:18s} {cpu_rates[key][-1]:8,.0f} tokens/CPU-s {wall_rates[key][-1]:8,.0f} "
                  "tokens/s wall", flush=True)
        print(f"round {r + 1}: matmul peak {peaks[-1]['peak_cpu'] / 1e9:.1f} GFLOP/CPU-s "
              f"({peaks[-1]['peak_wall'] / 1e9:.1f} wall), this model's GEMMs "
              f"{peaks[-1]['shape_cpu'] / 1e9:.1f}", flush=True)
    peak = max(p["peak_cpu"] for p in peaks)
    other = "fp32" if precision == "bf16" else "bf16"
    other_peak = run_worker("peak", args, False, precision=other)["peak_cpu"]
    print(f"matmul peak in {other}: {other_peak / 1e9:.1f} GFLOP/CPU-s", flush=True)
    table = ["| system | tokens per CPU-second (median) | per round | vs Trainer (median of per-round ratios) "
             "| MFU | wall tokens/s per round |", "|---|---|---|---|---|---|"]
    for key in keys:
        base = "trainer +compile" if key.endswith("+compile") else "trainer"
        ratio = statistics.median(v / b for v, b in zip(cpu_rates[key], cpu_rates[base], strict=True))
        med = statistics.median(cpu_rates[key])
        table.append(f"| {key} | {med:,.0f} | {', '.join(f'{v:,.0f}' for v in cpu_rates[key])} | {ratio:.2f}x | "
                     f"{med * fpt / peak:.0%} | {', '.join(f'{v:,.0f}' for v in wall_rates[key])} |")
    # The goal compares each system at its best: per round, the faster of its eager and compiled runs.
    def best(name: str) -> list[float]:
        runs = [cpu_rates[k] for k in (name, f"{name} +compile") if k in cpu_rates]
        return [max(vals) for vals in zip(*runs, strict=True)]

    ratio = statistics.median(v / b for v, b in zip(best("tongues"), best("trainer"), strict=True))
    mfu = statistics.median(best("tongues")) * fpt / peak
    scope = "each at its best of eager and compiled" if args.compile else "both eager"
    goals = [f"Goal: at least 1.2x the Trainer's throughput ({scope}, median of per-round ratios): "
             f"{'met' if ratio >= 1.2 else 'not met'} ({ratio:.2f}x). "
             f"Goal: MFU at least 55%: {'met' if mfu >= 0.55 else 'not met'} ({mfu:.0%})."]
    gemm = max(p["shape_cpu"] for p in peaks)
    goals.append(f"Ceiling: this model's own matmul shapes (forward and backward, {MICRO * SEQ_LEN} tokens per "
                 f"micro-batch) run at {gemm / 1e9:.0f} GFLOP per CPU-second alone (best round), "
                 f"{gemm / peak:.0%} of the square-loop peak; tongues at its best reaches "
                 f"{statistics.median(best('tongues')) * fpt / gemm:.0%} of that.")
    if "trainer-eager-attention +compile" in cpu_rates:  # how much of the lead is the attention kernel
        strict = statistics.median(v / max(b, e) for v, b, e in zip(
            best("tongues"), best("trainer"), cpu_rates["trainer-eager-attention +compile"], strict=True))
        goals.append(f"Against the Trainer at its best including eager attention under compile: {strict:.2f}x.")
    print("\n".join(table + goals))
    if not args.no_write:
        write_results(args, table + [""] + goals, peaks, precision, fpt, f"{other} {other_peak / 1e9:.1f}")


def write_results(args: argparse.Namespace, table: list[str], peaks: list[dict], precision: str, fpt: float,
                  other_peak: str) -> None:
    cmd = (f".venv/bin/python benchmarks/pretrain.py --rounds {args.rounds} --steps {args.steps} "
           f"--warmup {args.warmup} --precision {args.precision} --threads {args.threads}" + (" --compile" if args.compile else ""))
    peak_text = ", ".join(f"{p['peak_cpu'] / 1e9:.1f}" for p in peaks)
    section = "\n".join([
        "## pretrain", "",
        f"`{cmd}` ({time.strftime('%Y-%m-%d')}; {os.cpu_count()} CPU cores shared with other users; {precision}; "
        f"{args.threads} torch thread(s) per process).",
        f"6.6M-parameter Llama (hidden 256, 6 layers, vocab {VOCAB}, tied), seq_len {SEQ_LEN}, global batch "
        f"{GLOBAL_TOKENS} tokens (micro-batch {MICRO} x {GLOBAL_TOKENS // SEQ_LEN // MICRO} accumulation), "
        f"{args.steps} steps per run, first {args.warmup} left out; {fpt / 1e6:.1f} MFLOP per token. Tokens per "
        "CPU-second is the throughput on one idle core; wall tokens/s moved with the other users' load.",
        f"Matmul peak ({precision}, best of 1024x1024 and 2048x2048 loops) per round: {peak_text} GFLOP per CPU-second; MFU uses the highest "
        f"(same loop in {other_peak} GFLOP per CPU-second).",
        "", *table, "",
    ])
    write_section(section)


if __name__ == "__main__":
    main()
