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
from pydantic import BaseModel, Field, ValidationError, model_validator

from tongues.data.config import CorpusConfig
from tongues.distill.config import EncoderStageConfig, StudentConfig
from tongues.errors import ConfigError
from tongues.eval.config import EvalConfig
from tongues.instruct.config import InstructConfig
from tongues.lm.config import PretrainConfig
from tongues.plan.config import PlanConfig
from tongues.schema import StrictModel
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

    @model_validator(mode="after")
    def _references_exist(self) -> Recipe:
        for name, tok in self.tokenizers.items():
            for corpus in tok.corpora:
                if corpus not in self.corpora:
                    raise _ref_error(f"tokenizers.{name}.corpora", corpus, self.corpora)
        for name, model in self.models.items():
            if model.tokenizer not in self.tokenizers:
                raise _ref_error(f"models.{name}.tokenizer", model.tokenizer, self.tokenizers)
            for corpus in model.corpora:
                if corpus not in self.corpora:
                    raise _ref_error(f"models.{name}.corpora", corpus, self.corpora)
        for name, student in self.students.items():
            model = student.teacher.split(":", 1)[0]
            looks_like_path = "/" in student.teacher or student.teacher.endswith(".gguf")
            if not looks_like_path and model not in self.models:
                raise _ref_error(f"students.{name}.teacher", model, self.models)
        for name, enc in self.encoders.items():
            if "/" not in enc.student and enc.student not in self.models:
                raise _ref_error(f"encoders.{name}.student", enc.student, self.models)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


class _ReferenceError(ValueError):
    def __init__(self, loc: str, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _ref_error(loc: str, name: str, defined: dict[str, Any]) -> _ReferenceError:
    known = ", ".join(sorted(defined)) or "none"
    return _ReferenceError(loc, f"{name!r} is not defined (defined: {known})")


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


def validate(model: type[BaseModel], data: Any, source: str) -> Any:
    """Validate `data` into `model`; on failure raise a one-line ConfigError naming source and key."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model, source)) from None


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> str:
    """The first error of `err`, as ``source: key.path: what was expected, got what``."""
    first = err.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"]]
    ctx_err = (first.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _ReferenceError):
        return f"{source}: {ctx_err.loc}: {ctx_err}"
    key = ".".join(loc) or "(top level)"
    return f"{source}: {key}: {_describe(first, model, loc)}"


_EXPECTED = {
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _describe(error: dict[str, Any], model: type[BaseModel], loc: list[str]) -> str:
    kind = error["type"]
    got = f", got {error['input']!r}" if "input" in error and kind != "missing" else ""
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected']}{got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{error['msg'].replace('Input should be', 'must be')}{got}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {error['ctx']['pattern']}{got}"
    return error["msg"] + got


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the model found at `loc` (dict keys and list indices are stepped over)."""
    current: Any = model
    step_over = False
    for part in loc:
        if step_over:
            step_over = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        step_over = _is_container(field.annotation)
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _is_container(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list):
        return True
    return any(_is_container(arg) for arg in getattr(annotation, "__args__", ()) or ())


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside `X`, `X | None`, `dict[str, X]`, `list[X]`, else the annotation."""
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation
