"""The recipe runner: order, manifests, skip when unchanged, resume when interrupted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tongues.run as run
from tongues.config import Recipe
from tongues.manifest import atomic_path
from tongues.run import Stage, StageContext

CALLS: list[tuple[str, bool]] = []
INTERRUPT_AT: set[str] = set()


def fake_stage(ctx: StageContext) -> dict[str, Any]:
    """Writes a part file, then (when asked) is interrupted; on resume it finds the part file."""
    CALLS.append((ctx.stage.name, ctx.resuming))
    part = ctx.out_dir / "part.txt"
    had_part = part.exists()
    part.write_text("half done", encoding="utf-8")
    if ctx.stage.name in INTERRUPT_AT:
        INTERRUPT_AT.discard(ctx.stage.name)
        raise KeyboardInterrupt
    upstream = sorted(json.loads((p / "out.json").read_text())["n"] for p in ctx.inputs.values())
    (ctx.out_dir / "out.json").write_text(json.dumps({"n": len(CALLS), "upstream": upstream}))
    return {"headline": f"call {len(CALLS)}", "resumed_with_part": had_part}


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recipe:
    CALLS.clear()
    INTERRUPT_AT.clear()
    src = tmp_path / "ko.txt"
    src.write_text("하나\n", encoding="utf-8")
    recipe = Recipe.model_validate(
        {"name": "t", "out_dir": str(tmp_path / "runs"), "corpora": {"ko": {"lang": "ko", "sources": [str(src)]}},
         "tokenizers": {"ko": {"corpora": ["ko"]}}}
    )

    def stages(r: Recipe) -> list[Stage]:
        return [
            Stage("data-ko", "data", f"{__name__}:fake_stage", r.corpora["ko"]),
            Stage("tokenizer-ko", "tokenizer", f"{__name__}:fake_stage", r.tokenizers["ko"], inputs=["data-ko"]),
        ]

    monkeypatch.setattr(run, "build_stages", stages)
    return recipe


def test_runs_in_order_and_writes_manifests(recipe: Recipe) -> None:
    results = run.run_recipe(recipe, log=lambda _: None)
    assert [(r.name, r.status) for r in results] == [("data-ko", "ran"), ("tokenizer-ko", "ran")]
    manifest = json.loads((recipe.run_dir / "tokenizer-ko" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["config"]["vocab_size"] == 8000
    assert manifest["inputs"]["data-ko"]["fingerprint"]
    assert {"python", "torch", "tongues"} <= set(manifest["versions"])
    assert manifest["wall_time_s"] >= 0
    assert json.loads((recipe.run_dir / "tokenizer-ko" / "out.json").read_text())["upstream"] == [1]
    data_manifest = json.loads((recipe.run_dir / "data-ko" / "manifest.json").read_text())
    assert len(next(iter(data_manifest["sources"].values()))) == 64  # a sha256


def test_second_run_skips_unchanged_stages(recipe: Recipe) -> None:
    run.run_recipe(recipe, log=lambda _: None)
    results = run.run_recipe(recipe, log=lambda _: None)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert len(CALLS) == 2


def test_changed_config_or_source_reruns_downstream(recipe: Recipe) -> None:
    run.run_recipe(recipe, log=lambda _: None)
    recipe.tokenizers["ko"].vocab_size = 500
    assert [r.status for r in run.run_recipe(recipe, log=lambda _: None)] == ["skipped", "ran"]
    Path(recipe.corpora["ko"].sources[0]).write_text("둘\n", encoding="utf-8")
    assert [r.status for r in run.run_recipe(recipe, log=lambda _: None)] == ["ran", "ran"]


def test_interrupted_stage_resumes_in_place(recipe: Recipe) -> None:
    INTERRUPT_AT.add("tokenizer-ko")
    with pytest.raises(KeyboardInterrupt):
        run.run_recipe(recipe, log=lambda _: None)
    manifest = json.loads((recipe.run_dir / "tokenizer-ko" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    results = run.run_recipe(recipe, log=lambda _: None)
    assert [r.status for r in results] == ["skipped", "resumed"]
    assert CALLS[-1] == ("tokenizer-ko", True)
    assert results[1].metrics["resumed_with_part"] is True


def test_force_and_unknown_stage(recipe: Recipe) -> None:
    run.run_recipe(recipe, log=lambda _: None)
    results = run.run_recipe(recipe, force=["data-ko"], log=lambda _: None)
    assert [r.status for r in results] == ["ran", "ran"]  # downstream fingerprint changed too
    from tongues.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        run.run_recipe(recipe, only=["nope"], log=lambda _: None)


def test_atomic_path_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("crash during write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_only_runs_the_selected_stages_and_ignores_downstream(recipe: Recipe) -> None:
    results = run.run_recipe(recipe, only=["data-ko"], log=lambda _: None)
    assert [(r.name, r.status) for r in results] == [("data-ko", "ran")]
    from tongues.errors import ConfigError

    (recipe.run_dir / "data-ko" / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="stage data-ko must run before tokenizer-ko"):
        run.run_recipe(recipe, only=["tokenizer-ko"], log=lambda _: None)


def test_sample_lines_say_when_a_completion_shows_nothing():
    samples = [{"prompt": "a", "completion": " x \n y "}, {"prompt": "b", "completion": "   "},
               {"prompt": "c", "completion": ""}]
    result = run.StageResult("pretrain-ko", "ran", 1.0, Path("."), {"samples": samples})
    assert run.sample_lines([result]) == ["  [pretrain-ko] a → x y", "  [pretrain-ko] b → (only whitespace)",
                                      "  [pretrain-ko] c → (nothing: end of text at once)"]
