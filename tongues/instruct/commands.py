"""CLI: `tongues sft`, `tongues reward`, `tongues dpo`, `tongues grpo` — each thin over TRL's trainer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DATA_HELP = ("instruction data: embedded:LANG, .jsonl (messages, prompt/completion, or prompt/chosen/rejected), "
             ".csv with question/answer columns, hf:NAME (repeatable)")
EPILOG = """\
Every option of TRL's config is reachable with --set KEY=VALUE (repeatable), e.g.
  --set num_train_epochs=3 --set learning_rate=1e-4 --set per_device_train_batch_size=4
Re-running the same command resumes from the last checkpoint in OUT/checkpoints.
Writes OUT/model (a Hugging Face directory with chat template and model card), OUT/report.md,
OUT/metrics.json, OUT/train.jsonl, OUT/curves.png.

examples:
  tongues sft --base runs/demo/pretrain-ko/model --data embedded:ko --out runs/sft-ko
  tongues reward --base runs/sft-ko/model --data embedded:ko --out runs/rm-ko
  tongues dpo --base runs/sft-ko/model --data embedded:ko --out runs/dpo-ko --reward-model runs/rm-ko/model
  tongues grpo --base runs/dpo-ko/model --prompts embedded:ko --out runs/grpo-ko \\
      --reward language_consistency,model:runs/rm-ko/model=0.5,length=0.2
"""

HELP = {
    "sft": "instruction-tune a model on conversations (TRL SFTTrainer, loss on assistant tokens only)",
    "reward": "train a reward model on preference pairs (TRL RewardTrainer)",
    "dpo": "align a model on preference pairs with DPO; the reference is the base (TRL DPOTrainer)",
    "grpo": "reinforce a model with rule rewards and a reward model (TRL GRPOTrainer)",
}


def register(commands: Any) -> None:
    for method, text in HELP.items():
        p = commands.add(method, text, _handle)
        p.epilog = EPILOG
        p.set_defaults(method=method)
        p.add_argument("--base", required=True, metavar="DIR", help="the model to start from (a Hugging Face directory)")
        if method == "grpo":
            p.add_argument("--prompts", dest="data", action="append", default=[], metavar="SRC", required=True,
                           help="conversations whose prompts are answered and rewarded: " + DATA_HELP)
            p.add_argument("--reward", dest="rewards", default="language_consistency", metavar="LIST",
                           help="comma-separated rewards with optional weights: language_consistency, length, "
                                "model:RM_DIR, e.g. language_consistency,model:runs/rm/model=0.5,length=0.2")
        else:
            p.add_argument("--data", action="append", default=[], metavar="SRC", required=True, help=DATA_HELP)
        p.add_argument("--out", required=True, metavar="DIR", help="output directory")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a TRL config key, e.g. --set learning_rate=1e-4 (repeatable)")
        p.add_argument("--lora", default=None, metavar="r=16,alpha=32",
                       help="train LoRA adapters (PEFT) instead of all weights; merged into the saved model")
        p.add_argument("--reward-model", default=None, metavar="DIR",
                       help="a reward model that judges the win rate against the base")
        p.add_argument("--eval-data", action="append", default=[], metavar="SRC",
                       help="conversations whose held-out 20%% judge the chat (default: the data's, or embedded)")
        p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                       help="auto: bf16 where bf16 matmuls are fast (GPUs, AMX CPUs), else fp32")
        p.add_argument("--seed", type=int, default=0, help="seed of data order, initialization and sampling")


def _handle(args: argparse.Namespace) -> int:
    from tongues.instruct.stage import Job, run_job
    from tongues.instruct.training import parse_lora, parse_sets

    job = Job(method=args.method, base=Path(args.base), data=args.data, out=Path(args.out),
              overrides=parse_sets(args.overrides), lora=parse_lora(args.lora), seed=args.seed,
              precision=args.precision, eval_data=args.eval_data or None,
              reward_model=Path(args.reward_model) if args.reward_model else None,
              rewards=getattr(args, "rewards", None))
    run_job(job)
    print(f"wrote {args.out}/model, {args.out}/report.md")
    return 0
