"""Benchmark: instruction tuning and RLHF at real size on this CPU, per language.

Runs (or reads) the recipe benchmarks/instruct.yaml: an 11.5M-parameter multilingual base (ko, hi, vi, en; one
8,192-piece tokenizer) pretrained on /work/shared/corpora plus the embedded corpora, then SFT (the embedded
conversations of ko, hi, vi and the public Korean chatbot Q/A pairs), a reward model, DPO and GRPO (language
consistency + the reward model + length) on the embedded sets. Then, per language, on held-out data only (the
stable 20% hash split of every set):

- reward model pair accuracy (goal >= 0.80);
- DPO implicit-reward accuracy: beta * (log pi - log pi_ref) of chosen above rejected, the reference being the
  SFT model, as TRL's DPO evaluation computes it (goal >= 0.70);
- language consistency of greedy answers (an answer counts when >= 90% of its letters are in the prompt's
  language) for the base, SFT, DPO and GRPO models (goal >= 0.98 after GRPO);
- the alignment tax: held-out prose bits per byte of the final model against the base (goal <= +3%);
- SFT speed: tongues' SFT settings against TRL's SFTTrainer with its defaults (only `use_cpu` set), same model,
  same data, same number of conversations, rounds alternating; tokens per second of training and the held-out
  answer loss each reaches (goal >= 1.2x at equal or lower loss).

    .venv/bin/python benchmarks/instruct.py                 # runs the recipe first (about an hour), then measures
    .venv/bin/python benchmarks/instruct.py --run runs/bench --skip-run [--sft-rounds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.results import report  # noqa: E402

LANGS = ("ko", "hi", "vi")
GOALS = {"reward": 0.80, "dpo": 0.70, "consistency": 0.98, "tax": 0.03, "sft_speed": 1.2}


def held_conversations(lang: str) -> list:
    from tongues.instruct.data import load_conversations, split_records

    return split_records(load_conversations([f"embedded:{lang}"]))[1]


def held_preferences(lang: str) -> list:
    from tongues.instruct.data import load_preferences, split_records

    return split_records(load_preferences([f"embedded:{lang}"]))[1]


def answer_logprob(model, tokenizer, prompt: list[dict], answer: str) -> float:
    """Sum of log-probabilities of the assistant turn (its <|im_end|> included) after `prompt`: the tokens
    the chat template's assistant mask marks, as TRL's DPO scores them (tongues.eval.scoring.Scorer's
    text-pair split could cut the template's tokens differently at the turn boundary)."""
    import torch

    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], return_dict=True,
                                         return_assistant_tokens_mask=True)
    ids = torch.tensor([full["input_ids"][-512:]])
    mask = torch.tensor(full["assistant_masks"][-512:][1:], dtype=torch.bool)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    picked = logp.gather(1, ids[0, 1:, None])[:, 0]
    return float(picked[mask].sum())


def dpo_accuracy(policy_dir: Path, reference_dir: Path, pairs: list, beta: float) -> tuple[float, float]:
    """(accuracy, mean margin) of DPO's implicit reward on `pairs`."""
    from transformers import AutoModelForCausalLM

    from tongues.instruct.training import load_tokenizer

    tok = load_tokenizer(policy_dir)
    pol = AutoModelForCausalLM.from_pretrained(policy_dir, use_safetensors=True).eval()
    ref = AutoModelForCausalLM.from_pretrained(reference_dir, use_safetensors=True).eval()
    right, margins = 0, []
    for p in pairs:
        rc = beta * (answer_logprob(pol, tok, p.prompt, p.chosen) - answer_logprob(ref, tok, p.prompt, p.chosen))
        rr = beta * (answer_logprob(pol, tok, p.prompt, p.rejected) - answer_logprob(ref, tok, p.prompt, p.rejected))
        right += rc > rr
        margins.append(rc - rr)
    return right / max(1, len(pairs)), sum(margins) / max(1, len(margins))


