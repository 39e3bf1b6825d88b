"""The planner: published laws reproduced, data-constrained allocation, budgets, outputs, bad input."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import yaml

from tongues.cli import main
from tongues.errors import TonguesError
from tongues.plan.planner import plan, run_stage
from tongues.plan.scaling import (
    CHINCHILLA,
    EPOCH_2024,
    LAWS,
    MUENNIGHOFF_2023,
    DataConstrainedLaw,
    get_law,
)

# Hoffmann et al. 2022, Table 3 (approach 1): parameters, FLOPs, tokens.
TABLE_3 = [(400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12)]


@pytest.mark.parametrize(("params", "flops", "tokens"), TABLE_3)
def test_table_3_reproduced_from_flops_and_from_params(params, flops, tokens):
    p = plan(flops=flops, law="chinchilla-approach1", vocab_size=32000)
    assert p.params == pytest.approx(params, rel=0.02)
    assert p.tokens == pytest.approx(tokens, rel=0.02)
    q = plan(params=params, law="chinchilla-approach1", vocab_size=32000)
    assert q.flops == pytest.approx(flops, rel=0.02)
    assert q.tokens == pytest.approx(tokens, rel=0.02)


def test_approach1_extrapolates_continuously_with_exponent_near_half():
    law = get_law("chinchilla-approach1")
    inside = law.optimal(1.92e19)
    just_below = law.optimal(1.92e19 * (1 - 1e-9))
    assert just_below[0] == pytest.approx(inside[0], rel=1e-6)
    n1, _ = law.optimal(1e13)
    n2, _ = law.optimal(1e15)
    assert math.log(n2 / n1) / math.log(100) == pytest.approx(0.50, abs=0.01)  # paper: a = 0.50


def test_parametric_optimum_beats_neighbouring_splits():
    for law in (CHINCHILLA, EPOCH_2024, MUENNIGHOFF_2023):
        for flops in (1e15, 1e20, 1e24):
            n, d = law.optimal(flops)
            assert 6 * n * d == pytest.approx(flops)
            best = law.loss(n, d)
            for k in (0.7, 0.9, 1.1, 1.4):
                assert law.loss(n * k, d / k) > best
            assert law.flops_for_params(n) == pytest.approx(flops)


def test_published_constants():
    assert (CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert (EPOCH_2024.E, EPOCH_2024.A, EPOCH_2024.B) == (1.8172, 482.01, 2085.43)
    assert (EPOCH_2024.alpha, EPOCH_2024.beta) == (0.3478, 0.3658)
    assert all(law.param_count == "total" for law in LAWS.values())


def test_muennighoff_worked_examples():
    law = DataConstrainedLaw(MUENNIGHOFF_2023)
    assert law.loss(6.34e9, 242e9, 25e9) == pytest.approx(2.22564, abs=2e-5)
    assert law.loss(8.67e9, 178e9, 25e9) == pytest.approx(2.22696, abs=2e-5)
    n, d = law.optimal(6 * 8.67e9 * 178e9, 25e9)
    assert d == pytest.approx(227e9, rel=0.01)
    assert d / 25e9 == pytest.approx(9.1, abs=0.05)
    assert n == pytest.approx(6.8e9, rel=0.01)
    # with enough unique data the data-constrained law is the base law
    assert law.loss(1e9, 20e9, 1e12) == pytest.approx(MUENNIGHOFF_2023.loss(1e9, 20e9), rel=1e-3)


def test_scarce_data_gives_data_constrained_plan_and_warning():
    ample = plan(flops=1e20, unique_tokens=1e12, vocab_size=32000)
    assert ample.data_constrained is None and ample.epochs < 1
    scarce = plan(flops=1e20, unique_tokens=2e9, vocab_size=32000)
    dc = scarce.data_constrained
    assert dc is not None
    assert (scarce.params, scarce.tokens) == (dc["params"], dc["tokens"])
    assert scarce.epochs == pytest.approx(scarce.tokens / 2e9)
    assert scarce.epochs > 4 and any("epochs" in w for w in scarce.warnings)
    # the data-constrained optimum is no worse than repeating data to reach the unconstrained optimum
    assert dc["predicted_loss"] <= dc["loss_at_compute_optimal"] + 1e-9
    assert scarce.params < scarce.compute_optimal["params"]  # scarce data -> fewer params (R*_N < R*_D)
    assert scarce.tokens * scarce.params * 6 == pytest.approx(1e20, rel=1e-6)
    # a named model size is kept, its loss predicted with repeated data
    fixed = plan(params=1e9, unique_tokens=2e9, vocab_size=32000)
    assert fixed.params == 1e9 and fixed.data_constrained is not None and fixed.epochs > 1


def test_every_other_law_reported_beside_the_chosen_one():
    p = plan(flops=1e21, law="epoch2024", unique_tokens=5e9)
    names = {r["law"] for r in p.other_laws}
    assert names == set(LAWS) - {"epoch2024"}
    for row in p.other_laws:
        assert row["tokens_per_param"] == pytest.approx(row["tokens"] / row["params"])
        assert row["predicted_loss"] > 1.0
        if row["tokens"] > 5e9:
            assert row["data_constrained"]["epochs"] > 1


def test_gpu_hours_budget_fills_the_hours():
    p = plan(gpus=8, gpu="h100", hours=12, mfu=0.35, vocab_size=32000)
    assert p.cost["wall_clock_hours"] == pytest.approx(12, rel=1e-6)
    available = 8 * 989.4e12 * 0.35 * 12 * 3600
    assert p.cost["training_flops"] == pytest.approx(available, rel=1e-6)
    assert p.flops < available  # the law's 6ND excludes attention
    assert p.training["global_batch_tokens"] % (p.seq_len * 8 * p.training["micro_batch_size"]) == 0
    assert p.memory["ddp"]["estimate"]["peak_gib"] * 1024**3 <= 0.9 * 80e9


def test_tiny_demo_budget_gets_a_tiny_exact_shape():
    p = plan(flops=2e13, vocab_size=2000, seq_len=256)
    assert 0.2e6 <= p.params <= 3e6
    assert p.shape_params == pytest.approx(p.params, rel=0.05)
    assert not any("no shape" in w for w in p.warnings)
    assert p.headline().startswith("N=")


def test_bad_inputs_raise_one_line_errors(tmp_path):
    bad = [
        ({"flops": -1e20}, "--flops must be a positive number"),
        ({"flops": 0}, "--flops must be a positive number"),
        ({"flops": 1e20, "params": 1e9}, "give one budget"),
        ({}, "no budget"),
        ({"gpus": 8, "gpu": "tpu-v1", "hours": 3}, "unknown GPU 'tpu-v1'"),
        ({"gpus": 8, "hours": 3}, "--gpus needs --gpu"),
        ({"gpu": "h100", "hours": 3}, "--hours needs --gpus"),
        ({"flops": 1e20, "mfu": 1.5}, "--mfu"),
        ({"flops": 1e20, "law": "kaplan"}, "unknown scaling law 'kaplan'"),
        ({"flops": 1e20, "law": f"fitted:{tmp_path / 'none.json'}"}, "does not exist"),
    ]
    for kwargs, message in bad:
        with pytest.raises(TonguesError, match=message.replace("(", r"\(")):
            plan(**kwargs)
    law = tmp_path / "law.json"
    for content, message in [
        ({"E": 1.7, "A": 400, "B": 400, "beta": 0.3}, "key 'alpha' is missing"),
        ({"E": 1.7, "A": "big", "B": 400, "alpha": 0.3, "beta": 0.3}, "key 'A' must be a finite number"),
        ({"E": 1.7, "A": 400, "B": 400, "alpha": -0.3, "beta": 0.3}, "key 'alpha' must be > 0"),
        ([1, 2], "must be a JSON object"),
    ]:
        law.write_text(json.dumps(content))
        with pytest.raises(TonguesError, match=message):
            plan(flops=1e20, law=f"fitted:{law}")
    law.write_text("{not json")
    with pytest.raises(TonguesError, match="not valid JSON"):
        plan(flops=1e20, law=f"fitted:{law}")


def test_cli_errors_exit_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "law.json"
    bad.write_text(json.dumps({"E": 1.7, "A": 400, "B": 400, "alpha": 0.3}))
    cases = [
        (["plan", "--flops=-1e20"], "--flops must be a positive number"),
        (["plan", "--flops", "-1e21"], "--flops must be a positive number"),  # not read as an option
        (["plan", "--params", "-1.2B"], "--params must be a positive number"),
        (["plan", "--flops", "0"], "--flops must be a positive number"),
        (["plan", "--flops", "1e20", "--params", "1B"], "give one budget"),
        (["plan", "--gpus", "8", "--gpu", "z100", "--hours", "10"], "unknown GPU 'z100'"),
        (["plan", "--flops", "1e20", "--law", f"fitted:{bad}"], "key 'beta' is missing"),
        (["plan", "--flops", "lots"], "expected a number"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


def test_cli_json_and_out_files(capsys, tmp_path):
    from transformers import LlamaConfig

    from tongues.config import validate
    from tongues.lm.config import PretrainConfig
    from tongues.plan.config import PlanConfig
    from tongues.plan.shapes import ModelShape

    out = tmp_path / "plan"
    assert main(["plan", "--flops", "3e17", "--unique-tokens", "300M", "--vocab-size", "8000", "--seq-len", "512",
                 "--out", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("params", "tokens", "flops", "tokens_per_param", "epochs", "predicted_loss"):
        assert isinstance(data[key], float)
    assert data["flops"] == 3e17 and data["epochs"] == pytest.approx(data["tokens"] / 300e6)
    assert json.loads((out / "plan.json").read_text()) == data
    config = LlamaConfig.from_json_file(str(out / "config.json"))
    assert ModelShape.from_llama_config(config).param_count() == data["shape_params"]
    assert config.vocab_size == 8000 and config.bos_token_id == 2 and config.eos_token_id == 3
    fragment = yaml.safe_load((out / "recipe.yaml").read_text())
    pretrain = validate(PretrainConfig, fragment["pretrain"], "recipe.yaml")
    assert pretrain.seq_len == 512 and pretrain.max_steps * pretrain.global_batch_tokens >= data["tokens"]
    assert validate(PlanConfig, fragment["plan"], "recipe.yaml").flops == 3e17
    assert "| parameters (N) |" in (out / "plan.md").read_text()
    assert main(["plan", "--params", "50M", "--vocab-size", "8000"]) == 0
    assert "## Under every law" in capsys.readouterr().out


def test_run_stage_writes_plan_and_headline(tmp_path):
    from tongues.plan.config import PlanConfig

    ctx = SimpleNamespace(
        config=PlanConfig(flops=1e15, law="chinchilla"),
        stage=SimpleNamespace(name="plan-ko", extra={"vocab_size": 1024, "seq_len": 128, "unique_tokens": 2e6}),
        out_dir=tmp_path, inputs={}, seed=0, resuming=False,
    )
    metrics = run_stage(ctx)
    assert {p.name for p in tmp_path.iterdir()} >= {"plan.json", "config.json", "plan.md", "recipe.yaml"}
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["vocab_size"] == 1024 and saved["seq_len"] == 128 and saved["unique_tokens"] == 2e6
    assert metrics["headline"].startswith("N=") and "tok/param" in metrics["headline"]
    assert metrics["epochs"] == pytest.approx(saved["tokens"] / 2e6)


def test_recipe_plan_config_validates_budget_gpu_and_law():
    from tongues.config import validate
    from tongues.errors import ConfigError
    from tongues.plan import config

    assert set(config._LAW_NAMES) == set(LAWS)  # the recipe schema knows every law the planner has
    assert validate(config.PlanConfig, {"gpus": 8, "gpu": "h100", "hours": 24}, "r.yaml").hours == 24
    for data, message in [
        ({}, "exactly one budget"), ({"flops": 1e20, "params": 1e9}, "exactly one budget"),
        ({"flops": 1e20, "gpu": "k80"}, "unknown GPU"), ({"flops": 1e20, "law": "kaplan"}, "unknown law"),
        ({"flops": -1}, "greater than 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate(config.PlanConfig, data, "r.yaml")


@pytest.mark.parametrize(("device_name", "key"), [
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA L40S", "l40s"),
    ("NVIDIA L40", "l40"), ("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA H200", "h200"),
    ("AMD Instinct MI300X", "mi300x"),
])
def test_cuda_device_names_find_their_datasheet_peak(device_name, key):
    from tongues.plan.hardware import GPUS, gpu_for_device_name

    assert gpu_for_device_name(device_name) is GPUS[key]


def test_unknown_cuda_device_has_no_peak():
    from tongues.plan.hardware import gpu_for_device_name

    assert gpu_for_device_name("NVIDIA Quadro P400") is None


def test_a_law_far_below_its_fitted_runs_is_flagged_as_an_extrapolation(capsys, tmp_path):
    """The demo's budget (1e12 FLOPs, 16K unique tokens) is 1000x below Chinchilla's smallest run and
    predicts a loss above ln V: flagged in the JSON, plan.md and the warnings, not a bare number."""
    from tongues.plan.scaling import CHINCHILLA, extrapolation

    p = plan(flops=1e12, unique_tokens=16_000, vocab_size=2048, seq_len=128)
    assert p.extrapolated and p.predicted_loss > math.log(2048)
    assert any("below the smallest fitted run" in r for r in p.extrapolation)
    assert any("above ln V" in r for r in p.extrapolation)
    assert p.to_dict()["extrapolated"] is True and any("extrapolation" in w for w in p.warnings)
    assert "extrapolated:" in p.to_markdown()
    assert not plan(flops=1e21, vocab_size=32000).extrapolated  # inside the fitted range: a forecast
    assert extrapolation(CHINCHILLA, 1e9, 2e10, 2.5, 32000) == []
    assert extrapolation(CHINCHILLA, 1e15, 2e10) and extrapolation(CHINCHILLA, 1e9, 1e7)


def test_a_fitted_law_records_the_range_of_its_runs(tmp_path):
    from tongues.plan.scaling import load_fitted_law

    law = tmp_path / "law.json"
    law.write_text(json.dumps({"E": 1.0, "A": 50.0, "B": 50.0, "alpha": 0.3, "beta": 0.3,
                               "fitted_on": {"params": [1e5, 1e6], "tokens": [1e6, 1e7]}}))
    fitted = load_fitted_law(law)
    assert fitted.fitted_on == ((1e5, 1e6), (1e6, 1e7))
    assert plan(params=5e5, law=f"fitted:{law}", vocab_size=2048, seq_len=128).extrapolated is False
    assert plan(params=5e3, law=f"fitted:{law}", vocab_size=256, seq_len=64).extrapolated is True


def test_cpu_peak_is_per_core_best_times_threads_and_mfu_never_shows_above_100():
    import torch

    from tongues.plan.flops import cpu_peak_flops, measure_matmul_peak, mfu_text

    threads = torch.get_num_threads()
    peak = cpu_peak_flops(torch.float32, size=128, seconds=0.01, repeats=3)
    assert torch.get_num_threads() == threads  # restored
    torch.set_num_threads(1)
    try:
        one = measure_matmul_peak(torch.float32, size=128, seconds=0.01)
    finally:
        torch.set_num_threads(threads)
    assert peak >= 0.5 * one * threads  # the best of several runs, scaled by the threads
    assert mfu_text(None) == "-" and mfu_text(1.47) == "100%" and mfu_text(0.42) == "42%"
