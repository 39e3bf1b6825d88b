"""How each kind of task turns documents and a model into metrics and per-item scores.

- bits_per_byte: rolling log-likelihood per document; bits per UTF-8 byte is the headline
  (sum of NLL in nats / (ln 2 * sum of bytes)); token perplexity is kept but depends on the tokenizer.
- multiple_choice: log P(target_delimiter + choice | prompt) per choice; acc takes the largest,
  acc_norm divides each by the choice's UTF-8 byte length first (lm-eval calls this acc_bytes;
  its acc_norm divides by characters).
- generation: greedy decoding cut at the stop strings; exact match and chrF (sacrebleu).
- tokenizer_parity: the tokenizer report (tongues.tokenizers.report) on the task's text.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tongues.errors import DataError, TonguesError
from tongues.eval import prompts
from tongues.eval.registry import TaskSpec
from tongues.eval.scoring import Scorer
from tongues.eval.significance import ItemScores

LN2 = math.log(2)


@dataclass
class TaskOutcome:
    """Metrics of one model on one task, the per-item scores behind them and per-item records."""

    task: str
    metrics: dict[str, float | None]
    items: dict[str, ItemScores] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    n_items: int = 0
    tokens_scored: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "metrics": self.metrics, "n_items": self.n_items, "tokens_scored": self.tokens_scored,
            "items": {k: {"num": v.num.tolist(), "den": None if v.den is None else v.den.tolist(), "scale": v.scale}
                      for k, v in self.items.items()},
            "records": self.records,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskOutcome:
        items = {k: ItemScores(np.array(v["num"]), None if v["den"] is None else np.array(v["den"]), v["scale"])
                 for k, v in data["items"].items()}
        return cls(data["task"], data["metrics"], items, data["records"], data["n_items"], data.get("tokens_scored", 0))


@dataclass
class TaskInput:
    """A task's documents, ready to run: eval items, the few-shot pool and how many shots."""

    spec: TaskSpec
    docs: list[dict[str, Any]]
    pool: list[dict[str, Any]] | None = None  # few-shot examples; None: `docs` themselves
    num_fewshot: int = 0
    pool_is_eval: bool = True  # the pool is the eval split (docs are its first items): skip the item
    seed: int = 1234
    stride: int | None = None
    data_dir: str | None = None

    def where(self, index: int) -> str:
        doc_id = self.docs[index].get("id", index)
        return f"task {self.spec.task} ({self.spec.path}), item {doc_id}"

    def shots(self, index: int) -> list[dict[str, Any]]:
        if not self.num_fewshot:
            return []
        pool = self.pool if self.pool is not None else self.docs
        exclude = index if self.pool_is_eval else None
        return [pool[i] for i in prompts.fewshot_indices(len(pool), self.num_fewshot, self.seed, index, exclude)]

    def context(self, index: int) -> str:
        return prompts.context(self.spec, self.docs[index], self.shots(index), self.where(index))


def run_task(task: TaskInput, scorer: Scorer | None, model_dir: Path | None = None) -> TaskOutcome:
    """Run one task with one model (tokenizer_parity needs only `model_dir`)."""
    kind = task.spec.kind
    if kind == "bits_per_byte":
        return bits_per_byte(task, scorer)
    if kind == "multiple_choice":
        return multiple_choice(task, scorer)
    if kind == "generation":
        return generation(task, scorer)
    if kind == "chat":
        return chat(task, scorer)
    return tokenizer_parity(task, model_dir or (scorer.path if scorer else None))


def bpb_texts(task: TaskInput) -> list[tuple[int, str]]:
    """(item index, text) of a bits-per-byte task's non-empty documents, as they are scored."""
    kept = [(i, prompts.doc_reference(task.spec, d, task.where(i))[0]) for i, d in enumerate(task.docs)]
    return [(i, t) for i, t in kept if t]


