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
    register_encoder(commands)
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


ENCODER_EPILOG = """\
examples:
  tongues encoder distill --teacher openai/clip-vit-large-patch14 --student runs/demo/pretrain-ko/model \\
      --parallel tongues/resources/parallel/en-ko.tsv --out runs/enc-ko
  tongues encoder eval --encoder runs/enc-ko/encoder --parallel tongues/resources/parallel/en-ko.tsv
  tongues imagine "지붕 위의 고양이" --encoder runs/enc-ko/encoder --pipeline runwayml/stable-diffusion-v1-5 --out cat.png
"""


def register_encoder(commands: Any) -> None:
    p = commands.add("encoder distill", "align a national-language prompt encoder to a frozen English text encoder",
                     _handle_encoder_distill)
    p.epilog = ENCODER_EPILOG
    p.add_argument("--teacher", required=True, help="a CLIPTextModel / SD or SDXL pipeline directory or hub name, or "
                                                    "any text encoder (pooled target only)")
    p.add_argument("--student", required=True, metavar="DIR", help="a tongues model of the language (its trunk)")
    p.add_argument("--parallel", action="append", default=[], required=True, metavar="TSV",
                   help="English<TAB>translation pairs (repeatable); 20%% are held out by a stable hash")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (OUT/encoder is the encoder)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the alignment head")
    p.add_argument("--trunk-lr", type=float, default=2e-4, help="learning rate of the student's trunk")
    p.add_argument("--seed", type=int, default=0, help="seed")
    e = commands.add("encoder eval", "xx->en retrieval of a prompt encoder against its teacher", _handle_encoder_eval)
    e.add_argument("--encoder", required=True, metavar="DIR", help="an encoder directory (tongues encoder distill)")
    e.add_argument("--parallel", action="append", default=[], required=True, metavar="TSV", help="pairs to score")
    e.add_argument("--teacher", default=None, help="the teacher (default: the one the encoder was aligned to)")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    i = commands.add("imagine", "text to image: a diffusers pipeline conditioned by a tongues prompt encoder",
                     _handle_imagine)
    i.epilog = ENCODER_EPILOG
    i.add_argument("prompt", help="the picture, in the encoder's language")
    i.add_argument("--encoder", required=True, metavar="DIR", help="a prompt encoder directory")
    i.add_argument("--pipeline", required=True, metavar="NAME|DIR", help="a diffusers text-to-image pipeline")
    i.add_argument("--out", required=True, metavar="PNG", help="where to write the image")
    i.add_argument("--steps", type=int, default=25, help="denoising steps")
    i.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    i.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    i.add_argument("--size", type=int, default=None, help="height and width in pixels (default: the pipeline's)")
    i.add_argument("--assistant", metavar="DIR", help="a chat model that first expands the request into a "
                                                      "detailed picture description")


def _handle_encoder_distill(args: argparse.Namespace) -> int:
    from tongues.distill.encoder import EncoderJob, retrieval_line, train_encoder

    metrics = train_encoder(EncoderJob(teacher=args.teacher, student=args.student, parallel=args.parallel,
                                       out=Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                       trunk_lr=args.trunk_lr, seed=args.seed))
    print(retrieval_line(metrics))
    print(f"wrote {args.out}/encoder")
    return 0


def _handle_encoder_eval(args: argparse.Namespace) -> int:
    import json

    from tongues.distill.encoder import load_encoder, load_teacher, read_parallel, retrieval, retrieval_line

    encoder = load_encoder(args.encoder)
    metrics = retrieval(encoder, load_teacher(args.teacher or encoder.config.teacher), read_parallel(args.parallel))
    print(json.dumps(metrics, indent=2) if args.json else retrieval_line(metrics))
    return 0


def _handle_imagine(args: argparse.Namespace) -> int:
    from tongues.distill.imagine import imagine

    imagine(args.prompt, encoder=args.encoder, pipeline=args.pipeline, out=args.out, steps=args.steps,
            guidance=args.guidance, seed=args.seed, height=args.size, width=args.size, assistant=args.assistant)
    print(f"wrote {args.out}")
    return 0
