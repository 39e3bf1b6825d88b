"""How an instruction stage is judged, on held-out data (the same for every stage, so stages compare):

- chat: greedy answers to held-out prompts -> language consistency (`tongues.langid`) rate and
  mean, and chrF against the reference answer (sacrebleu);
- reward model: pairwise accuracy on held-out preference pairs, per failure kind;
- win rate: the reward model's verdict between two models' answers to the same prompts;
- alignment tax: held-out pretraining-kind text, bits per byte before and after the stage.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from tongues.instruct.data import Conversation, Preference
from tongues.langid import language_consistency

CONSISTENT = 0.9  # an answer counts as "in the right language" when this share of its letters is


def expected_language(conversation: Conversation | Preference, default: str | None = None) -> str | None:
    from tongues.langid import detect_language

    if conversation.answer_lang:
        return conversation.answer_lang
    users = [m["content"] for m in conversation.prompt if m["role"] == "user"]
    return detect_language(users[-1]) if users else default


def chat_answers(model: Any, conversations: list[Conversation], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers of `model` (a directory or a loaded tongues LanguageModel) to the prompts."""
    from tongues.infer.generate import LanguageModel, load

    lm = model if isinstance(model, LanguageModel) else load(model, device="cpu")
    return lm.chat([c.prompt for c in conversations], max_new_tokens=max_new_tokens, temperature=0, batch_size=32)


def chat_scores(conversations: list[Conversation], answers: list[str]) -> dict[str, Any]:
    """language_consistency (rate of answers >= CONSISTENT, and mean) and chrF of `answers`."""
    from sacrebleu.metrics import CHRF

    shares = [language_consistency(c.prompt[-1]["content"], a, expected_language(c))
              for c, a in zip(conversations, answers, strict=True)]
    chrf = CHRF().corpus_score(answers, [[c.reference for c in conversations]]).score
    return {"language_consistency": sum(s >= CONSISTENT for s in shares) / max(1, len(shares)),
            "language_consistency_mean": sum(shares) / max(1, len(shares)), "chrf": chrf, "n": len(answers)}


class RewardScorer:
    """A trained reward model (sequence classification, one logit) scoring conversations."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        import torch

        self.model, self.tokenizer, self._torch = model.eval(), tokenizer, torch

    @classmethod
    def load(cls, directory: str | Path) -> RewardScorer:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True,
                                                                   trust_remote_code=False)
        return cls(model, AutoTokenizer.from_pretrained(directory))

    def score(self, prompts: list[list[dict[str, str]]], answers: list[str], batch_size: int = 16) -> list[float]:
        texts = [self.tokenizer.apply_chat_template([*p, {"role": "assistant", "content": a}], tokenize=False)
                 for p, a in zip(prompts, answers, strict=True)]
        out: list[float] = []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            with self._torch.no_grad():
                for i in range(0, len(texts), batch_size):
                    batch = self.tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                                           max_length=512, add_special_tokens=False)
                    out += self.model(**batch).logits[:, 0].float().tolist()
        finally:
            self.tokenizer.padding_side = side
        return out


def pairwise_accuracy(scorer: RewardScorer, pairs: list[Preference]) -> dict[str, Any]:
    """Share of held-out pairs where the reward model scores chosen above rejected, overall and per kind."""
    chosen = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = scorer.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    right = [c > r for c, r in zip(chosen, rejected, strict=True)]
    kinds: dict[str, list[bool]] = defaultdict(list)
    for pair, ok in zip(pairs, right, strict=True):
        kinds[pair.failure or "unlabelled"].append(ok)
    return {"accuracy": sum(right) / max(1, len(right)), "n": len(right),
            "by_failure": {k: sum(v) / len(v) for k, v in sorted(kinds.items())}}


def win_rate(scorer: RewardScorer, conversations: list[Conversation], new: list[str], old: list[str]) -> float:
    """Share of prompts where the reward model prefers `new` over `old` (ties count half)."""
    prompts = [c.prompt for c in conversations]
    a, b = scorer.score(prompts, new), scorer.score(prompts, old)
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)) / max(1, len(a))


def heldout_texts(languages: list[str]) -> list[str]:
    """The embedded held-out prose of `languages` (documents separated by blank lines)."""
    from tongues.resources import RESOURCES

    texts = []
    for lang in languages:
        path = RESOURCES / "eval" / lang / "heldout.txt"
        if path.is_file():
            texts += [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    return texts


def bits_per_byte(model_dir: str | Path, texts: list[str]) -> float | None:
    """Bits per UTF-8 byte of `texts` under the causal LM at `model_dir` (None without texts)."""
    if not texts:
        return None
    from tongues.eval.scoring import Scorer

    scorer = Scorer.load(model_dir, progress=False)
    scored = scorer.loglikelihood_rolling(texts)
    return -sum(s for s, _ in scored) / math.log(2) / sum(len(t.encode("utf-8")) for t in texts)


def model_languages(model_dir: Path) -> list[str]:
    import json

    meta = Path(model_dir) / "tongues_tokenizer.json"
    if meta.is_file():
        return list(json.loads(meta.read_text(encoding="utf-8")).get("languages", []))
    return []


__all__ = ["RewardScorer", "bits_per_byte", "chat_answers", "chat_scores", "heldout_texts", "pairwise_accuracy",
           "win_rate"]
