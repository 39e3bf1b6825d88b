"""From a document to a prompt: task-file templates, with lm-evaluation-harness's semantics.

A prompt field is a document field name ("choices"), a Jinja template ("{{paragraph}} 질문:
{{question}} 답변:"), a single Jinja expression whose value is used as it is ("{{[choice1,
choice2]}}", "{{label}}"), a list of templates, or an integer. Templates run in Jinja's sandbox
(task files are data, not code) with undefined names as errors.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tongues.errors import ConfigError, DataError

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
# One {{ ... }} and nothing else: its value is kept as a Python object (list, int, str).
_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}$", re.S)


@lru_cache(maxsize=1024)
def _compiled(template: str) -> Any:
    match = _EXPRESSION.match(template)
    if match:
        return ("expr", _ENV.compile_expression(match["expr"], undefined_to_none=False))
    return ("template", _ENV.from_string(template))


def check_templates(spec: Any) -> None:
    """Compile every template of a task spec; ConfigError names the file and key of a bad one."""
    fields: dict[str, Any] = {
        "doc_to_text": spec.doc_to_text, "doc_to_target": spec.doc_to_target,
        "doc_to_choice": spec.doc_to_choice, "description": spec.description,
    }
    fields.update({f"data.fields.{k}": v for k, v in spec.data.fields.items()})
    for key, value in fields.items():
        for template in value if isinstance(value, list) else [value]:
            if isinstance(template, str) and ("{{" in template or "{%" in template):
                try:
                    _compiled(template)
                except TemplateError as err:
                    raise ConfigError(f"{spec.path}: {key}: bad Jinja template {template!r} ({err})") from None


def value(template: str | int | list[str] | None, doc: dict[str, Any], *, where: str = "") -> Any:
    """Evaluate one prompt field on a document (see the module docstring)."""
    if template is None or isinstance(template, int):
        return template
    if isinstance(template, list):
        return [value(t, doc, where=where) for t in template]
    if template in doc:
        return doc[template]
    if "{{" not in template and "{%" not in template:
        return template
    kind, compiled = _compiled(template)
    try:
        if kind == "template":
            return compiled.render(**doc)
        result = compiled(**doc)
        if isinstance(result, Undefined):
            str(result)  # StrictUndefined raises here, naming the missing field
        return result
    except TemplateError as err:
        fields = ", ".join(sorted(doc)) or "none"
        raise DataError(f"{where}: {template!r} failed on this document ({err}); its fields: {fields}") from None
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise DataError(f"{where}: {template!r} failed on this document ({type(err).__name__}: {err})") from None


def doc_text(spec: Any, doc: dict[str, Any], where: str = "") -> str:
    """The prompt of a document (without few-shot examples)."""
    return str(value(spec.doc_to_text, doc, where=f"{where}: doc_to_text"))


def doc_choices(spec: Any, doc: dict[str, Any], where: str = "") -> list[str]:
    """The answer options of a multiple-choice document."""
    choices = value(spec.doc_to_choice, doc, where=f"{where}: doc_to_choice")
    if isinstance(choices, str) or not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise DataError(f"{where}: doc_to_choice gave {choices!r}; it must be a list of at least 2 answers")
    return [str(c) for c in choices]


def doc_gold(spec: Any, doc: dict[str, Any], choices: list[str], where: str = "") -> int:
    """The index of the right answer (doc_to_target: an index, a digit string, or the answer text)."""
    target = value(spec.doc_to_target, doc, where=f"{where}: doc_to_target")
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, (int, str)):
        raise DataError(f"{where}: doc_to_target gave {target!r}; expected an answer index or the answer text")
    if isinstance(target, str):
        if target not in choices:
            raise DataError(f"{where}: doc_to_target {target!r} is not one of the choices {choices}")
        return choices.index(target)
    if not 0 <= target < len(choices):
        raise DataError(f"{where}: answer index {target} is out of range for {len(choices)} choices")
    return target


def doc_reference(spec: Any, doc: dict[str, Any], where: str = "") -> list[str]:
    """The reference answer(s) of a generation document (or the text of a bits-per-byte document)."""
    target = value(spec.doc_to_target, doc, where=f"{where}: doc_to_target")
    refs = [str(t) for t in target] if isinstance(target, (list, tuple)) else [str(target)]
    if not refs or not all(r.strip() for r in refs):
        raise DataError(f"{where}: doc_to_target gave an empty reference")
    return refs


def shot_text(spec: Any, doc: dict[str, Any], where: str = "") -> str:
    """A solved example: its prompt, the target delimiter and its answer."""
    if spec.kind == "multiple_choice":
        choices = doc_choices(spec, doc, where)
        answer = choices[doc_gold(spec, doc, choices, where)]
    else:
        answer = doc_reference(spec, doc, where)[0]
    return doc_text(spec, doc, where) + spec.target_delimiter + answer


def fewshot_indices(n_pool: int, k: int, seed: int, item: int, exclude: int | None = None) -> list[int]:
    """k example indices from a pool of n_pool, fixed by (seed, item); `exclude` is never drawn.

    Seeded per item, so an item's examples do not depend on --limit or on the order of evaluation.
    """
    candidates = [i for i in range(n_pool) if i != exclude]
    if k > len(candidates):
        raise DataError(f"--num-fewshot {k}: only {len(candidates)} examples to draw from")
    return random.Random(f"{seed}:{item}").sample(candidates, k)


def context(spec: Any, doc: dict[str, Any], shots: list[dict[str, Any]], where: str = "") -> str:
    """The full prompt: description, then the solved examples, then the document's prompt."""
    parts = [shot_text(spec, s, f"{where} (few-shot example)") for s in shots]
    prefix = "".join(p + spec.fewshot_delimiter for p in parts)
    return spec.description + prefix + doc_text(spec, doc, where)