def answers_by_id(stage_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """({id: base answer}, {id: answer}) from a chat stage's answers.jsonl."""
    rows = [json.loads(line) for line in (stage_dir / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r["base"] for r in rows}, {r["id"]: r["answer"] for r in rows}


def consistency(conversations: list, answers: dict[str, str]) -> tuple[float, int]:
    from tongues.instruct.evaluate import chat_scores

    held = [c for c in conversations if c.id in answers]
    if not held:
        return float("nan"), 0
    return chat_scores(held, [answers[c.id] for c in held])["language_consistency"], len(held)


# ---- SFT speed: tongues' settings against TRL's defaults ------------------------------------------------


def sft_round(system: str, base: Path, data: list[str], n_train: int, out: Path) -> dict:
    """One SFT run in a fresh process: {'seconds', 'tokens', 'heldout_loss'}."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(_HERE.parent)!r})
from pathlib import Path
from tongues.instruct.data import load_conversations, split_records
from tongues.instruct.sft import conversations_dataset
from tongues.instruct.training import load_tokenizer, trl_config, count_params
from transformers import AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer
base, out = Path({str(base)!r}), Path({str(out)!r})
train, held = split_records(load_conversations({data!r}))
train = train[:{n_train}]
held = held[:128]
tok = load_tokenizer(base)
model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
common = dict(assistant_only_loss=True, max_length=512, num_train_epochs=1, report_to=[], save_strategy="no",
              eval_strategy="no", logging_steps=10, disable_tqdm=True, seed=0, data_seed=0)
if {system!r} == "trl":
    # TRL's defaults: only use_cpu set (and what any run needs: the output, no hub/report, our template's loss mask)
    args = SFTConfig(output_dir=str(out), use_cpu=True, **common)
else:
    args = trl_config(SFTConfig, out, params=count_params(model), seed=0,
                      defaults={{"per_device_train_batch_size": 8, "learning_rate": 1e-3, "lr_scheduler_type": "cosine",
                                "warmup_ratio": 0.05}}, overrides=common)
trainer = SFTTrainer(model=model, args=args, train_dataset=conversations_dataset(train),
                     eval_dataset=conversations_dataset(held), processing_class=tok)
tokens = sum(min(len(x), 512) for x in trainer.train_dataset["input_ids"])
t0 = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - t0
loss = trainer.evaluate()["eval_loss"]
settings = {{k: getattr(args, k, None) for k in ("bf16", "gradient_checkpointing", "activation_checkpointing",
            "per_device_train_batch_size", "learning_rate", "packing", "padding_free")}}
print("RESULT " + json.dumps({{"seconds": seconds, "tokens": tokens, "heldout_loss": loss, "settings": settings}}))
"""
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"sft round {system} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/bench", help="the recipe's run directory")
    parser.add_argument("--skip-run", action="store_true", help="do not run the recipe (it is finished)")
    parser.add_argument("--sft-rounds", type=int, default=2, help="alternating rounds of the SFT speed comparison")
    parser.add_argument("--sft-conversations", type=int, default=480)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    run = Path(args.run)
    recipe = _HERE / "instruct.yaml"
    if not args.skip_run:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tongues", "run", str(recipe)], check=True)
        print(f"recipe finished in {time.perf_counter() - t0:.0f}s")
    from tongues.instruct.evaluate import RewardScorer, bits_per_byte, heldout_texts, pairwise_accuracy

    base = run / "pretrain-multi" / "model"
    stage = {m: run / f"{m}-multi" for m in ("sft", "reward", "dpo", "grpo")}
    metrics = {m: json.loads((d / "metrics.json").read_text(encoding="utf-8")) for m, d in stage.items()}
    manifests = {d.name: json.loads((d / "manifest.json").read_text(encoding="utf-8"))
                 for d in [run / "pretrain-multi", *stage.values()] if (d / "manifest.json").is_file()}
    pre = manifests["pretrain-multi"]["metrics"]
    beta = float(metrics["dpo"]["job"]["overrides"].get("beta", 0.1))
    scorer = RewardScorer.load(stage["reward"] / "model")
    answers = {"base": answers_by_id(stage["sft"])[0]}
    for m in ("sft", "dpo", "grpo"):
        answers[m] = answers_by_id(stage[m])[1]
    rows = {}
    for lang in LANGS:
        pairs, convs = held_preferences(lang), held_conversations(lang)
        rm = pairwise_accuracy(scorer, pairs)
        dpo_acc, dpo_margin = dpo_accuracy(stage["dpo"] / "model", stage["sft"] / "model", pairs, beta)
        texts = heldout_texts([lang])
        bpb_base, bpb_final = bits_per_byte(base, texts), bits_per_byte(stage["grpo"] / "model", texts)
        rates = {m: consistency(convs, answers[m]) for m in answers}  # (rate, prompts judged)
        rows[lang] = {"pairs": rm["n"], "rm": rm["accuracy"], "rm_by_failure": rm["by_failure"], "dpo": dpo_acc,
                      "dpo_margin": dpo_margin, "bpb_base": bpb_base, "bpb_final": bpb_final,
                      **{f"lc_{m}": rate for m, (rate, _) in rates.items()}, "prompts": rates["grpo"][1]}
        print(lang, rows[lang], flush=True)
    speed: dict[str, list] = defaultdict(list)
    sft_data = metrics["sft"]["job"]["data"]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.sft_rounds):
            for system in (("tongues", "trl") if r % 2 == 0 else ("trl", "tongues")):
                result = sft_round(system, base, sft_data, args.sft_conversations, Path(tmp) / f"{system}{r}")
                speed[system].append(result)
                print(system, result, flush=True)
    tps = {s: [x["tokens"] / x["seconds"] for x in v] for s, v in speed.items()}
    ratios = [a / b for a, b in zip(tps.get("tongues", []), tps.get("trl", []), strict=True)]
    ratio = sorted(ratios)[len(ratios) // 2] if ratios else float("nan")
    loss = {s: sum(x["heldout_loss"] for x in v) / len(v) for s, v in speed.items()} or {"tongues": float("nan"),
                                                                                         "trl": float("nan")}

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    minutes = manifests.get("pretrain-multi", {}).get("wall_time_s", 0) / 60
    lines = ["## instruct", "",
             f"`.venv/bin/python benchmarks/instruct.py` ({date.today().isoformat()}; recipe benchmarks/instruct.yaml, "
             f"2 CPU cores). Base: {pre.get('params', 0) / 1e6:.1f}M parameters, {pre.get('tokens', 0) / 1e6:.1f}M "
             f"tokens in {minutes:.0f} min (ko, hi, vi, en; public corpora + embedded), held-out val bpb "
             f"{pre.get('val_bpb', float('nan')):.3f}. Stage wall times: "
             + ", ".join(f"{n} {m.get('wall_time_s', 0) / 60:.1f} min" for n, m in manifests.items()) + ".",
             "All figures on held-out data (the stable 20% hash split of the embedded sets).", "",
             "| lang | RM pair acc (n) | DPO implicit-reward acc (margin) | lang. consistency base / SFT / DPO / GRPO "
             "(prompts) | prose bpb base → final (tax) |", "|---|---|---|---|---|"]
    for lang, r in rows.items():
        lines.append(f"| {lang} | {r['rm']:.2f} ({r['pairs']}) | {r['dpo']:.2f} ({r['dpo_margin']:+.3f}) | "
                     f"{r['lc_base']:.2f} / {r['lc_sft']:.2f} / {r['lc_dpo']:.2f} / {r['lc_grpo']:.2f} ({r['prompts']}) | "
                     f"{r['bpb_base']:.3f} → {r['bpb_final']:.3f} ({100 * (r['bpb_final'] / r['bpb_base'] - 1):+.1f}%) |")
    worst = {"rm": min(r["rm"] for r in rows.values()), "dpo": min(r["dpo"] for r in rows.values()),
             "lc": min(r["lc_grpo"] for r in rows.values()),
             "tax": max(r["bpb_final"] / r["bpb_base"] - 1 for r in rows.values())}
    failures = defaultdict(list)
    for r in rows.values():
        for kind, acc in r["rm_by_failure"].items():
            failures[kind].append(acc)
    lines += ["", "Reward model accuracy by failure kind (mean over languages): "
              + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in sorted(failures.items())) + ".", "",
              "SFT speed: not measured (--sft-rounds 0)." if not ratios else
              f"SFT speed ({args.sft_rounds} alternating rounds, {args.sft_conversations} training conversations each, "
              f"fresh process per run): tongues {', '.join(f'{x:,.0f}' for x in tps['tongues'])} tokens/s, TRL defaults "
              f"{', '.join(f'{x:,.0f}' for x in tps['trl'])} tokens/s; median ratio {ratio:.2f}x; held-out answer loss "
              f"after the same conversations: tongues {loss['tongues']:.3f}, TRL defaults {loss['trl']:.3f} nats/token. "
              f"Settings: tongues {json.dumps(speed['tongues'][0]['settings'])}; TRL {json.dumps(speed['trl'][0]['settings'])}.",
              "", "Goals: "
              f"reward model >= {GOALS['reward']:.2f} in each language: {met(worst['rm'] >= GOALS['reward'])} (lowest {worst['rm']:.2f}); "
              f"DPO >= {GOALS['dpo']:.2f}: {met(worst['dpo'] >= GOALS['dpo'])} (lowest {worst['dpo']:.2f}); "
              f"consistency after GRPO >= {GOALS['consistency']:.2f}: {met(worst['lc'] >= GOALS['consistency'])} "
              f"(lowest {worst['lc']:.2f}); alignment tax <= {100 * GOALS['tax']:.0f}%: "
              f"{met(worst['tax'] <= GOALS['tax'])} (highest {100 * worst['tax']:+.1f}%); SFT >= {GOALS['sft_speed']}x TRL "
              f"at equal loss: {met(ratio >= GOALS['sft_speed'] and loss['tongues'] <= loss['trl'] * 1.01)} ({ratio:.2f}x)."]
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
