"""`tongues scaling fit`: recovers a known law from noisy synthetic runs; the fitted law feeds `plan`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tongues.cli import main
from tongues.errors import DataError
from tongues.plan.fit import fit_runs, load_runs, write_fit
from tongues.plan.planner import plan
from tongues.plan.scaling import ParametricLaw, load_fitted_law

TRUE = ParametricLaw("true", E=2.0, A=300.0, B=600.0, alpha=0.32, beta=0.30)


def synthetic_runs(seed: int = 3, noise: float = 0.005) -> list[dict]:
    """An IsoFLOP sweep drawn from TRUE: 5 budgets × 7 sizes spanning 10× either side of N_opt."""
    rng = np.random.default_rng(seed)
    runs = []
    for flops in np.geomspace(1e14, 1e17, 5):
        n_opt, _ = TRUE.optimal(flops)
        for params in n_opt * np.geomspace(0.1, 10, 7):
            tokens = flops / (6 * params)
            loss = TRUE.loss(params, tokens) * float(np.exp(rng.normal(0, noise)))
            runs.append({"params": float(params), "tokens": float(tokens), "flops": float(flops), "loss": loss,
                         "bpb": loss / np.log(2) / 4.0})
    return runs


@pytest.fixture(scope="module")
def fitted():
    return fit_runs(synthetic_runs(), bootstrap=40, starts=16, seed=1, name="synthetic")


def test_fit_recovers_known_constants_within_their_intervals(fitted):
    truth = {"E": TRUE.E, "A": TRUE.A, "B": TRUE.B, "alpha": TRUE.alpha, "beta": TRUE.beta, "a": TRUE.a, "b": TRUE.b}
    for key, value in truth.items():
        lo, hi = fitted.intervals[key]
        assert lo <= value <= hi, (key, value, lo, hi)
        assert lo < fitted.constants[key] < hi
    assert fitted.constants["alpha"] == pytest.approx(TRUE.alpha, abs=0.03)
    assert fitted.constants["a"] == pytest.approx(TRUE.a, abs=0.02)
    # approach 2 from the same runs: five parabola minima inside the sizes tried, exponent near the truth
    front = fitted.isoflop["frontier"]
    assert front["budgets_used"] == 5
    assert front["a"] == pytest.approx(TRUE.a, abs=0.03) and front["a"] + front["b"] == pytest.approx(1.0)
    lo, hi = fitted.isoflop["intervals"]["a"]
    assert lo <= front["a"] <= hi


def test_fitted_law_file_round_trips_into_plan(fitted, tmp_path):
    paths = write_fit(fitted, tmp_path / "fit")
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "IsoFLOP" in paths["report"].read_text()
    law = load_fitted_law(paths["law"])
    assert (law.E, law.alpha, law.unit) == (fitted.constants["E"], fitted.constants["alpha"], "nats/token")
    p = plan(flops=1e16, law=f"fitted:{paths['law']}", vocab_size=1024, seq_len=256)
    assert p.law == "synthetic" and p.param_count == "total"
    expected_n, _ = law.optimal(1e16)
    assert p.params == pytest.approx(expected_n)
    assert p.predicted_loss == pytest.approx(law.loss(p.params, p.tokens))


def test_fit_in_bits_per_byte():
    fit = fit_runs(synthetic_runs(), metric="bpb", bootstrap=0, starts=8)
    assert fit.unit == "bits/byte"
    # bpb is loss scaled by a constant here, so E scales and the exponents stay
    assert fit.constants["E"] == pytest.approx(TRUE.E / np.log(2) / 4.0, rel=0.1)
    assert fit.constants["alpha"] == pytest.approx(TRUE.alpha, abs=0.03)


def test_load_runs_formats_and_errors(tmp_path):
    runs = synthetic_runs()[:6]
    sweep = tmp_path / "sweep"
    for i, run in enumerate(runs):
        (sweep / f"run-{i}").mkdir(parents=True)
        (sweep / f"run-{i}" / "run.json").write_text(json.dumps(run))
    assert [r["params"] for r in load_runs(sweep)] == [r["params"] for r in runs]
    listed = tmp_path / "runs.json"
    listed.write_text(json.dumps({"runs": runs}))
    assert len(load_runs(listed)) == 6
    lines = tmp_path / "runs.jsonl"
    lines.write_text(json.dumps(runs[0]) + "\n" + json.dumps({"params": 1e6, "loss": 3.0}) + "\n")
    with pytest.raises(DataError, match=r"runs.jsonl:2: key 'tokens' is missing"):
        load_runs(lines)
    lines.write_text(json.dumps(runs[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"runs.jsonl:2: not valid JSON"):
        load_runs(lines)
    lines.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "bpb"}) for r in runs))
    with pytest.raises(DataError, match="key 'bpb' is missing"):
        fit_runs(load_runs(lines), metric="bpb", bootstrap=0)
    with pytest.raises(DataError, match="at least 5 runs"):
        fit_runs(load_runs(lines)[:4], bootstrap=0)


def test_cli_fit_writes_a_law_plan_reads(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    runs.write_text("\n".join(json.dumps(r) for r in synthetic_runs()))
    assert main(["scaling", "fit", str(runs), "--bootstrap", "5", "--out", str(tmp_path / "fit"), "--json"]) == 0
    law = json.loads(capsys.readouterr().out)
    assert {"E", "A", "B", "alpha", "beta", "intervals", "isoflop"} <= set(law)
    assert (tmp_path / "fit" / "isoflops.png").exists()
    assert main(["plan", "--flops", "1e16", "--law", f"fitted:{tmp_path / 'fit' / 'law.json'}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["law"] == "runs"
    assert main(["scaling", "fit", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
