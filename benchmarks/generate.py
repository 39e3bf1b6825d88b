"""Generation speed: tongues' decode loop against transformers' `model.generate`, and the server.

Same model (a 6.6M-parameter Llama: hidden 256, 6 layers, 4 heads, vocabulary 8000, tied
embeddings, random init), same prompts (FLORES-200 dev sentences, two each in ko / hi / vi / en),
same tokenizer (ours, SentencePiece trained on the shared corpora), greedy, 128 new tokens with the
end-of-sequence token ignored so every system makes the same number of tokens. The baseline is
`model.generate` with the KV cache (transformers' default DynamicCache), left padding for batches,
on its own copy of the model loaded by transformers alone.
Both are timed from text: tokenization, prefill, decode. TTFT is a 1-token generation; decode
tokens/s is batch x (128 - 1) / (time for 128 tokens - TTFT). Systems alternate within each round
(the 2 CPU cores are shared with other users, so absolute numbers drift; read the per-round ratios).
Token ids are compared: ours must equal the baseline's exactly.

The server part runs `tongues serve`'s app on 127.0.0.1 with 16 concurrent clients (a bounded
number of requests each round) and compares batching (max batch 8) with the same server decoding
one request at a time (max batch 1).

    .venv/bin/python benchmarks/generate.py                       # threads 1 and 2, 3 rounds
    .venv/bin/python benchmarks/generate.py --threads 2 --rounds 1 --no-write

Writes the `## generate` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from results import write_section  # noqa: E402  (benchmarks/results.py)

ROOT = Path(__file__).resolve().parents[1]
# Running this file puts benchmarks/ first on sys.path, where other benchmarks' names (tokenizers.py)
# would shadow the libraries of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
SHARED = Path("/work/shared/corpora")
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MODEL = {"hidden_size": 256, "intermediate_size": 640, "num_hidden_layers": 6, "num_attention_heads": 4,
         "num_key_value_heads": 4, "tie_word_embeddings": True, "max_position_embeddings": 1024,
         "initializer_range": 0.1}
VOCAB = 8000
FALLBACK_PROMPTS = [
    "서울은 대한민국의 수도이며 가장 큰 도시입니다. 한강이 도시를 가로질러 흐릅니다.",
    "한국어는 한글로 쓰며, 한글은 세종대왕 때 만들어졌습니다.",
    "हिन्दी भारत की एक प्रमुख भाषा है और इसे देवनागरी लिपि में लिखा जाता है।",
    "नई दिल्ली भारत की राजधानी है, जहाँ संसद भवन स्थित है।",
    "Hà Nội là thủ đô của Việt Nam, nằm bên bờ sông Hồng.",
    "Tiếng Việt có sáu thanh điệu và được viết bằng chữ Quốc ngữ.",
    "The river flows through the city and divides it into two parts.",
    "Scientists announced the invention of a new diagnostic tool on Monday.",
]


def build(work: Path) -> Path:
    """The model directory under `work` (made once): our tokenizer + a random-init Llama."""
    model_dir = work / "model"
    if (model_dir / "model.safetensors").exists():
        return model_dir
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        files = {"ko": SHARED / "ko/ud_gsd.train.txt", "hi": SHARED / "hi/hiner.validation.txt",
                 "vi": SHARED / "vi/ud_vtb.train.txt", "en": SHARED / "en/xquad_contexts.txt"}
        if all(f.exists() for f in files.values()):
            from tongues.tokenizers.train import text_file_source, train_tokenizer

            train_tokenizer([text_file_source(f, lang) for lang, f in files.items()], tok_dir, vocab_size=VOCAB,
                            progress=False, log=None)
        else:  # no shared corpora: the tests' small tokenizer keeps the benchmark runnable
            sys.path.insert(0, str(ROOT / "tests"))
            from test_generate import make_tokenizer

            make_tokenizer(tok_dir)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=max(VOCAB, len(tokenizer)), bos_token_id=2, eos_token_id=3, pad_token_id=0,
                         **MODEL)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def prompts() -> list[str]:
    """Two FLORES-200 dev sentences per language (ko, hi, vi, en), or built-in ones without corpora."""
    found: list[str] = []
    for lang in ("ko", "hi", "vi"):
        path = SHARED / f"parallel/flores200.dev.en-{lang}.tsv"
        if not path.exists():
            return FALLBACK_PROMPTS
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[10:12]]
        found += [row[1] for row in rows]
        if lang == "vi":
            found += [row[0] for row in rows]
    return found


def hf_generate(model, tokenizer, texts: list[str], n: int) -> tuple[list[list[int]], float]:
    """transformers' model.generate: greedy, KV cache, eos ignored; (new token ids, seconds)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    start = time.perf_counter()
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, generation_config=config)
    seconds = time.perf_counter() - start
    return out[:, batch["input_ids"].shape[1]:].tolist(), seconds


