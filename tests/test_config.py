"""Recipe validation: every kind of mistake is one line naming the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tongues.cli import main
from tongues.config import Recipe, apply_override, load_recipe
from tongues.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _base(tmp_path: Path) -> dict:
    corpus = tmp_path / "ko.txt"
    corpus.write_text("안녕하세요\n", encoding="utf-8")
    return {
        "name": "t",
        "corpora": {"ko": {"lang": "ko", "sources": [str(corpus)]}},
        "tokenizers": {"ko": {"corpora": ["ko"], "vocab_size": 1000}},
        "models": {"ko": {"tokenizer": "ko", "corpora": {"ko": 1.0}, "pretrain": {"lr": 0.001}}},
    }


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # recipes name paths relative to the repository root
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert recipe.corpora


def test_recipes_exist() -> None:
    names = {p.name for p in RECIPES}
    assert {"demo.yaml", "ko.yaml", "hi.yaml", "vi.yaml"} <= names


def test_valid_recipe_loads(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, _base(tmp_path)))
    assert recipe.models["ko"].pretrain.lr == 0.001
    assert recipe.run_dir == Path("runs/t")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["models"]["ko"]["pretrain"].update(lr="fast"),
         "models.ko.pretrain.lr: expected a number, got 'fast'"),
        (lambda d: d["models"]["ko"]["pretrain"].update(lrr=1),
         "models.ko.pretrain.lrr: unknown key (allowed: "),
        (lambda d: d["corpora"]["ko"].pop("lang"), "corpora.ko.lang: required key is missing"),
        (lambda d: d["corpora"]["ko"].update(lang="xx"), "corpora.ko.lang: unknown language 'xx' (known: en, hi, ko, vi)"),
        (lambda d: d["corpora"]["ko"].update(sources=["/no/such/file.txt"]),
         "corpora.ko.sources: path does not exist: /no/such/file.txt"),
        (lambda d: d["corpora"]["ko"].update(doc_mode="pages"), "corpora.ko.doc_mode: expected one of 'line' or 'paragraph'"),
        (lambda d: d["tokenizers"]["ko"].update(corpora=["ja"]), "tokenizers.ko.corpora: 'ja' is not defined (defined: ko)"),
        (lambda d: d["models"]["ko"].update(tokenizer="multi"), "models.ko.tokenizer: 'multi' is not defined"),
        (lambda d: d.update(bogus=1), "bogus: unknown key (allowed: name, seed,"),
        (lambda d: d["tokenizers"]["ko"].update(vocab_size=-5), "tokenizers.ko.vocab_size: must be greater than or equal to 256"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, mutate, expected: str) -> None:
    data = _base(tmp_path)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    if "unknown key (allowed" in expected:
        assert "lr," in message or "name," in message  # the allowed keys are listed
    assert expected in message
    assert "\n" not in message


def test_cli_reports_error_in_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _base(tmp_path)
    data["models"]["ko"]["pretrain"]["lr"] = "fast"
    path = _write(tmp_path, data)
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: models.ko.pretrain.lr: expected a number, got 'fast'"


def test_set_overrides_any_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _base(tmp_path))
    recipe = load_recipe(path, ["models.ko.pretrain.lr=3e-4", "seed=7", "tokenizers.ko.model_type=bpe"])
    assert recipe.models["ko"].pretrain.lr == pytest.approx(3e-4)
    assert recipe.seed == 7
    assert recipe.tokenizers["ko"].model_type == "bpe"


def test_set_with_bad_value_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _base(tmp_path))
    with pytest.raises(ConfigError, match=r"models\.ko\.pretrain\.lr: expected a number, got 'fast'"):
        load_recipe(path, ["models.ko.pretrain.lr=fast"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override({}, "seed")


def test_missing_and_malformed_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_recipe(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_recipe(listy)


def test_pretrain_config_file_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "pretrain.yaml"
    bad.write_text("lr: [oops\n", encoding="utf-8")
    args = ["pretrain", "--data", "d", "--tokenizer", "t", "--out", str(tmp_path / "o"), "--config"]
    assert main([*args, str(bad)]) == 2
    assert re.fullmatch(rf"error: {re.escape(str(bad))}:\d+: invalid YAML: .*\n", capsys.readouterr().err)
    assert main([*args, str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: config file does not exist" in capsys.readouterr().err
