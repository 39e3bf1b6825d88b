"""The cluster path on CPU processes: FSDP2 full shard (gloo), sharded checkpoints resumed at another
world size, a killed rank, two "nodes" on one machine, the Slurm script through a stand-in srun,
and activation checkpointing. One fast test; the rest are slow (`make test-slow`)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pretrain_fixtures import losses, pretrain_args, quiet_env, reference_run, tiny_config, torchrun

from tongues.lm import checkpoint as ckpt
from tongues.lm import pretrain as pt

MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2}


def fsdp_config(**overrides):
    # micro batch 2: 256 tokens a step split evenly over 1, 2 or 4 processes (accumulating 4, 2 or 1)
    settings = dict(model=MODEL, precision="fp32", max_steps=20, eval_every=10, checkpoint_every=5,
                    micro_batch_size=2, strategy="fsdp")
    return tiny_config(**{**settings, **overrides})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    return (root, *reference_run(root, fsdp_config()))


def close(a: list, b: list, rel: float = 1e-5) -> bool:
    return len(a) == len(b) and all(sa == sb and math.isclose(la, lb, rel_tol=rel) for (sa, la), (sb, lb)
                                    in zip(a, b, strict=True))


def test_two_fsdp_processes_train_like_one_and_hold_half_the_parameters_each(setup, tmp_path):
    root, tok, tokens, config, reference = setup
    out = tmp_path / "run"
    torchrun(2, tok, tokens, config, out)
    assert close(losses(out), losses(reference))
    shards = json.loads((out / "parallel.json").read_text())
    total = sum(shards["local_parameters"])
    assert shards["strategy"] == "fsdp" and len(shards["local_parameters"]) == 2
    assert all(0.4 * total < n < 0.6 * total for n in shards["local_parameters"])
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert (latest / "dcp").is_dir() and (latest / "model" / "model.safetensors").is_file()  # shards + full weights


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_at_another_world_size(setup, tmp_path):
    root, tok, tokens, config, reference = setup
    for resume_with in (1, 4):
        out = tmp_path / f"ws{resume_with}"
        torchrun(2, tok, tokens, config, out, "--stop-after", "10")
        if resume_with == 1:
            pt.pretrain(fsdp_config(), {"tokens": (tokens, 1.0)}, tok, out, seed=7, export=False)
        else:
            torchrun(4, tok, tokens, config, out)
        assert close(losses(out), losses(reference), rel=1e-4), resume_with


@pytest.mark.slow
def test_a_rank_killed_mid_checkpoint_leaves_the_last_complete_one(setup, tmp_path):
    root, tok, tokens, config, reference = setup
    out = tmp_path / "killed"
    torchrun(2, tok, tokens, config, out, "--stop-after", "10")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *pretrain_args(tok, tokens, config, out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=quiet_env(), start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob(".step-00000015.tmp")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # every rank dies with the launcher, mid-write
    proc.wait()
    assert ckpt.latest_checkpoint(out / "checkpoints").name in ("step-00000010", "step-00000015")
    torchrun(2, tok, tokens, config, out)
    assert close(losses(out)[-5:], losses(reference)[-5:], rel=1e-4)


@pytest.mark.slow
def test_two_nodes_on_one_machine_and_the_slurm_script(setup, tmp_path):
    root, tok, tokens, config, reference = setup
    out = tmp_path / "nodes"
    port = 29513
    base = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=tongues-test"]
    procs = [subprocess.Popen([*base, f"--node_rank={r}", *pretrain_args(tok, tokens, config, out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=quiet_env(), text=True) for r in (0, 1)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:] + outputs[1][-2000:]
    assert close(losses(out), losses(reference))


def test_activation_checkpointing_keeps_the_losses_and_lowers_the_peak(setup, tmp_path):
    from tongues.lm.memory_probe import measure_step_peak
    from tongues.plan.shapes import ModelShape

    root, tok, tokens, config, reference = setup
    plain = pt.pretrain(tiny_config(model=MODEL, precision="fp32", max_steps=4), {"t": (tokens, 1.0)}, tok,
                        tmp_path / "a", seed=3, export=False)
    checkpointed = pt.pretrain(tiny_config(model=MODEL, precision="fp32", max_steps=4, activation_checkpointing=True),
                               {"t": (tokens, 1.0)}, tok, tmp_path / "b", seed=3, export=False)
    assert close(losses(tmp_path / "a"), losses(tmp_path / "b"), rel=1e-6) and plain["steps"] == checkpointed["steps"]
    shape = ModelShape(n_layers=4, d_model=64, n_heads=4, n_kv_heads=4, ffn_dim=128, vocab_size=256, tie_embeddings=True,
                       max_seq_len=64)
    assert measure_step_peak(shape, 8, 64, checkpointing=True) < measure_step_peak(shape, 8, 64)


SRUN = """#!/bin/bash
# A stand-in for Slurm's srun on one machine: one task per "node" (SLURM_NODEID 0..N-1), all at
# once, as `srun --ntasks-per-node=1` would start them; fails if any task fails.
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_JOB_NUM_NODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node "$@" > "$SRUN_LOGS/node$node.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


