"""Tasks are data: one YAML file per task under tongues/eval/tasks/<family>/<task>.yaml.

A task file names its language, a version, its kind (bits_per_byte, multiple_choice, generation,
tokenizer_parity), where its documents come from (embedded files, local files, a Hub dataset)
and how a document becomes a prompt. Prompt fields use lm-evaluation-harness's names and Jinja
semantics (doc_to_text, doc_to_target, doc_to_choice, target_delimiter, fewshot_delimiter), so a
task written for one harness reads the same in the other. Every error names the file and the key.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tongues.errors import ConfigError
from tongues.schema import StrictModel, check_language

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
KINDS = ("bits_per_byte", "multiple_choice", "generation", "chat", "tokenizer_parity")
# The metric a report leads with, per kind, and whether higher is better.
HEADLINE = {
    "bits_per_byte": ("bits_per_byte", False),
    "multiple_choice": ("acc", True),
    "generation": ("chrf", True),
    "chat": ("language_consistency", True),
    "tokenizer_parity": ("bytes_per_token", True),
}


class HubSource(StrictModel):
    """A dataset on the Hugging Face Hub, loaded with datasets.load_dataset(path, name, split=...)."""

    path: str
    name: str | None = None


class DataSpec(StrictModel):
    """Where a task's documents come from.

    files: split -> file. "embedded:ko/mc.jsonl" is a file shipped in tongues/resources/eval;
    a relative path is looked up under the data directory (--data-dir); absolute paths as given.
    hub: the same data by Hub name, used when no local file for the split is found.
    fields: for local rows that lack it, field -> Jinja expression over the source row (`row['1']`
    reaches any column), mapping a source format (KoBEST's TSV) onto the Hub dataset's columns.
    """

    files: dict[str, str] = Field(default_factory=dict)
    hub: HubSource | None = None
    format: Literal["auto", "jsonl", "json", "tsv", "csv", "text"] = "auto"
    documents: Literal["blank_line", "line"] = "blank_line"  # how a text file splits into documents
    fields: dict[str, str] = Field(default_factory=dict)
    eval_split: str = "test"
    fewshot_split: str | None = None
    parallel: str | None = None  # tokenizer parity: English<TAB>text file, aligned, for the premium
    select: Literal["all", "heldout"] = "all"  # heldout: the 20% of records the instruct stages hold out

    @model_validator(mode="after")
    def _has_a_source(self) -> DataSpec:
        if not self.files and self.hub is None:
            raise ValueError("needs `files` (split -> file) or `hub` (path, name)")
        return self


class GenerationSpec(StrictModel):
    until: list[str] = Field(default_factory=lambda: ["\n"])
    max_new_tokens: int = Field(32, gt=0)


class TaskSpec(StrictModel):
    """One task file. `path` is set by the loader (where the file is)."""

    task: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$")
    language: str
    version: int = Field(ge=0)
    kind: Literal["bits_per_byte", "multiple_choice", "generation", "chat", "tokenizer_parity"]
    summary: str = Field(min_length=1)  # one line: what the task measures
    lm_eval_task: str | None = None  # the lm-evaluation-harness task whose prompt this one reproduces
    data: DataSpec
    description: str = ""  # text put before the few-shot examples (lm-eval's `description`)
    doc_to_text: str = ""
    doc_to_target: str | int | None = None
    doc_to_choice: str | list[str] | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    path: str | None = None

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        return check_language(value)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> TaskSpec:
        if self.doc_to_target is None and self.kind not in ("tokenizer_parity", "chat"):
            raise ValueError(f"a {self.kind} task needs doc_to_target "
                             f"({'the text to score' if self.kind == 'bits_per_byte' else 'the answer'})")
        if self.kind == "multiple_choice" and self.doc_to_choice is None:
            raise ValueError("a multiple_choice task needs doc_to_choice (a field, a list, or a {{ }} expression)")
        if self.kind != "multiple_choice" and self.doc_to_choice is not None:
            raise ValueError(f"doc_to_choice is only for multiple_choice tasks, not {self.kind}")
        return self

    @property
    def family(self) -> str:
        return Path(self.path).parent.name if self.path else ""

    @property
    def headline(self) -> str:
        return HEADLINE[self.kind][0]


def load_task_file(path: str | Path) -> TaskSpec:
    """Read and validate one task YAML; ConfigError names the file and the key on any problem."""
    from tongues.eval.prompts import check_templates

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such task file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a task file is a mapping (task: ..., language: ..., kind: ...), got {type(raw).__name__}")
    try:
        spec = TaskSpec.model_validate({**raw, "path": str(path)})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown key (allowed: {', '.join(f for f in TaskSpec.model_fields if f != 'path')})"
        raise ConfigError(f"{path}: {key}: {message}") from None
    if spec.task != path.stem:
        raise ConfigError(f"{path}: task: {spec.task!r} must match the file name ({path.stem!r})")
    check_templates(spec)
    return spec


def task_files(include: list[str | Path] | None = None) -> dict[str, Path]:
    """Task name -> file, for the shipped tasks and every *.yaml under the `include` directories."""
    found: dict[str, Path] = {}
    roots = [TASKS_DIR, *(Path(p) for p in include or [])]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--include-path {root}: not a directory of task YAML files")
        for file in sorted(root.rglob("*.yaml")):
            if file.stem in found and root != TASKS_DIR:
                raise ConfigError(f"{file}: task {file.stem!r} is already defined by {found[file.stem]}")
            found[file.stem] = file
    return found


def families(files: dict[str, Path]) -> dict[str, list[str]]:
    """Family (the directory a task file is in) -> its task names."""
    out: dict[str, list[str]] = {}
    for name, file in files.items():
        out.setdefault(file.parent.name, []).append(name)
    return out


def resolve_tasks(names: list[str], include: list[str | Path] | None = None) -> list[TaskSpec]:
    """Task specs for names, family names ("kobest") or globs ("ko_*"), in the order given."""
    files = task_files(include)
    groups = families(files)
    chosen: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name in files:
                matched = [name]
            elif name in groups:
                matched = groups[name]
            else:
                matched = sorted(n for n in files if fnmatch.fnmatch(n, name))
            if not matched:
                close = sorted(n for n in files if name.split("_")[0] in n)[:8] or sorted(groups)
                raise ConfigError(f"unknown task {name!r}; known e.g.: {', '.join(close)} "
                                  "(`tongues eval --list-tasks` lists them all)")
            chosen += [m for m in matched if m not in chosen]
    if not chosen:
        raise ConfigError("no task named: pass --tasks, e.g. --tasks ko_heldout_bpb,ko_mc")
    return [load_task_file(files[n]) for n in chosen]


def embedded_tasks(languages: list[str], chat: bool = False) -> list[str]:
    """The embedded task names of these languages that exist (e.g. ko_heldout_bpb, ko_mc, ko_gen);
    the chat tasks (ko_chat) only with `chat` (they judge instruction-tuned models)."""
    files = task_files()
    return [n for n, f in files.items() if f.parent.name == "embedded" and n.split("_")[0] in languages
            and (chat or not n.endswith("_chat"))]


def describe(spec: TaskSpec) -> dict[str, Any]:
    """What results.json records about a task."""
    return {"version": spec.version, "language": spec.language, "kind": spec.kind, "family": spec.family,
            "lm_eval_task": spec.lm_eval_task, "file": spec.path}
