"""Benchmark: what `make demo` shows a newcomer — its models against a character trigram, its time.

Reads a finished demo run (default runs/demo, from `make demo`) and, per language (ko, hi, vi):
- held-out bits per byte of the demo model and of the character trigram (tongues.eval.ngram)
  trained on the very same train split, on two held-out texts: the embedded heldout.txt (the
  demo's own figure) and public sentences of another kind from /work/shared/corpora (UD Korean
  GSD dev, HiNER validation, UD Vietnamese VTB dev; never in any corpus here), grouped five
  sentences to a paragraph like the corpora;
- the goal: each model at <= 0.9x the trigram;
- the wall time of every stage, from the run's manifests, and the total.

    make demo && .venv/bin/python benchmarks/demo.py [--run runs/demo] [--wall SECONDS] [--no-write]

`--wall` records the measured `time make demo` (install included) beside the stages' sum.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.results import report  # noqa: E402

SHARED = Path("/work/shared/corpora")
PUBLIC = {"ko": "ko/ud_gsd.dev.txt", "hi": "hi/hiner.validation.txt", "vi": "vi/ud_vtb.dev.txt"}
GOAL = 0.9


def paragraphs(path: Path, group: int = 5, limit: int = 400) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(lines[i:i + group]) for i in range(0, min(len(lines), group * limit), group)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/demo", help="the demo's run directory")
    parser.add_argument("--wall", type=float, default=None, help="measured seconds of `make demo`, install included")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update RESULTS.md")
    args = parser.parse_args()
    from tongues.data.prepared import read_texts
    from tongues.eval.ngram import CharNGram
    from tongues.instruct.evaluate import bits_per_byte, heldout_texts

    run = Path(args.run)
    rows, stages = [], []
    for manifest in sorted(run.glob("*/manifest.json")):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        stages.append((manifest.parent.name, m.get("wall_time_s") or 0.0, m.get("status")))
    for lang in ("ko", "hi", "vi"):
        model = run / f"pretrain-{lang}" / "model"
        if not (model / "config.json").is_file():
            continue
        floor = CharNGram.fit(list(read_texts(run / f"data-{lang}", "train")))
        texts = {"embedded heldout.txt": heldout_texts([lang])}
        if (SHARED / PUBLIC[lang]).is_file():
            texts[f"public: {PUBLIC[lang]}"] = paragraphs(SHARED / PUBLIC[lang])
        params = json.loads((run / f"pretrain-{lang}" / "manifest.json").read_text())["metrics"]["params"]
        for name, docs in texts.items():
            ours, tri = bits_per_byte(model, docs), floor.bits_per_byte(docs)
            rows.append((lang, params, name, ours, tri, ours / tri))
            print(f"{lang} {name}: model {ours:.3f}, trigram {tri:.3f}, {ours / tri:.3f}x", flush=True)
    total = sum(s for _, s, _ in stages)
    lines = [
        "## demo",
        "",
        f"`make demo` (recipes/demo.yaml) on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{date.today().isoformat()}; `.venv/bin/python benchmarks/demo.py --run {args.run}"
        + (f" --wall {args.wall:.0f}" if args.wall else "") + "`.",
        "",
        f"Held-out bits per byte of each demo model beside a character trigram (absolute discounting) trained on "
        f"the same train split; goal <= {GOAL}x.",
        "",
        "| lang | params | held-out text | model bpb | trigram bpb | ratio | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for lang, params, name, ours, tri, ratio in rows:
        verdict = "met" if ratio <= GOAL else ("beats the trigram, goal not met" if ratio < 1 else "NOT met")
        lines.append(f"| {lang} | {params:,} | {name} | {ours:.3f} | {tri:.3f} | {ratio:.3f} | {verdict} |")
    lines += ["", f"Stages: {total:.0f} s in all"
              + (f"; `time make demo` from a fresh clone, install included: {args.wall:.0f} s "
                 f"({'within' if args.wall <= 600 else 'over'} the 10-minute goal)" if args.wall else "") + ".", "",
              "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {secs:.1f} |" for name, secs, _ in stages]
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