def bits_per_byte(task: TaskInput, scorer: Scorer) -> TaskOutcome:
    kept = bpb_texts(task)
    texts = [t for _, t in kept]
    scored = scorer.loglikelihood_rolling(texts, stride=task.stride, desc=task.spec.task)
    nll = np.array([-s for s, _ in scored])
    n_bytes = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.float64)
    n_tokens = np.array([n for _, n in scored], dtype=np.float64)
    bpb = float(nll.sum() / (LN2 * n_bytes.sum()))
    metrics = {
        "bits_per_byte": bpb,
        "byte_perplexity": 2.0 ** bpb,
        # Per token: depends on the tokenizer, so only comparable between models that share one.
        "perplexity": float(math.exp(nll.sum() / n_tokens.sum())),
        "bytes": int(n_bytes.sum()),
        "tokens": int(n_tokens.sum()),
    }
    records = [{"id": task.docs[i].get("id", i), "nll": float(nll[k]), "bytes": int(n_bytes[k]), "tokens": int(n_tokens[k])}
               for k, (i, _) in enumerate(kept)]
    items = {"bits_per_byte": ItemScores(nll, n_bytes, 1 / LN2)}
    return TaskOutcome(task.spec.task, metrics, items, records, len(texts), int(n_tokens.sum()))


def multiple_choice(task: TaskInput, scorer: Scorer) -> TaskOutcome:
    spec = task.spec
    pairs, spans, golds, choice_bytes, ctxs = [], [], [], [], []
    for i, doc in enumerate(task.docs):
        where = task.where(i)
        choices = prompts.doc_choices(spec, doc, where)
        gold = prompts.doc_gold(spec, doc, choices, where)
        ctx = task.context(i)
        spans.append((len(pairs), len(pairs) + len(choices)))
        pairs += [(ctx, spec.target_delimiter + c) for c in choices]
        golds.append(gold)
        choice_bytes.append([len(c.encode("utf-8")) or 1 for c in choices])
        ctxs.append(ctx)
    lls = scorer.loglikelihood(pairs, desc=spec.task)
    return score_choices(spec.task, [lls[a:b] for a, b in spans], golds, choice_bytes,
                         [d.get("id", i) for i, d in enumerate(task.docs)])


def score_choices(task: str, lls: list[list[float]], golds: list[int], choice_bytes: list[list[int]],
                  ids: list[Any] | None = None) -> TaskOutcome:
    """acc / acc_norm from each item's choice log-likelihoods (ties: the first choice, as lm-eval)."""
    acc, acc_norm, records = [], [], []
    for i, (ll, gold, nbytes) in enumerate(zip(lls, golds, choice_bytes, strict=True)):
        ll = np.asarray(ll, dtype=np.float64)
        pred = int(np.argmax(ll))
        pred_norm = int(np.argmax(ll / np.asarray(nbytes, dtype=np.float64)))
        acc.append(float(pred == gold))
        acc_norm.append(float(pred_norm == gold))
        records.append({"id": ids[i] if ids else i, "gold": gold, "pred": pred, "pred_norm": pred_norm,
                        "loglikelihoods": [round(float(x), 6) for x in ll]})
    items = {"acc": ItemScores(np.array(acc)), "acc_norm": ItemScores(np.array(acc_norm))}
    metrics = {name: s.value() for name, s in items.items()}
    return TaskOutcome(task, metrics, items, records, len(golds))


_EDGE_PUNCT = re.compile(r"^[\s\"'“”‘’«»()\[\]]+|[\s\"'“”‘’«»()\[\].,!?;:。،।॥]+$")


def normalize_answer(text: str) -> str:
    """For exact match: NFC, case-folded, whitespace collapsed, edge quotes and final punctuation off."""
    text = unicodedata.normalize("NFC", text).casefold()
    return _EDGE_PUNCT.sub("", " ".join(text.split()))


def generation(task: TaskInput, scorer: Scorer) -> TaskOutcome:
    try:
        import sacrebleu
    except ImportError:
        raise TonguesError(f"task {task.spec.task}: generation tasks are scored with sacrebleu; "
                           "it is missing from this environment: pip install 'sacrebleu>=2.4'") from None

    spec = task.spec
    refs = [prompts.doc_reference(spec, d, task.where(i)) for i, d in enumerate(task.docs)]
    ctxs = [task.context(i) for i in range(len(task.docs))]
    outputs = scorer.generate_until(ctxs, spec.generation.until, spec.generation.max_new_tokens)
    preds = [o.strip() for o in outputs]
    em = np.array([float(any(normalize_answer(p) == normalize_answer(r) for r in rs)) for p, rs in zip(preds, refs, strict=True)])
    chrf_items = np.array([sacrebleu.sentence_chrf(p, rs).score for p, rs in zip(preds, refs, strict=True)])
    streams = max(len(r) for r in refs)
    # sacrebleu wants as many reference streams as the longest list: repeat the first reference.
    ref_streams = [[rs[k] if k < len(rs) else rs[0] for rs in refs] for k in range(streams)]
    metrics = {"exact_match": float(em.mean()), "chrf": float(sacrebleu.corpus_chrf(preds, ref_streams).score),
               "chrf_mean": float(chrf_items.mean())}
    records = [{"id": d.get("id", i), "prediction": p, "references": rs, "exact_match": bool(em[i]),
                "chrf": round(float(chrf_items[i]), 4)}
               for i, (d, p, rs) in enumerate(zip(task.docs, preds, refs, strict=True))]
    items = {"exact_match": ItemScores(em), "chrf": ItemScores(chrf_items)}
    return TaskOutcome(spec.task, metrics, items, records, len(preds))


