"""Instruction data for every stage, through one validator: conversations, prompt/completion pairs,
preference pairs, question/answer CSV, hub datasets, and the embedded sets.

Sources (each stage takes a list):
- `embedded:ko` — the sets shipped in tongues/resources/instruct/ko/ (conversations.jsonl for
  sft / grpo, preferences.jsonl for reward / dpo);
- `.jsonl` — one object per line: {"messages": [{"role", "content"}, ...]} (system/user/assistant,
  alternating, ending with the assistant), or {"prompt", "completion"}, or a preference
  {"prompt", "chosen", "rejected"} (strings, or message lists as TRL's conversational format);
  optional "id", "category", "answer_lang", "failure";
- `.csv` — a header and question / answer columns (Q,A; question,answer; prompt,completion;
  instruction,output), as shared/corpora/ko/chatbot_qa.csv;
- `hf:NAME[:CONFIG][@SPLIT]` — a hub dataset with one of the layouts above (or inputs/targets as
  CohereForAI/aya_dataset), `?lang=xx` keeps rows whose language/lang column is xx (needs network).

Every problem is a DataError naming file:line and what is wrong, before anything is written.
`split_records` holds out 20% by a stable hash of each record's id (its content when it has none).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tongues.data.split import HELDOUT_SHARE, heldout_split, in_heldout
from tongues.errors import DataError

EMBEDDED = "embedded:"
HUB = "hf:"
ROLES = ("system", "user", "assistant")
FAILURE_KINDS = ("wrong_language", "code_switch", "factual_error", "ignores_instruction", "rambling", "truncated")
_QA_COLUMNS = (("q", "a"), ("question", "answer"), ("prompt", "completion"), ("instruction", "output"),
               ("inputs", "targets"))


@dataclass
class Conversation:
    id: str
    messages: list[dict[str, str]]
    answer_lang: str | None = None
    category: str | None = None
    where: str = ""

    @property
    def prompt(self) -> list[dict[str, str]]:
        """Every message before the last assistant turn (what a model is asked)."""
        return self.messages[:-1]

    @property
    def reference(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class Preference:
    id: str
    prompt: list[dict[str, str]]  # the conversation so far, ending with a user turn
    chosen: str
    rejected: str
    failure: str | None = None
    answer_lang: str | None = None
    where: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def embedded_instruct_dir() -> Path:
    from tongues.resources import RESOURCES

    return RESOURCES / "instruct"


def _resolve(source: str, kind: str) -> str:
    """An embedded:LANG source as the file of `kind` ("conversations" or "preferences")."""
    if not source.startswith(EMBEDDED):
        return source
    lang = source[len(EMBEDDED):]
    path = embedded_instruct_dir() / lang / f"{kind}.jsonl"
    if not path.is_file():
        known = sorted(p.name for p in embedded_instruct_dir().iterdir() if p.is_dir())
        raise DataError(f"{source}: no embedded {kind} for {lang!r} (embedded: {', '.join(known)})")
    return str(path)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    out: list[tuple[int, str]] = []
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid UTF-8 (byte {err.start})") from None
        if text.strip():
            out.append((lineno, text))
    if not out:
        raise DataError(f"{path}: the file is empty (no records)")
    return out


def _rows(source: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every record of a file or hub dataset."""
    if source.startswith(HUB):
        return _hub_rows(source)
    path = Path(source)
    if path.suffix == ".csv":
        return _csv_rows(path)
    if path.suffix not in (".jsonl", ".json"):
        raise DataError(f"{path}: unsupported instruction file (supported: .jsonl, .csv, embedded:LANG, hf:NAME)")
    rows = []
    for lineno, text in _read_lines(path):
        try:
            row = json.loads(text)
        except ValueError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON ({str(err).splitlines()[0]})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        rows.append((f"{path}:{lineno}", row))
    return rows


def _csv_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    lines = _read_lines(path)
    reader = csv.DictReader(io.StringIO("\n".join(t for _, t in lines)))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    pair = next(((fields[q], fields[a]) for q, a in _QA_COLUMNS if q in fields and a in fields), None)
    if pair is None:
        raise DataError(f"{path}:1: no question/answer columns (header: {', '.join(fields) or 'none'}; "
                        f"expected one of {', '.join('/'.join(p) for p in _QA_COLUMNS)})")
    return [(f"{path}:{lineno}", {"prompt": row[pair[0]], "completion": row[pair[1]]})
            for (lineno, _), row in zip(lines[1:], reader, strict=False)]