def ours_generate(lm, texts: list[str], n: int) -> tuple[list[list[int]], float]:
    """tongues: the same, through LanguageModel.run (eos ignored); (new token ids, seconds)."""
    start = time.perf_counter()
    params = lm.params(max_new_tokens=n, temperature=0)
    seqs = [lm.new_sequence(lm.encode(t), params, stop_token_ids=frozenset()) for t in texts]
    results = lm.run(seqs)
    return [r.token_ids for r in results], time.perf_counter() - start


def bench_generate(lm, baseline, texts: list[str], threads: int, rounds: int, n: int) -> list[dict]:
    """Rows (threads, batch, system) with median TTFT, decode and end-to-end tokens/s, speedups.
    `baseline`: the same model as loaded by transformers alone (tongues re-lays out the weights it runs)."""
    import torch

    torch.set_num_threads(threads)
    lm.tokenizer.padding_side = "left"
    systems = {"transformers generate": lambda group, k: hf_generate(baseline, lm.tokenizer, group, k),
               "tongues": lambda group, k: ours_generate(lm, group, k)}
    cases = {1: [[t] for t in texts[::2]], 8: [texts]}  # batch 1: one prompt per language, one by one
    for fn in systems.values():  # warm up (allocator, lazy init)
        fn(texts[:1], 4)
    records: dict[tuple[int, str], list[tuple[float, float]]] = {}
    same: dict[int, bool] = {}
    for r in range(rounds):
        for batch, groups in cases.items():
            order = list(systems) if r % 2 == 0 else list(systems)[::-1]
            outputs = {}
            for name in order:
                ttft = full = 0.0
                ids: list[list[int]] = []
                for group in groups:
                    ttft += systems[name](group, 1)[1]
                    got, seconds = systems[name](group, n)
                    full += seconds
                    ids += got
                records.setdefault((batch, name), []).append((ttft / len(groups), full / len(groups)))
                outputs[name] = ids
            same[batch] = same.get(batch, True) and outputs["tongues"] == outputs["transformers generate"]
            print(f"threads {threads} round {r + 1} batch {batch}: "
                  + ", ".join(f"{k} {v[-1][1]:.2f}s" for (b, k), v in records.items() if b == batch), flush=True)
    rows = []
    for (batch, name), values in records.items():
        ttft = statistics.median(v[0] for v in values)
        full = statistics.median(v[1] for v in values)
        base = records[(batch, "transformers generate")]
        ratios = [b[1] / v[1] for b, v in zip(base, values, strict=True)]
        ratio = statistics.median(ratios)
        decode_ratio = statistics.median((b[1] - b[0]) / (v[1] - v[0]) for b, v in zip(base, values, strict=True))
        rows.append({"threads": threads, "batch": batch, "system": name, "ttft_ms": 1000 * ttft,
                     "decode_tok_s": batch * (n - 1) / (full - ttft), "e2e_tok_s": batch * n / full,
                     "speedup": ratio, "decode_speedup": decode_ratio, "identical": same[batch],
                     "ratio_range": (min(ratios), max(ratios))})
    return rows


