"""Base class for every typed config (unknown keys are errors, values are validated on assignment) and
`validate`, which turns a pydantic failure into one line naming the source and the key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tongues.errors import ConfigError
from tongues.languages import get_language


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def check_language(code: str) -> str:
    """Pydantic validator body: accept a known language code, else explain which ones are known."""
    try:
        get_language(code)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return code


class _ReferenceError(ValueError):
    def __init__(self, loc: str, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def ref_error(loc: str, name: str, defined: dict[str, Any]) -> _ReferenceError:
    known = ", ".join(sorted(defined)) or "none"
    return _ReferenceError(loc, f"{name!r} is not defined (defined: {known})")


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
