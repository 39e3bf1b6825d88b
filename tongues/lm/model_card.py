"""The model card (README.md with Hugging Face YAML metadata) and training-curve plot of an exported model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_training_curve(run_dir: Path, out_png: Path) -> bool:
    """Train loss (and validation loss, bits per byte) against step, as a PNG. False if no data."""
    train, evals = read_jsonl(run_dir / "train.jsonl"), read_jsonl(run_dir / "eval.jsonl")
    train = [r for r in train if not r.get("skipped")]
    if not train:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, alpha=0.8, label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation loss")
        bpb = ax.twinx()
        bpb.plot([r["step"] for r in evals], [r["val_bpb"] for r in evals], "s--", color="tab:green",
                 label="validation bits/byte")
        bpb.set_ylabel("bits per UTF-8 byte")
        bpb.legend(loc="center right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return True


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _license(corpora: list[dict[str, Any]]) -> str:
    found = {str(c["license"]).lower() for c in corpora if c.get("license") and c["license"] != "unknown"}
    return found.pop() if len(found) == 1 else "other"


def _scalars(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar entries of a stats / plan dict, one nesting level flattened (key.sub)."""
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            rows += _scalars(v, f"{k}.")
        elif isinstance(v, int | float | str | bool) and len(str(v)) < 80:
            rows.append((prefix + k, f"{v:,.4g}" if isinstance(v, float) else v))
    return rows


def render(
    *,
    name: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    corpora: list[dict[str, Any]],
    plan: dict[str, Any] | None,
    tokenizer: dict[str, Any],
    has_curve: bool,
) -> str:
    """README.md text: YAML front matter, results, training setup, data card summary, plan, usage."""
    langs = sorted({c["lang"] for c in corpora if c.get("lang")})
    front = {
        "language": langs or None,
        "license": _license(corpora),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["tongues", "llama", "pretrained", "from-scratch", *langs],
    }
    if metrics.get("val_bpb") is not None:
        front["model-index"] = [{"name": name, "results": [{
            "task": {"type": "text-generation"},
            "dataset": {"name": "validation split of the training corpora", "type": "tongues"},
            "metrics": [{"type": "bits_per_byte", "value": round(metrics["val_bpb"], 4)}]}]}]
    params = metrics.get("params", 0)
    lines = ["---", yaml.safe_dump({k: v for k, v in front.items() if v is not None}, sort_keys=False,
                                   allow_unicode=True).strip(), "---", "", f"# {name}", "",
             f"A {_count(params)}-parameter Llama decoder ({', '.join(langs) or 'unknown language'}) "
             f"trained from scratch with tongues on {metrics.get('tokens', 0):,} tokens. "
             "It is a base model (no instruction tuning). It loads with plain transformers; no tongues code "
             "is needed.", ""]
    lines += ["## Results", ""]
    if metrics.get("val_bpb") is not None:
        lines += [f"Validation bits per UTF-8 byte: **{metrics['val_bpb']:.4f}** "
                  f"(loss {metrics['val_loss']:.4f} nats/token).", "",
                  "| corpus | val loss (nats/token) | bits per byte |", "|---|---|---|"]
        lines += [f"| {k} | {v['loss']:.4f} | {v['bpb']:.4f} |" for k, v in (metrics.get("val") or {}).items()]
        lines.append("")
    if has_curve:
        lines += ["![training curve](training_curve.png)", ""]
    model_keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "vocab_size", "max_position_embeddings", "tie_word_embeddings")
    lines += ["## Model", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {config[k]} |" for k in model_keys if k in config]
    train_keys = ("device", "steps", "tokens", "skipped_steps", "processes", "tokens_per_s", "mfu", "final_loss",
                  "best_step", "exported", "early_stopped_at")
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    for k in train_keys:
        if metrics.get(k) is not None:
            v = metrics[k]
            shown = (f"{v:.1%}" if k == "mfu" else f"{v:,.4g}" if isinstance(v, float)
                     else f"{v:,}" if isinstance(v, int) else str(v))
            lines.append(f"| {k} | {shown} |")
    for k, v in (metrics.get("settings") or {}).items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Data", ""]
    for c in corpora:
        lines += [f"### {c.get('name', 'corpus')} ({c.get('lang', '?')}, license {c.get('license', 'unknown')})", ""]
        rows = _scalars(c.get("stats") or {})
        if rows:
            lines += ["| statistic | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    if plan:
        lines += ["## Plan (scaling laws)", ""]
        if plan.get("extrapolated"):
            lines += ["**The predicted loss is an extrapolation, not a forecast:** "
                      + "; ".join(plan.get("extrapolation") or []) + ".", ""]
        memory = plan.get("memory") or {}
        if memory.get("assumed_device"):  # the planner was given no device: its memory table is for another one
            lines += [f"(The plan's memory figures assume a {memory.get('device')}, not the device this model was "
                      f"trained on ({metrics.get('device', 'see Training')}); they are left out here.)", ""]
            plan = {k: v for k, v in plan.items() if k != "memory"}
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _scalars(plan)
                  if not (k == "predicted_loss" and plan.get("extrapolated"))]
        lines.append("")
    lines += ["## Tokenizer", "", f"Vocabulary {tokenizer.get('vocab_size')}, tokenizer.json sha256 "
              f"`{tokenizer.get('sha256', '?')}`.", "", "## Usage", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'tok = AutoTokenizer.from_pretrained("PATH")', 'model = AutoModelForCausalLM.from_pretrained("PATH")',
              'ids = tok("…", return_tensors="pt").input_ids',
              "print(tok.decode(model.generate(ids, max_new_tokens=30)[0]))", "```", ""]
    return "\n".join(lines)