def chat(task: TaskInput, scorer: Scorer) -> TaskOutcome:
    """Held-out conversations: the model answers the prompt (all turns but the last) greedily with
    its chat template; chrF against the last (assistant) turn and language consistency
    (`tongues.langid`) of the answer in the conversation's answer_lang, else the prompt's language."""
    import sacrebleu

    from tongues.infer.generate import LanguageModel
    from tongues.langid import language_consistency

    spec = task.spec
    for i, d in enumerate(task.docs):
        messages = d.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise DataError(f"{task.where(i)}: a chat item needs 'messages' ending with an assistant turn")
    lm = LanguageModel(scorer.model, scorer.tokenizer, scorer.path)
    room = max(1, scorer.max_length - spec.generation.max_new_tokens)
    keep = [i for i, d in enumerate(task.docs) if len(lm.encode(lm.render_chat(d["messages"][:-1]), False)) <= room]
    if not keep:
        raise DataError(f"task {spec.task}: no conversation fits the model's context with "
                        f"{spec.generation.max_new_tokens} new tokens")
    docs = [task.docs[i] for i in keep]
    answers = lm.chat([d["messages"][:-1] for d in docs], max_new_tokens=spec.generation.max_new_tokens,
                      temperature=0, batch_size=16)
    refs = [d["messages"][-1]["content"] for d in docs]
    shares = np.array([language_consistency(d["messages"][-2]["content"], a, d.get("answer_lang"))
                       for d, a in zip(docs, answers, strict=True)])
    chrf_items = np.array([sacrebleu.sentence_chrf(a, [r]).score for a, r in zip(answers, refs, strict=True)])
    consistent = (shares >= 0.9).astype(float)
    metrics = {"language_consistency": float(consistent.mean()), "language_consistency_mean": float(shares.mean()),
               "chrf": float(sacrebleu.corpus_chrf(answers, [refs]).score), "items_fitting": len(docs)}
    records = [{"id": d.get("id", i), "answer": a, "reference": r, "language_consistency": round(float(c), 4)}
               for i, (d, a, r, c) in enumerate(zip(docs, answers, refs, shares, strict=True))]
    items = {"language_consistency": ItemScores(consistent), "chrf": ItemScores(chrf_items)}
    return TaskOutcome(spec.task, metrics, items, records, len(docs))


def tokenizer_parity(task: TaskInput, model_dir: Path | None) -> TaskOutcome:
    from tongues.eval.documents import data_root, file_path
    from tongues.tokenizers.report import read_parallel, tokenizer_report

    if model_dir is None:
        raise DataError(f"task {task.spec.task}: tokenizer parity needs a model (or tokenizer) directory")
    lang = task.spec.language
    lines = [line for i, d in enumerate(task.docs)
             for line in prompts.doc_reference(task.spec, d, task.where(i))[0].splitlines() if line.strip()]
    parallel = None
    if task.spec.data.parallel:
        path = file_path(task.spec.data.parallel, data_root(task.data_dir))
        if path is not None and path.is_file():  # optional: the premium needs aligned English text
            parallel = read_parallel([(lang, path)])
    report = tokenizer_report([model_dir], {lang: lines}, parallel, names=["model"])
    row = report.rows[0]
    keep = ("bytes_per_token", "tokens_per_char", "tokens_per_word", "byte_fallback_rate", "unk_rate",
            "roundtrip_exact", "tokens", "bytes")
    metrics = {k: row.get(k) for k in keep}
    metrics["premium_vs_en"] = report.premium.get("model", {}).get(lang)
    return TaskOutcome(task.spec.task, metrics, {}, [], row["lines"])
