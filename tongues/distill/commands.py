"""CLI: `tongues distill` (assistants) — see tongues.distill.assistant."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """\
methods:
  logits     (default) the teacher's top-k distributions cached once, the student trained by the
             pretraining loop on alpha*CE + (1-alpha)*T^2*KL; --data: token or prepared corpora
  sequence   the teacher answers the prompts, the student is SFT'd on the answers (any tokenizers)
  on-policy  TRL DistillationTrainer (--set beta=0 forward KL, 1 reverse KL, 0.5 JSD); gkd: TRL GKD
  gold       cross-tokenizer: TRL GOLDTrainer with the ULD loss
  (sequence / on-policy / gkd / gold: --data takes conversations, e.g. embedded:ko)

--set KEY=VALUE: pretraining keys for logits (e.g. train_tokens=500000, lr=2e-3), TRL config keys
for the others. Writes OUT/student/model, OUT/scratch/model (logits), OUT/report.md, OUT/metrics.json.

examples:
  tongues distill --teacher runs/demo/pretrain-ko/model --student-layers 2 --data runs/demo/tokenize-ko --out runs/d-ko
  tongues distill --teacher SmolLM2-135M-Instruct.Q4_1.gguf --student-params 20M --tokenizer runs/demo/tokenizer-multi \\
      --method sequence --data embedded:ko --out runs/d-smol
"""


def register(commands: Any) -> None:
    p = commands.add("distill", "distill a teacher into a smaller student (cached logits, sequence, on-policy, GOLD)",
                     _handle)
    p.epilog = EPILOG
    p.add_argument("--teacher", required=True, help="teacher: a model directory, a hub name, or a .gguf file")
    p.add_argument("--data", action="append", default=[], required=True, metavar="SRC",
                   help="token/prepared corpora (logits) or conversations (other methods); repeatable")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--method", default="logits", choices=["logits", "sequence", "on-policy", "gkd", "gold"],
                   help="how the teacher teaches (see below)")
    p.add_argument("--student", metavar="DIR", help="an existing student model directory")
    p.add_argument("--student-params", metavar="N", help="a planner shape of N parameters (with --tokenizer)")
    p.add_argument("--student-layers", type=int, metavar="K", help="the teacher with K of its layers, evenly spaced")
    p.add_argument("--tokenizer", metavar="DIR", help="the student's tokenizer (with --student-params)")
    p.add_argument("--objective", default="fkl", help="logits: fkl | rkl | jsd:BETA")
    p.add_argument("--temperature", type=float, default=1.0, help="logits: softmax temperature of both models")
    p.add_argument("--alpha", type=float, default=0.5, help="logits: weight of the cross-entropy on the true token")
    p.add_argument("--top-k", dest="k", type=int, default=32, help="logits: teacher tokens cached per position")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a pretraining key (logits) or a TRL config key (others); repeatable")
    p.add_argument("--no-scratch", action="store_true", help="logits: skip the scratch student of the report")
    p.add_argument("--seed", type=int, default=0, help="seed of initialization and data order")


def _handle(args: argparse.Namespace) -> int:
    from tongues.distill.assistant import DistillJob, distill
    from tongues.instruct.training import parse_sets
    from tongues.plan.quantity import parse_quantity

    job = DistillJob(teacher=args.teacher, data=args.data, out=Path(args.out), method=args.method,
                     student=args.student, student_params=parse_quantity(args.student_params, "--student-params"),
                     student_layers=args.student_layers, tokenizer=args.tokenizer, objective=args.objective,
                     temperature=args.temperature, alpha=args.alpha, k=args.k, overrides=parse_sets(args.overrides),
                     seed=args.seed, scratch=not args.no_scratch)
    distill(job)
    print(f"wrote {args.out}/report.md, {args.out}/student/model")
    return 0