def bench_server(lm, texts: list[str], rounds: int, clients: int, requests: int, max_tokens: int) -> list[dict]:
    """16 concurrent clients against the batching server and the same server with max batch 1."""
    from tongues.infer.serve import RunningServer, ServerLimits, create_app

    def load(batch_size: int) -> dict:
        app = create_app(lm, model_name="bench", limits=ServerLimits(max_batch_size=batch_size, max_queue=requests,
                                                                     max_tokens=max_tokens, timeout_s=600))
        with RunningServer(app) as server:
            def one(i: int) -> tuple[float, int, int]:
                body = json.dumps({"model": "bench", "prompt": texts[i % len(texts)], "max_tokens": max_tokens,
                                   "temperature": 0}).encode()
                request = urllib.request.Request(server.url + "/v1/completions", data=body,
                                                 headers={"Content-Type": "application/json"})
                start = time.perf_counter()
                with urllib.request.urlopen(request, timeout=600) as response:
                    usage = json.loads(response.read())["usage"]
                    return time.perf_counter() - start, response.status, usage["completion_tokens"]

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                done = list(pool.map(one, range(requests)))
            wall = time.perf_counter() - start
        latencies = sorted(d[0] for d in done)
        return {"req_s": requests / wall, "tok_s": sum(d[2] for d in done) / wall,
                "p50": statistics.median(latencies), "p99": statistics.quantiles(latencies, n=100)[98],
                "errors": sum(d[1] != 200 for d in done)}

    runs: dict[int, list[dict]] = {8: [], 1: []}
    for r in range(rounds):
        for batch_size in ((8, 1) if r % 2 == 0 else (1, 8)):
            runs[batch_size].append(load(batch_size))
            print(f"server round {r + 1} max batch {batch_size}: {runs[batch_size][-1]}", flush=True)
    rows = []
    for batch_size, values in runs.items():
        row = {k: statistics.median(v[k] for v in values) for k in values[0]}
        row["errors"] = sum(v["errors"] for v in values)
        row["speedup"] = statistics.median(v["req_s"] / b["req_s"] for v, b in zip(values, runs[1], strict=True))
        rows.append({"max_batch": batch_size, **row})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tongues-bench-generate"),
                        help="where the tokenizer and model are built (reused when present)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts to run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per measurement")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per prompt")
    parser.add_argument("--clients", type=int, default=16, help="concurrent server clients")
    parser.add_argument("--requests", type=int, default=48, help="server requests per round")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each server request")
    parser.add_argument("--server-threads", type=int, default=1,
                        help="torch threads while serving (the HTTP server and the clients need a core too)")
    parser.add_argument("--no-server", action="store_true", help="skip the server measurement")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    import tongues

    hf_logging.disable_progress_bar()
    began = time.perf_counter()
    model_dir = build(args.work)
    lm = tongues.load(model_dir, device="cpu")
    baseline = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    texts = prompts()
    n_params = sum(p.numel() for p in lm.model.parameters())
    lengths = [len(lm.encode(t)) for t in texts]
    print(f"{lm}; prompts {min(lengths)}-{max(lengths)} tokens", flush=True)
    rows = [row for threads in args.threads for row in bench_generate(lm, baseline, texts, threads, args.rounds,
                                                                      args.new_tokens)]
    server_rows = []
    if not args.no_server:
        torch.set_num_threads(args.server_threads)
        server_rows = bench_server(lm, texts, args.rounds, args.clients, args.requests, args.max_tokens)

    command = "python benchmarks/generate.py " + " ".join(sys.argv[1:])
    out = [
        "## generate", "",
        f"Run {time.strftime('%Y-%m-%d')} with `{command.strip()}` on {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} shared CPU cores, "
        f"torch {torch.__version__}, total {(time.perf_counter() - began) / 60:.1f} min. Model: "
        f"{n_params / 1e6:.1f}M-parameter Llama (hidden 256, 6 layers, vocabulary {lm.model.config.vocab_size}, "
        f"random init, float32), our SentencePiece tokenizer; {len(texts)} FLORES-200 dev prompts "
        f"({min(lengths)}-{max(lengths)} tokens), {args.new_tokens} new tokens, greedy, eos ignored. Batch 1 runs "
        "one prompt per language in turn; batch 8 all prompts at once (left padding). Medians over "
        f"{args.rounds} alternating rounds; speedup = median of the per-round ratios (baseline time / ours). "
        "Token ids are compared with the baseline's in every round.",
        "",
        "| threads | batch | system | TTFT ms | decode tok/s | end-to-end tok/s | speedup (end-to-end) "
        "| per-round range | speedup (decode) | token ids identical |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = row["system"] == "tongues"
        low, high = row["ratio_range"]
        speedups = (f"{row['speedup']:.2f}x | {low:.2f}-{high:.2f}x | {row['decode_speedup']:.2f}x" if ours
                    else "1.00x | - | 1.00x")
        identical = ("yes" if row["identical"] else "NO") if ours else "-"
        out.append(f"| {row['threads']} | {row['batch']} | {row['system']} | {row['ttft_ms']:.1f} | "
                   f"{row['decode_tok_s']:.0f} | {row['e2e_tok_s']:.0f} | {speedups} | {identical} |")
    out += ["", "With 2 threads each op of both systems waits for the second core, which other jobs on this "
            "shared machine often hold: those rows swing by several times from round to round (see the "
            "per-round range); the 1-thread rows are the steady comparison here."] if 2 in args.threads else []
    if server_rows:
        out += [
            "",
            f"Server (`tongues serve` app on 127.0.0.1, {args.clients} concurrent clients, {args.requests} "
            f"requests per round, /v1/completions with max_tokens {args.max_tokens}, greedy; torch threads "
            f"{args.server_threads}): batching against the same server decoding one request at a time; "
            "medians over the rounds, speedup = median of the per-round requests/s ratios. p99 of "
            f"{args.requests} requests is close to their maximum.",
            "",
            "| max batch | requests/s | generated tok/s | p50 latency s | p99 latency s | errors | speedup |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in server_rows:
            out.append(f"| {row['max_batch']} | {row['req_s']:.2f} | {row['tok_s']:.0f} | {row['p50']:.2f} | "
                       f"{row['p99']:.2f} | {row['errors']} | {row['speedup']:.2f}x |")
    text = "\n".join(out) + "\n"
    print("\n" + text)
    if not args.no_write:
        write_section(text)
        print(f"updated {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
