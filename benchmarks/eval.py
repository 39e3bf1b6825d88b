"""Benchmark `tongues eval` against lm-evaluation-harness's HF backend, in one run.

1. Agreement: lm-eval's own CLI (`lm_eval --model hf --model_args pretrained=DIR --include_path`)
   on the same text files and multiple-choice items as `tongues eval`: bits per byte within 0.5%,
   the same accuracy (acc = acc; our byte-normalized acc_norm = lm-eval's acc_bytes).
2. Speed: tokens scored per second for rolling bits per byte, lm-eval's `HFLM.loglikelihood_rolling`
   vs ours, on the same model object and the same documents, same batch size, alternating repeats.

Without --model, it builds a model the way the pipeline does: a tongues SentencePiece tokenizer
(trained on the embedded ko/hi/vi corpora) and a random-init LlamaForCausalLM saved in Hugging
Face format. Real text comes from /work/shared/corpora when present, else the embedded sets.

    .venv/bin/python benchmarks/eval.py [--model DIR] [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_section  # noqa: E402  (benchmarks/results.py)

ROOT = Path(__file__).resolve().parents[1]
# Python puts this script's folder first on sys.path, where sibling benchmarks (tokenizers.py)
# would shadow real packages: drop it, put the repository root instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
SHARED = Path("/work/shared/corpora")
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def build_model(out: Path, vocab: int, hidden: int, layers: int, context: int) -> Path:
    """A tongues tokenizer on the embedded corpora + a random-init Llama, saved as an HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tongues.resources import embedded_corpus_path
    from tongues.tokenizers.train import resolve_sources, train_tokenizer

    tok_dir = out / "tokenizer"
    sources = resolve_sources([f"{lang}={embedded_corpus_path(lang)}" for lang in ("ko", "hi", "vi")], [])
    train_tokenizer(sources, tok_dir, vocab_size=vocab, progress=False, log=None)
    model_dir = out / "model"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 16 * 16,
                         num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                         max_position_embeddings=context, bos_token_id=2, eos_token_id=3, pad_token_id=0,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(str(model_dir))
    for file in tok_dir.iterdir():
        if file.is_file():
            (model_dir / file.name).write_bytes(file.read_bytes())
    return model_dir


def bpb_texts() -> dict[str, tuple[str, list[str]]]:
    """Per language: (where the text is from, documents). Long paragraphs exercise rolling windows."""
    from tongues.eval.documents import embedded_eval_dir, read_rows

    texts = {}
    for lang, shared in (("ko", "ko/klue_dp.dev.txt"), ("hi", "hi/xquad_contexts.txt"), ("vi", "vi/xquad_contexts.txt")):
        if (SHARED / shared).is_file():
            lines = [x for x in (SHARED / shared).read_text(encoding="utf-8").splitlines() if x.strip()]
            if lang == "ko":  # short sentences: join 20 at a time into paragraphs
                lines = [" ".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]
            texts[lang] = (str(SHARED / shared), lines[:120])
        else:
            path = embedded_eval_dir() / lang / "heldout.txt"
            texts[lang] = (str(path), [r["text"] for r in read_rows(path)])
    return texts


def mc_sets(data_dir: Path | None) -> list[tuple[str, str, list[dict]]]:
    """(task, split, docs) for the multiple-choice agreement check."""
    from tongues.eval.documents import load_split
    from tongues.eval.registry import resolve_tasks

    sets = []
    for spec in resolve_tasks(["ko_mc,hi_mc,vi_mc"]):
        sets.append((spec.task, "test", load_split(spec, "test")))
    if data_dir is not None:
        for name, split, limit in (("kobest_copa", "validation", 200), ("kobest_boolq", "validation", 100),
                                   ("xcopa_vi", "validation", 100)):
            spec = resolve_tasks([name])[0]
            sets.append((name, split, load_split(spec, split, data_dir)[:limit]))
    return sets


