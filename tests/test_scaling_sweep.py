"""`tongues scaling sweep`: runs placed around the optimum, each to its budget, trained by pretrain."""

from __future__ import annotations

import json

import pytest

from tongues.lm.sweep import plan_sweep
from tongues.plan.scaling import CHINCHILLA


def test_sweep_runs_span_the_optimum_and_spend_their_budget():
    runs = plan_sweep([1e13, 1e14], 5, vocab_size=512, seq_len=64, micro_batch=4, max_batch_tokens=8192)
    for budget in (1e13, 1e14):
        mine = [r for r in runs if r.budget == budget]
        assert len(mine) >= 4
        n_opt, _ = CHINCHILLA.optimal(budget)
        sizes = sorted(r.params for r in mine)
        assert sizes[0] < n_opt < sizes[-1]
        for r in mine:
            assert r.flops == pytest.approx(budget, rel=0.05)  # whole steps: within a step of the budget
            assert r.tokens == r.steps * r.global_batch_tokens and r.global_batch_tokens % (64 * 4) == 0
            assert r.steps >= 20 or r.global_batch_tokens == 64 * 4
            assert r.shape.param_count() == r.params


@pytest.mark.slow
def test_sweep_trains_with_pretrain_and_fit_reads_it(tmp_path):
    from pretrain_fixtures import tiny_config, tokenized

    from tongues.lm.sweep import run_sweep
    from tongues.plan.fit import fit_runs, load_runs

    tok, tokens = tokenized(tmp_path / "corpus")
    vocab = json.loads((tokens / "meta.json").read_text())["vocab_size"]
    runs = plan_sweep([2e9, 4e9], 3, vocab_size=vocab, seq_len=32, micro_batch=4, max_batch_tokens=256,
                      spread=2.5, center=1e5)  # the law's optimum here is below the smallest 120-token model
    records = run_sweep(runs, tmp_path / "sweep", tiny_config(model=None, max_steps=None), {"c": (tokens, 1.0)}, tok)
    assert len(records) == len(runs) >= 5
    assert all(r["loss"] > 0 and r["flops"] == pytest.approx(r["budget"], rel=0.15) for r in records)
    again = run_sweep(runs, tmp_path / "sweep", tiny_config(model=None, max_steps=None), {"c": (tokens, 1.0)}, tok)
    assert again == records  # finished runs are skipped, not retrained
    fit = fit_runs(load_runs(tmp_path / "sweep"), bootstrap=0, starts=8)
    assert fit.n_runs == len(records)


def test_cli_sweep_needs_the_recipes_tokenized_data(tmp_path, capsys):
    from tongues.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\nout_dir: {tmp_path / 'run'}\n"
        "corpora: {vi: {lang: vi, sources: ['embedded:vi'], license: CC-BY-4.0}}\n"
        "tokenizers: {vi: {corpora: [vi], vocab_size: 512}}\n"
        "models: {vi: {tokenizer: vi, corpora: {vi: 1.0}}}\n"
    )
    assert main(["scaling", "sweep", "--recipe", str(recipe), "--budgets", "1e13,3e13"]) == 2
    err = capsys.readouterr().err
    assert "no tokenized data" in err and "tongues run" in err
    assert main(["scaling", "sweep", "--recipe", str(recipe), "--budgets", "1e13", "--model", "ko"]) == 2
    assert "not a model" in capsys.readouterr().err
