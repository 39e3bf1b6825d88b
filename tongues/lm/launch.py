"""Slurm launch scripts: `tongues launch slurm` writes an sbatch file that runs `accelerate launch`
on every node, one launcher per node, with torch's c10d rendezvous on the first node.

Rendezvous: MASTER_ADDR is the first host of ``scontrol show hostnames $SLURM_JOB_NODELIST``;
each node's ``--machine_rank`` is its SLURM_NODEID (srun starts one task per node, so SLURM_PROCID
is the same number). The job can be resubmitted as is: training resumes from its last checkpoint,
and SIGTERM (Slurm's time limit or preemption, sent `--signal` seconds early) writes a checkpoint.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tongues.errors import ConfigError

ACCELERATE_CONFIGS = ("ddp", "fsdp", "deepspeed_zero2")
_RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"

TEMPLATE = """#!/bin/bash
# Written by `tongues launch slurm`; submit with: sbatch {script_name}
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus}
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
#SBATCH --signal=TERM@120
#SBATCH --output={log_dir}/%x-%j.out
{partition}{account}
set -euo pipefail
cd {workdir}

# Rendezvous on the first node of the allocation.
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT={port}
export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-8}}

# One `accelerate launch` per node; it starts {gpus} processes there. The node's rank is SLURM_NODEID
# (with one task per node SLURM_PROCID is the same); \\$ defers expansion to each node.
srun --kill-on-bad-exit=1 --wait=60 bash -c "accelerate launch \\
    --config_file {accelerate_config} \\
    --num_machines {nodes} \\
    --num_processes {world} \\
    --machine_rank \\$SLURM_NODEID \\
    --main_process_ip $MASTER_ADDR \\
    --main_process_port $MASTER_PORT \\
    --rdzv_backend c10d \\
    --same_network \\
    -m tongues pretrain {pretrain_args}"
"""


def accelerate_config_path(name_or_path: str) -> Path:
    """A shipped config by name (ddp, fsdp, deepspeed_zero2) or a path to your own YAML."""
    if name_or_path in ACCELERATE_CONFIGS:
        return _RECIPES / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(f"--accelerate-config {name_or_path}: no such file (shipped: {', '.join(ACCELERATE_CONFIGS)})")
    return path


def slurm_script(
    *,
    recipe: str,
    model: str | None,
    nodes: int,
    gpus_per_node: int,
    accelerate_config: str = "fsdp",
    time: str = "24:00:00",
    partition: str | None = None,
    account: str | None = None,
    cpus_per_task: int | None = None,
    port: int = 29500,
    overrides: list[str] | None = None,
    workdir: str | Path = ".",
    script_name: str = "pretrain.sbatch",
) -> str:
    """The sbatch script text for pretraining `model` of `recipe` on `nodes` x `gpus_per_node` GPUs."""
    if nodes < 1 or gpus_per_node < 1:
        raise ConfigError(f"--nodes and --gpus-per-node must be at least 1 (got {nodes}, {gpus_per_node})")
    args = ["--recipe", recipe] + (["--model", model] if model else [])
    for item in overrides or []:
        if any(c in item for c in '"$`\\'):
            raise ConfigError(f"--set {item}: quotes, $, ` and backslashes cannot be passed through the sbatch script")
        args += ["--set", item]
    name = f"tongues-{model or Path(recipe).stem}"
    return TEMPLATE.format(
        script_name=script_name, job_name=name, nodes=nodes, gpus=gpus_per_node,
        cpus=cpus_per_task or 8 * gpus_per_node, time=time, log_dir="logs",
        partition=f"#SBATCH --partition={partition}\n" if partition else "",
        account=f"#SBATCH --account={account}\n" if account else "",
        workdir=shlex.quote(str(Path(workdir).resolve())), port=port,
        accelerate_config=shlex.quote(str(accelerate_config_path(accelerate_config).resolve())),
        world=nodes * gpus_per_node, pretrain_args=" ".join(shlex.quote(a) for a in args),
    )


def write_slurm_script(out: str | Path, **kwargs: object) -> Path:
    """Write `slurm_script(**kwargs)` to `out` (executable) and create its logs/ directory."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(slurm_script(script_name=out.name, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    out.chmod(0o755)
    (Path(kwargs.get("workdir", ".")) / "logs").mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    return out