def run_lm_eval_cli(model_dir: Path, include: Path, tasks: list[str], batch_size: int, out: Path,
                    threads: int | None) -> dict:
    """lm-eval's own command line; returns its results per task."""
    command = [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args",
               f"pretrained={model_dir},dtype=float32", "--include_path", str(include), "--tasks", ",".join(tasks),
               "--batch_size", str(batch_size), "--device", "cpu", "--output_path", str(out)]
    print("$ " + " ".join(command), flush=True)
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # the same torch threads as this process
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"lm_eval failed:\n{done.stderr[-4000:]}")
    files = sorted(out.rglob("results_*.json"))
    return json.loads(files[-1].read_text(encoding="utf-8"))["results"]


def agreement(model_dir: Path, scorer, work: Path, data_dir: Path | None, batch_size: int,
              threads: int | None) -> list[dict]:
    from tongues.eval.harness import export_task
    from tongues.eval.registry import TaskSpec, resolve_tasks
    from tongues.eval.task_kinds import TaskInput, run_task

    include = work / "lm_eval_tasks"
    jobs = []  # (lm-eval task name, our spec, docs, label)
    for lang, (source, docs) in bpb_texts().items():
        spec = resolve_tasks([f"{lang}_heldout_bpb"])[0]
        spec = TaskSpec.model_validate({**spec.model_dump(), "task": f"{lang}_bench_bpb"})
        rows = [{"text": d} for d in docs]
        jobs.append((export_task(spec, rows, include), spec, rows, f"{lang} bpb: {Path(source).name}"))
    for task, split, docs in mc_sets(data_dir):
        spec = resolve_tasks([task])[0]
        jobs.append((export_task(spec, docs, include), spec, docs, f"{task} ({split}, {len(docs)} items)"))
    theirs = run_lm_eval_cli(model_dir, include, [j[0] for j in jobs], batch_size, work / "lm_eval_out", threads)
    rows = []
    for name, spec, docs, label in jobs:
        ours = run_task(TaskInput(spec, docs), scorer).metrics
        if spec.kind == "bits_per_byte":
            a, b = ours["bits_per_byte"], theirs[name]["bits_per_byte,none"]
            rows.append({"check": label, "metric": "bits_per_byte", "tongues": a, "lm_eval": b,
                         "agree": abs(a - b) / b < 0.005, "diff": f"{100 * (a - b) / b:+.4f}%"})
        else:
            for ours_key, their_key in (("acc", "acc,none"), ("acc_norm", "acc_bytes,none")):
                a, b = ours[ours_key], theirs[name][their_key]
                rows.append({"check": label, "metric": f"{ours_key} (lm-eval {their_key.split(',')[0]})",
                             "tongues": a, "lm_eval": b, "agree": a == b, "diff": f"{a - b:+.4f}"})
    return rows


