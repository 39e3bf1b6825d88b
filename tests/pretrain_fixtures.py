"""Builders for the pretraining tests: a tiny HF fast tokenizer and a prepared corpus, made in-process.

The tokenizer follows the project's contract (special tokens <pad> <unk> <s> </s> <|im_start|>
<|im_end|> at ids 0-5, a ChatML chat template) without depending on `tongues.tokenizers`.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("the cat dog sat on a mat and ran to big red blue house tree river sun moon "
         "xin chào bạn khỏe không tôi là người việt nam").split()


def make_documents(n: int, seed: int = 0, min_words: int = 5, max_words: int = 40) -> list[str]:
    """Deterministic pseudo-text with some structure to learn (word bigrams repeat)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words, w = [], rng.choice(WORDS)
        for _ in range(rng.randint(min_words, max_words)):
            words.append(w)
            w = WORDS[(WORDS.index(w) + rng.choice((1, 1, 1, 2, 7))) % len(WORDS)]
        docs.append(" ".join(words).capitalize() + ".")
    return docs


def make_tokenizer(out_dir: Path, vocab_size: int = 120, corpus: list[str] | None = None) -> Path:
    """Train a tiny BPE tokenizer and save it as a Hugging Face fast tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(corpus or make_documents(200, seed=99), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    assert [tok.token_to_id(t) for t in SPECIALS] == list(range(6))
    return out_dir


def make_prepared(out_dir: Path, n_train: int = 300, n_val: int = 30, seed: int = 0, lang: str = "vi",
                  shard_docs: int = 1000) -> Path:
    """A prepared-corpus directory (the `data prepare` contract) with generated documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = make_documents(n_train + n_val, seed=seed)
    for split, texts in (("train", docs[:n_train]), ("validation", docs[n_train:])):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        for i in range(0, max(1, len(texts)), shard_docs):
            chunk = texts[i : i + shard_docs]
            table = pa.table({"text": chunk, "id": [f"{split}-{i + j}" for j in range(len(chunk))],
                              "source": ["generated"] * len(chunk)})
            pq.write_table(table, out_dir / split / f"shard-{i // shard_docs:05d}.parquet")
    stats = {"lang": lang, "normalization": "NFC", "license": "CC0-1.0",
             "counts": {"train": n_train, "validation": n_val}}
    (out_dir / "stats.json").write_text(json.dumps(stats), encoding="utf-8")
    return out_dir


TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2}


def tokenized(root: Path, n_train: int = 300, lang: str = "vi", seed: int = 0) -> tuple[Path, Path]:
    """(tokenizer dir, token dir) of a generated corpus under `root`, built once per root."""
    from tongues.data.tokenize import tokenize_corpus

    tok, tokens = root / "tok", root / "tokens"
    if not (tokens / "meta.json").exists():
        make_tokenizer(tok)
        make_prepared(root / "prep", n_train=n_train, lang=lang, seed=seed)
        tokenize_corpus(root / "prep", tok, tokens)
    return tok, tokens


def losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step, in order."""
    lines = (run_dir / "train.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


def tiny_config(**overrides):
    """A PretrainConfig for a ~15k-parameter model that trains in well under a second per step."""
    from tongues.lm.config import PretrainConfig

    base = dict(model=TINY_MODEL, seq_len=32, global_batch_tokens=32 * 8, micro_batch_size=4, lr=1e-2,
                warmup_steps=3, max_steps=12, eval_every=6, checkpoint_every=4, keep_checkpoints=10,
                eval_tokens=512, log_every=4, tensorboard=False, precision="bf16", peak_flops=1e11,
                num_threads=1)
    base.update(overrides)
    return PretrainConfig(**base)


def quiet_env() -> dict[str, str]:
    """The environment of a subprocess run: one thread per process, no progress bars."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def pretrain_args(tok, tokens, config, out, *extra: str) -> list[str]:
    """`-m tongues pretrain` on `tokens` with the config file `config`, seed 7."""
    return ["-m", "tongues", "pretrain", "--data", str(tokens), "--tokenizer", str(tok), "--out", str(out),
            "--config", str(config), "--seed", "7", *extra]


def torchrun(nproc: int, tok, tokens, config, out, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`tongues pretrain` under `torchrun --standalone` with `nproc` processes; asserts it succeeded."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *pretrain_args(tok, tokens, config, out, *extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=quiet_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def reference_run(root: Path, cfg) -> tuple[Path, Path, Path, Path]:
    """(tokenizer, tokens, config file, reference run) under `root`: `cfg` written as YAML for the
    subprocess runs, and trained once in this process (seed 7, no export) as what they must match."""
    import yaml

    from tongues.lm import pretrain as pt

    tok, tokens = tokenized(root)
    config = root / "pretrain.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(exclude_none=True)))
    reference = root / "reference"
    pt.pretrain(cfg, {"tokens": (tokens, 1.0)}, tok, reference, seed=7, export=False)
    return tok, tokens, config, reference
