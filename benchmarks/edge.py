"""Benchmark: tongues models as GGUF in the real llama.cpp runtime (llama-cpp-python), beside tongues.

For a tongues model (default: the demo's Korean model) exported as f16, q8_0 and q4_0 GGUF:
file size, load time, decode tokens/s at batch 1 in llama.cpp against `tongues.load().generate()`
on the safetensors model (same prompts, same thread count), greedy agreement with the Hugging Face
model (token ids, 20 prompts x 32 tokens), tokenizer agreement on held-out text, and held-out bits
per byte computed from llama.cpp's own logits. Goals: f16 greedy tokens identical to the HF model;
q8_0 within 1% of f16's held-out bits per byte at <= 55% of its size.

    pip install llama-cpp-python==0.3.36      # builds llama.cpp from source (cmake, minutes)
    .venv/bin/python benchmarks/edge.py [--model runs/demo/pretrain-ko/model] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

PROMPTS = {"ko": ["오늘 아침에", "옛날 옛적에", "서울의 날씨는", "우리 동네에는", "어머니께서", "학교에서", "바다를 보면",
                  "겨울이 오면", "한글은", "시장에 가서", "주말에는", "도서관에서", "친구에게", "가을 하늘", "버스를 타고",
                  "할머니의 김치", "봄이 오면", "회사에서", "저녁을 먹고", "밤하늘의 별"]}
NEW_TOKENS = 32


def llama_bpb(llm, tokenizer, texts: list[str]) -> float:
    """Bits per UTF-8 byte from llama.cpp's logits, each text scored from BOS (as tongues eval does)."""
    import numpy as np

    nats, total_bytes = 0.0, 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: llm.n_ctx() - 1]
        llm.reset()
        llm.eval([tokenizer.bos_token_id, *ids])
        scores = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        logz = np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1)) + scores.max(1)
        nats += float((logz - scores[np.arange(len(ids)), ids]).sum())
        total_bytes += len(tokenizer.decode(ids).encode("utf-8"))
    return nats / math.log(2) / total_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/demo/pretrain-ko/model")
    parser.add_argument("--lang", default="ko")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quants", default="f16,q8_0,q4_0", help="comma-separated quantizations to measure")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    try:
        from llama_cpp import Llama
    except ImportError:
        raise SystemExit("needs llama-cpp-python: pip install llama-cpp-python==0.3.36 (builds llama.cpp)") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.results import report
    from tongues.infer.generate import load
    from tongues.instruct.evaluate import heldout_texts
    from tongues.lm.gguf_export import export_gguf

    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = PROMPTS.get(args.lang, PROMPTS["ko"])
    texts = heldout_texts([args.lang])
    want = []
    for p in prompts:
        ids = torch.tensor([tok(p, add_special_tokens=False)["input_ids"]])
        out = hf.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        want.append(out[0, ids.shape[1]:].tolist())
    lm = load(model_dir, device="cpu", threads=args.threads)
    lm.generate(prompts[0], max_new_tokens=4, temperature=0)
    start = time.perf_counter()
    made = sum(len(lm.generate(p, max_new_tokens=NEW_TOKENS, temperature=0, return_details=True).token_ids) for p in prompts)
    ours_tps = made / (time.perf_counter() - start)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants.split(","):
            path = export_gguf(model_dir, Path(tmp) / f"model.{quant}.gguf", quant)
            t0 = time.perf_counter()
            llm = Llama(model_path=str(path), n_ctx=hf.config.max_position_embeddings, n_threads=args.threads,
                        logits_all=True, verbose=False)
            load_s = time.perf_counter() - t0
            same_tok = all(llm.tokenize(t.encode(), add_bos=False, special=True) ==
                           tok(t, add_special_tokens=False)["input_ids"] for t in texts)
            agree, produced, start = 0, 0, time.perf_counter()
            for p, ref in zip(prompts, want, strict=True):
                llm.reset()
                got = []
                for token in llm.generate(tok(p, add_special_tokens=False)["input_ids"], temp=0.0, top_k=1,
                                          repeat_penalty=1.0, reset=True):
                    got.append(token)
                    if len(got) == NEW_TOKENS:
                        break
                produced += len(got)
                agree += got == ref
            tps = produced / (time.perf_counter() - start)
            rows.append({"quant": quant, "mib": path.stat().st_size / 2**20, "load_s": load_s, "tok_s": tps,
                         "greedy_same": agree, "tokenizer_same": same_tok, "bpb": llama_bpb(llm, tok, texts)})
            print(rows[-1], flush=True)
    f16 = rows[0]
    q8 = next((r for r in rows if r["quant"] == "q8_0"), None)
    lines = ["## edge", "", f"GGUF in llama.cpp (llama-cpp-python), {date.today().isoformat()}, model `{model_dir}` "
             f"({sum(p.numel() for p in hf.parameters()):,} parameters), {args.threads} thread(s); "
             f"`.venv/bin/python benchmarks/edge.py --model {model_dir} --threads {args.threads} --quants {args.quants}`.", "",
             f"tongues `generate()` on the safetensors model: {ours_tps:,.0f} tokens/s at batch 1.", "",
             "| quant | size MiB | load s | llama.cpp decode tok/s | greedy = HF (of 20) | tokenizer = HF | held-out bpb |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['quant']} | {r['mib']:.2f} | {r['load_s']:.2f} | {r['tok_s']:,.0f} | {r['greedy_same']} | "
              f"{'yes' if r['tokenizer_same'] else 'NO'} | {r['bpb']:.4f} |" for r in rows]
    lines += ["", f"- f16 greedy identical to the HF model: {'met' if f16['greedy_same'] == len(prompts) else 'NOT met'} "
                  f"({f16['greedy_same']}/{len(prompts)}).",
              (f"- q8_0 within 1% of f16's bpb at <= 55% of its size: bpb {q8['bpb'] / f16['bpb'] - 1:+.2%}, size "
               f"{q8['mib'] / f16['mib']:.0%} -> "
               f"{'met' if q8['bpb'] <= 1.01 * f16['bpb'] and q8['mib'] <= 0.55 * f16['mib'] else 'NOT met'}."
               if q8 else "- q8_0: not measured in this run (--quants).")]
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