@pytest.mark.slow
def test_the_slurm_script_runs_through_a_stand_in_srun(tmp_path):
    """`tongues launch slurm`'s script, run as written (bash), with stand-ins for srun and scontrol:
    two "nodes" of one process each rendezvous through accelerate launch and train one FSDP run."""
    from pretrain_fixtures import make_documents

    from tongues.lm.launch import write_slurm_script

    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(make_documents(400, seed=1)) + "\n", encoding="utf-8")
    pretrain = {**fsdp_config(max_steps=6, eval_every=6, checkpoint_every=3).model_dump(exclude_none=True),
                "num_threads": 1}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "slurm", "out_dir": str(tmp_path / "runs"),
        "corpora": {"vi": {"lang": "vi", "sources": [str(corpus)], "license": "CC0-1.0", "min_chars": 1}},
        "tokenizers": {"vi": {"corpora": ["vi"], "vocab_size": 400}},
        "models": {"m": {"tokenizer": "vi", "corpora": {"vi": 1.0}, "pretrain": pretrain}},
    }, allow_unicode=True))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho 127.0.0.1\n")
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    script = write_slurm_script(tmp_path / "pretrain.sbatch", recipe=str(recipe), model="m", nodes=2, gpus_per_node=1,
                                accelerate_config="fsdp", port=29517, workdir=tmp_path)
    env = {**quiet_env(), "PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "node[0-1]", "SLURM_JOB_NUM_NODES": "2", "SRUN_LOGS": str(tmp_path)}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    logs = "".join((tmp_path / f"node{n}.log").read_text()[-2000:] for n in (0, 1) if (tmp_path / f"node{n}.log").exists())
    assert proc.returncode == 0, proc.stderr[-2000:] + logs
    run = tmp_path / "runs" / "pretrain-m"
    shards = json.loads((run / "parallel.json").read_text())
    assert shards["strategy"] == "fsdp" and shards["processes"] == 2  # the two "nodes" formed one job
    assert len(losses(run)) == 6 and (run / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_deepspeed_zero2_on_cpu_processes_trains_like_one_process(setup, tmp_path):
    """recipes/accelerate/deepspeed_zero2.yaml through `accelerate launch`, 2 CPU processes (gloo):
    the bf16 losses follow a 1-process bf16 run. Needs deepspeed (not a dependency): skipped without it."""
    pytest.importorskip("deepspeed")
    root, tok, tokens, config, reference = setup
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(fsdp_config(strategy="ddp", precision="bf16").model_dump(exclude_none=True)))
    single = tmp_path / "single"
    pt.pretrain(fsdp_config(strategy="ddp", precision="bf16"), {"tokens": (tokens, 1.0)}, tok, single, seed=7,
                export=False)
    out = tmp_path / "zero2"
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    zero2 = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "deepspeed_zero2.yaml"
    cmd = [launcher, "launch", "--config_file", str(zero2), "--num_processes", "2",
           *pretrain_args(tok, tokens, cfg, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**quiet_env(), "DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert json.loads((out / "parallel.json").read_text())["processes"] == 2
    assert close(losses(out), losses(single), rel=1e-2)  # bf16: reduction order moves the last digits