def _hub_rows(source: str) -> list[tuple[str, dict[str, Any]]]:
    from tongues.data.sources import parse_hub
    from tongues.hub import require_hub

    spec, _, query = source.partition("?")
    lang = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("lang")
    name, subset, split = parse_hub(spec)
    require_hub(source, "pass a local .jsonl export of the dataset instead")
    import datasets

    try:
        dataset = datasets.load_dataset(name, subset, split=split)
    except Exception as err:  # the hub raises many kinds
        raise DataError(f"{source}: cannot load the dataset ({str(err).splitlines()[0][:200]})") from None
    rows = []
    for i, row in enumerate(dataset):
        row_lang = row.get("language") or row.get("lang") or row.get("language_code")
        if lang and row_lang not in (lang, None) and not str(row_lang).lower().startswith(lang):
            continue
        if "inputs" in row and "targets" in row:
            row = {"prompt": row["inputs"], "completion": row["targets"]}
        rows.append((f"{source} row {i}", dict(row)))
    return rows


def _record_id(row: dict[str, Any], where: str) -> str:
    if row.get("id") is not None:
        return str(row["id"])
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _text(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: {key!r} is empty")
    return value


def check_messages(messages: Any, where: str, *, end_with_assistant: bool = True) -> list[dict[str, str]]:
    """A validated message list: known roles, an optional system first, then user/assistant
    alternating from a user turn; non-empty contents; ending with the assistant (or a user turn
    for prompts, `end_with_assistant=False`)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {i} must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(f"{where}: message {i} has role {m['role']!r} (expected one of {', '.join(ROLES)})")
        out.append({"role": m["role"], "content": _text(m["content"], where, f"message {i} content")})
    turns = out[1:] if out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            n = i + (len(out) - len(turns))
            raise DataError(f"{where}: roles out of order at message {n}: {m['role']!r} where {expected!r} "
                            "should be (system first, then user and assistant alternating)")
    if not turns:
        raise DataError(f"{where}: only a system message; a conversation needs a user turn")
    last = turns[-1]["role"]
    if end_with_assistant and last != "assistant":
        raise DataError(f"{where}: the conversation has no assistant turn at the end (nothing to learn)")
    if not end_with_assistant and last != "user":
        raise DataError(f"{where}: a prompt must end with a user turn, not {last!r}")
    return out


def load_conversations(sources: list[str]) -> list[Conversation]:
    """Conversations (SFT data, GRPO prompts with references) from `sources`; DataError on bad input."""
    out: list[Conversation] = []
    for source in sources:
        for where, row in _rows(_resolve(source, "conversations")):
            if "messages" in row:
                messages = check_messages(row["messages"], where)
            elif "prompt" in row and "completion" in row:
                messages = [{"role": "user", "content": _text(row["prompt"], where, "prompt")},
                            {"role": "assistant", "content": _text(row["completion"], where, "completion")}]
            else:
                raise DataError(f"{where}: expected 'messages', or 'prompt' and 'completion' (keys: "
                                f"{', '.join(map(str, row)) or 'none'})")
            out.append(Conversation(_record_id(row, where), messages, row.get("answer_lang"), row.get("category"),
                                    where))
    if not out:
        raise DataError(f"{', '.join(sources)}: no conversations")
    return out


def load_preferences(sources: list[str]) -> list[Preference]:
    """Preference pairs (reward model, DPO) from `sources`; DataError on bad input."""
    out: list[Preference] = []
    for source in sources:
        for where, row in _rows(_resolve(source, "preferences")):
            missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
            if missing:
                raise DataError(f"{where}: missing {', '.join(repr(k) for k in missing)} (a preference pair needs "
                                "'prompt', 'chosen' and 'rejected')")
            prompt = row["prompt"]
            prompt = (check_messages(prompt, where, end_with_assistant=False) if isinstance(prompt, list)
                      else [{"role": "user", "content": _text(prompt, where, "prompt")}])
            chosen, rejected = (_answer(row[k], where, k) for k in ("chosen", "rejected"))
            failure = row.get("failure")
            if failure is not None and failure not in FAILURE_KINDS:
                raise DataError(f"{where}: unknown failure {failure!r} (known: {', '.join(FAILURE_KINDS)})")
            out.append(Preference(_record_id(row, where), prompt, chosen, rejected, failure, row.get("answer_lang"),
                                  where))
    if not out:
        raise DataError(f"{', '.join(sources)}: no preference pairs")
    return out


def _answer(value: Any, where: str, key: str) -> str:
    if isinstance(value, list):  # conversational: [{"role": "assistant", "content": ...}]
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise DataError(f"{where}: {key!r} as messages must be one assistant message")
        value = value[0].get("content")
    return _text(value, where, key)


def split_records(records: list[Any], share: float = HELDOUT_SHARE) -> tuple[list[Any], list[Any]]:
    """(train, held-out) by `in_heldout` of each record's id."""
    train, held = heldout_split(records, lambda r: r.id, share)
    if not train:
        raise DataError(f"all {len(records)} records fell in the held-out share {share}; add data")
    return train, held


__all__ = ["Conversation", "FAILURE_KINDS", "Preference", "check_messages", "in_heldout", "load_conversations",
           "load_preferences", "split_records"]