def speed(scorer, docs: list[str], batch_size: int, repeats: int) -> list[dict]:
    """Tokens scored per second on the same documents: lm-eval HFLM vs tongues (fixed and auto batch)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from tongues.eval.scoring import Scorer

    hflm = HFLM(pretrained=scorer.model, tokenizer=scorer.tokenizer, batch_size=batch_size)
    requests = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
    ours_fixed = Scorer(scorer.model, scorer.tokenizer, batch_size=batch_size, progress=False)
    ours_auto = Scorer(scorer.model, scorer.tokenizer, batch_size="auto", progress=False)
    n_tokens = 0
    runs: dict[str, list[float]] = {"lm-eval HFLM": [], f"tongues (batch {batch_size})": [], "tongues (batch auto)": []}
    results: dict[str, list[float]] = {}
    for _ in range(repeats):  # alternate, so load on the shared machine hits all alike
        for label, fn in (("lm-eval HFLM", lambda: hflm.loglikelihood_rolling(requests, disable_tqdm=True)),
                          (f"tongues (batch {batch_size})", lambda: ours_fixed.loglikelihood_rolling(docs)),
                          ("tongues (batch auto)", lambda: ours_auto.loglikelihood_rolling(docs))):
            start = time.perf_counter()
            out = fn()
            runs[label].append(time.perf_counter() - start)
            results[label] = [float(x) for x in out] if label.startswith("lm-eval") else [s for s, _ in out]
            if not label.startswith("lm-eval"):
                n_tokens = sum(n for _, n in out)
    base = statistics.median(runs["lm-eval HFLM"])
    rows = []
    for label, times in runs.items():
        seconds = statistics.median(times)
        total_nll = -sum(results[label])
        rows.append({"backend": label, "seconds": seconds, "tokens_per_s": n_tokens / seconds,
                     "speedup": base / seconds, "total_nll": total_nll})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an exported model directory (default: build one)")
    parser.add_argument("--vocab", type=int, default=8000, help="built model: vocabulary size")
    parser.add_argument("--hidden", type=int, default=256, help="built model: hidden size")
    parser.add_argument("--layers", type=int, default=4, help="built model: layers")
    parser.add_argument("--context", type=int, default=256, help="built model: context (window) in tokens")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size for both backends")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per backend (median reported)")
    parser.add_argument("--speed-docs", type=int, default=120, help="documents per language in the speed test")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()

    import torch

    from tongues.eval.scoring import Scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="tongues-eval-bench-"))
    model_dir = Path(args.model) if args.model else build_model(work, args.vocab, args.hidden, args.layers, args.context)
    scorer = Scorer.load(model_dir, device="cpu", batch_size=args.batch_size, progress=False)
    n_params = sum(p.numel() for p in scorer.model.parameters())
    data_dir = SHARED / "tasks" if (SHARED / "tasks").is_dir() else None
    print(f"model {model_dir}: {n_params / 1e6:.2f}M parameters, window {scorer.max_length}, "
          f"vocab {scorer.model.config.vocab_size}, torch threads {torch.get_num_threads()}", flush=True)

    agree = agreement(model_dir, scorer, work, data_dir, args.batch_size, args.threads)
    docs = [d for _, texts in bpb_texts().values() for d in texts[: args.speed_docs]]
    fast = speed(scorer, docs, args.batch_size, args.repeats)

    lines = ["## eval", "",
             f"`.venv/bin/python benchmarks/eval.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
             "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), "
             f"torch {torch.__version__}, torch threads {torch.get_num_threads()}; "
             f"lm-eval {__import__('lm_eval').__version__}. Model: "
             + (f"`{args.model}`" if args.model else
                f"random-init LlamaForCausalLM ({n_params / 1e6:.2f}M parameters, hidden {args.hidden}, "
                f"{args.layers} layers, window {args.context}) with a tongues SentencePiece tokenizer "
                f"({args.vocab} pieces) trained on the embedded ko/hi/vi corpora") + ".",
             "",
             "Agreement with lm-evaluation-harness (its own CLI, `--include_path` tasks exported by "
             "`tongues.eval.harness`, same documents):", "",
             "| check | metric | tongues | lm-eval | difference | agrees |", "|---|---|---|---|---|---|"]
    for r in agree:
        lines.append(f"| {r['check']} | {r['metric']} | {r['tongues']:.6f} | {r['lm_eval']:.6f} | {r['diff']} | "
                     f"{'yes' if r['agree'] else 'NO'} |")
    n_tokens = int(fast[0]["tokens_per_s"] * fast[0]["seconds"])
    lines += ["", f"Speed, rolling bits per byte over {len(docs)} documents ({n_tokens:,} tokens, ko/hi/vi), "
              f"same model object, median of {args.repeats} alternating runs:", "",
              "| backend | seconds | tokens scored / s | vs lm-eval |", "|---|---|---|---|"]
    for r in fast:
        lines.append(f"| {r['backend']} | {r['seconds']:.2f} | {r['tokens_per_s']:,.0f} | {r['speedup']:.2f}× |")
    nll = [r["total_nll"] for r in fast]
    lines += ["", f"Total NLL over those documents: lm-eval {nll[0]:.3f}, tongues {nll[1]:.3f} / {nll[2]:.3f} nats "
              f"(relative difference {abs(nll[1] - nll[0]) / nll[0]:.1e})."]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    ok = all(r["agree"] for r in agree) and all(r["speedup"] >= 1.0 for r in fast[1:])
    if not args.no_write:
        write_section(text)
        print(f"updated {RESULTS}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
