"""Recipes: YAML files validated into typed objects.

A recipe names corpora, the tokenizers trained on them and the models trained with those; the
runner (`tongues.run`) turns it into stages. Every validation error is reported in one line that
names the file, the key and what is allowed, e.g.
``recipes/demo.yaml: models.ko.pretrain.lr: expected a number, got 'fast'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, model_validator

from tongues.data.config import CorpusConfig
from tongues.distill.config import EncoderStageConfig, StudentConfig
from tongues.errors import ConfigError
from tongues.eval.config import EvalConfig
from tongues.instruct.config import InstructConfig
from tongues.lm.config import GgufConfig, PretrainConfig
from tongues.plan.config import PlanConfig
from tongues.schema import StrictModel, ref_error, validate  # noqa: F401  (validate: the public helper)
from tongues.tokenizers.config import TokenizerConfig


class ModelConfig(StrictModel):
    """One model: its tokenizer and corpora (names defined elsewhere in the recipe), plan, training."""

    tokenizer: str
    corpora: dict[str, float] = Field(min_length=1)  # corpus name -> mixing weight
    plan: PlanConfig | None = None
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    eval: EvalConfig | None = None
    instruct: InstructConfig | None = None
    sample_prompts: list[str] = Field(default_factory=list)


class Recipe(StrictModel):
    """A whole pipeline. Stage directories go under `out_dir` (default `runs/<name>`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    out_dir: str | None = None
    corpora: dict[str, CorpusConfig] = Field(min_length=1)
    tokenizers: dict[str, TokenizerConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    students: dict[str, StudentConfig] = Field(default_factory=dict)
    encoders: dict[str, EncoderStageConfig] = Field(default_factory=dict)
    # GGUF files for llama.cpp-family runtimes: key a model (its last stage), model:stage, or a student.
    gguf: dict[str, GgufConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_exist(self) -> Recipe:
        for name, tok in self.tokenizers.items():
            for corpus in tok.corpora:
                if corpus not in self.corpora:
                    raise ref_error(f"tokenizers.{name}.corpora", corpus, self.corpora)
        for name, model in self.models.items():
            if model.tokenizer not in self.tokenizers:
                raise ref_error(f"models.{name}.tokenizer", model.tokenizer, self.tokenizers)
            for corpus in model.corpora:
                if corpus not in self.corpora:
                    raise ref_error(f"models.{name}.corpora", corpus, self.corpora)
        for name, student in self.students.items():
            model = student.teacher.split(":", 1)[0]
            looks_like_path = "/" in student.teacher or student.teacher.endswith(".gguf")
            if not looks_like_path and model not in self.models:
                raise ref_error(f"students.{name}.teacher", model, self.models)
        for name, enc in self.encoders.items():
            if "/" not in enc.student and enc.student not in self.models:
                raise ref_error(f"encoders.{name}.student", enc.student, self.models)
        for name in self.gguf:
            if name not in self.students and name.split(":", 1)[0] not in self.models:
                raise ref_error("gguf", name, {**self.models, **self.students})
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


# ---------------------------------------------------------------------------------------------
# Loading, overrides, error messages


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply `key.sub=value` overrides, validate. Raises ConfigError."""
    data = read_yaml_mapping(path, "recipe")
    for item in overrides or []:
        apply_override(data, item, source=str(path))
    return validate(Recipe, data, source=str(path))


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (a `what`: recipe, config...); ConfigError names file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: {what} file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    if data is None and what != "recipe":
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys to values")
    return data


def apply_override(data: dict[str, Any], item: str, source: str = "--set") -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (numbers, lists...)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. models.ko.pretrain.lr=1e-3")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item}: empty key segment in {key!r}")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item}: {part!r} is not a mapping in {source}")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        node[parts[-1]] = raw
