"""GGUF export, read back by transformers' own GGUF loader: the tokenizer gives SentencePiece's ids,
f16 greedy decoding equals the Hugging Face model's, q8_0 / q4_0 logits stay close."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tongues.errors import ConfigError, DataError  # noqa: E402

HELD_OUT = ["서울의 가을 하늘은 높고 맑다. 2024년 10월 3일.", "हिन्दी में संयुक्ताक्षर: क्षत्रिय, ज्ञान, श्रद्धा।",
            "Hà Nội mùa thu có hoa sữa nồng nàn.", "<|im_start|>user\n안녕<|im_end|>", "emoji 🙂 and ümlaut"]
PROMPTS = ["오늘 아침에", "옛날 옛적에", "서울은", "한국어", "바다",  # ko
           "आज सुबह", "एक गाँव में", "भारत", "हिन्दी", "पानी",  # hi
           "Sáng nay", "Ngày xưa", "Hà Nội", "Tiếng Việt", "Biển",  # vi
           "Xin chào", "नमस्ते", "안녕하세요", "mùa thu", "가을"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tongues tokenizer (SentencePiece BPE, byte fallback) and a small model trained on ko+hi+vi."""
    import random

    from pretrain_fixtures import tiny_config

    from tongues.data.tokenize import tokenize_corpus
    from tongues.lm.pretrain import pretrain
    from tongues.resources import embedded_corpus_path
    from tongues.tokenizers.train import resolve_sources, train_tokenizer

    root = tmp_path_factory.mktemp("gguf")
    docs = []
    for lang in ("ko", "hi", "vi"):
        text = embedded_corpus_path(lang).read_text(encoding="utf-8").split("\n\n")[:40]
        (root / f"{lang}.txt").write_text("\n".join(t.strip() for t in text), encoding="utf-8")
        docs += [t.strip() for t in text]
    train_tokenizer(resolve_sources([f"{lang}={root / f'{lang}.txt'}" for lang in ("ko", "hi", "vi")], ["ko", "hi", "vi"]),
                    root / "tok", vocab_size=2048, progress=False, log=None)
    import pyarrow as pa
    import pyarrow.parquet as pq

    random.Random(0).shuffle(docs)
    for split, part in (("train", docs[:110]), ("validation", docs[110:])):
        (root / "prep" / split).mkdir(parents=True)
        pq.write_table(pa.table({"text": part, "id": [str(i) for i in range(len(part))], "source": ["x"] * len(part)}),
                       root / "prep" / split / "shard-00000.parquet")
    (root / "prep" / "stats.json").write_text(json.dumps({"lang": "ko", "counts": {}}), encoding="utf-8")
    tokenize_corpus(root / "prep", root / "tok", root / "tokens")
    model = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}
    pretrain(tiny_config(model=model, seq_len=64, global_batch_tokens=64 * 8, max_steps=30, eval_every=30,
                         checkpoint_every=30, lr=5e-3, precision="fp32"), {"mix": (root / "tokens", 1.0)},
             root / "tok", root / "run", seed=0)
    return root / "run" / "model"


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    from tongues.lm.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("files")
    return {q: export_gguf(model_dir, out / f"model.{q}.gguf", q) for q in ("f16", "q8_0", "q4_0")}


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return tok, model


def test_the_gguf_vocabulary_is_sentencepieces(model_dir, exported):
    """What llama.cpp reads: every piece, score and type in SentencePiece's order, no dummy prefix."""
    from gguf import GGUFReader
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    reader = GGUFReader(exported["f16"])

    def field(name):
        f = reader.fields[name]
        return [f.parts[i] for i in f.data]

    pieces = [bytes(p).decode("utf-8") for p in field("tokenizer.ggml.tokens")]
    assert pieces == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [float(s[0]) for s in field("tokenizer.ggml.scores")]
    assert scores == pytest.approx([sp.get_score(i) for i in range(sp.get_piece_size())])
    types = [int(t[0]) for t in field("tokenizer.ggml.token_type")]
    assert types[sp.unk_id()] == 2 and types[sp.bos_id()] == 3 and types[sp.eos_id()] == 3
    assert all(types[i] == 6 for i in range(sp.get_piece_size()) if sp.is_byte(i))
    assert types[pieces.index("<|im_end|>")] in (3, 4)
    assert bool(field("tokenizer.ggml.add_space_prefix")[0][0]) is False
    assert int(field("tokenizer.ggml.bos_token_id")[0][0]) == sp.bos_id()


def test_the_gguf_tokenizer_gives_sentencepieces_ids(model_dir, exported):
    from sentencepiece import SentencePieceProcessor
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    tok, _ = _load(exported["f16"])
    # transformers' GGUF loader rebuilds a Llama tokenizer and ignores tokenizer.ggml.add_space_prefix
    # (llama.cpp honours it); ours is False, so turn the loader's dummy prefix off as llama.cpp does.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never",
                                                                   split=False)
    hf = AutoTokenizer.from_pretrained(model_dir)
    sp = SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    for text in HELD_OUT[:3] + HELD_OUT[4:]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == hf(text, add_special_tokens=False)["input_ids"] == sp.encode(text), text
    assert tok.convert_tokens_to_ids("<|im_end|>") == sp.piece_to_id("<|im_end|>")


def test_f16_greedy_tokens_equal_the_hf_models(model_dir, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    _, g = _load(exported["f16"])
    hf.half().float()  # compare like with like: f16 weights
    for prompt in PROMPTS:
        ids = torch.tensor([hf_tok(prompt, add_special_tokens=False)["input_ids"]])
        a = hf.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        b = g.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)
        assert a.tolist() == b.tolist(), prompt


def test_quantized_logits_stay_close(model_dir, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.tensor([hf_tok(" ".join(HELD_OUT[:3]), add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = hf(ids).logits[0]
    tolerance = {"q8_0": 0.01, "q4_0": 0.08}  # mean |logit diff| relative to the logits' spread (measured 0.0015, 0.028)
    for q, tol in tolerance.items():
        _, model = _load(exported[q])
        with torch.no_grad():
            got = model(ids).logits[0]
        spread = ref.std().item()
        assert (got - ref).abs().mean().item() / spread < tol, q
        agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        assert agree > (0.95 if q == "q8_0" else 0.7), (q, agree)
    sizes = {q: p.stat().st_size for q, p in exported.items()}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"]


def test_bad_input_is_one_line(model_dir, tmp_path):
    from model_fixtures import make_tiny_model

    from tongues.lm.gguf_export import export_gguf

    with pytest.raises(ConfigError, match="supported quantizations are f16, q8_0, q4_0"):
        export_gguf(model_dir, tmp_path / "x.gguf", "q2_k")
    gpt2 = make_tiny_model(tmp_path / "gpt2", arch="gpt2")
    with pytest.raises(ConfigError, match="supports Llama models .*'gpt2'"):
        export_gguf(gpt2, tmp_path / "y.gguf")
    with pytest.raises(DataError, match="no config.json"):
        export_gguf(tmp_path, tmp_path / "z.gguf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "y.gguf").exists()


def test_cli_exports_gguf(model_dir, tmp_path, capsys):
    from tongues.cli import main

    assert main(["export", "--model", str(model_dir), "--format", "gguf", "--quant", "q8_0",
                 "--out", str(tmp_path / "m.gguf")]) == 0
    assert "q8_0" in capsys.readouterr().out and (tmp_path / "m.gguf").stat().st_size > 0
    assert main(["export", "--model", str(model_dir), "--format", "gguf", "--quant", "q3", "--out", "x"]) == 2
    assert "supported quantizations" in capsys.readouterr().err


def test_a_recipe_gguf_entry_is_a_stage_after_its_model(model_dir, tmp_path):
    """`gguf:` in a recipe: a model's entry follows its last stage, a student's its distill stage; the
    stage writes one file per quantization with those weight types; an unknown name is one line."""
    from gguf import GGMLQuantizationType, GGUFReader

    from tongues.config import Recipe
    from tongues.lm.gguf_export import run_stage
    from tongues.run import StageContext, build_stages
    from tongues.schema import validate

    data = {"name": "r", "corpora": {"ko": {"lang": "ko", "sources": ["embedded:ko"], "license": "CC-BY-4.0"}},
            "tokenizers": {"ko": {"corpora": ["ko"]}}, "models": {"ko": {"tokenizer": "ko", "corpora": {"ko": 1.0}}},
            "students": {"small": {"teacher": "ko", "layers": 1}},
            "gguf": {"ko": {"quants": ["f16", "q4_0"]}, "small": {}}}
    recipe = validate(Recipe, data, "r.yaml")
    stages = {s.name: s for s in build_stages(recipe)}
    order = list(stages)
    assert stages["gguf-ko"].inputs == ["pretrain-ko"] and stages["gguf-small"].inputs == ["distill-small"]
    assert order.index("gguf-ko") > order.index("pretrain-ko") and stages["gguf-small"].config.quants == ["q8_0"]
    metrics = run_stage(StageContext(stages["gguf-ko"], recipe, tmp_path, {"pretrain-ko": model_dir.parent}, 0))
    assert sorted(metrics["files"]) == ["f16", "q4_0"]
    for quant, want in (("f16", GGMLQuantizationType.F16), ("q4_0", GGMLQuantizationType.Q4_0)):
        reader = GGUFReader(metrics["files"][quant])
        weight = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
        assert weight.tensor_type == want
    with pytest.raises(ConfigError, match=r"gguf: 'kx' is not defined \(defined: ko, small\)"):
        validate(Recipe, {**data, "gguf": {"kx": {}}}, "r.yaml")
    with pytest.raises(ConfigError, match=r"gguf\.ko\.quants"):
        validate(Recipe, {**data, "gguf": {"ko": {"quants": ["q5_k"]}}}, "r.yaml")


def test_a_unigram_tokenizer_warns_that_llama_cpp_may_split_differently(model_dir, exported, tmp_path):
    """llama.cpp's SentencePiece tokenizer is exact for BPE vocabularies only: a unigram one is flagged."""
    import shutil
    import warnings

    from tongues.lm.gguf_export import export_gguf
    from tongues.resources import embedded_corpus_path
    from tongues.tokenizers.train import resolve_sources, train_tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fixture's BPE tokenizer: no warning
        export_gguf(model_dir, tmp_path / "bpe.gguf", "f16")
    text = tmp_path / "ko.txt"
    text.write_text("\n".join(embedded_corpus_path("ko").read_text(encoding="utf-8").split("\n\n")[:60]), encoding="utf-8")
    train_tokenizer(resolve_sources([f"ko={text}"], ["ko"]), tmp_path / "uni", vocab_size=2048, model_type="unigram",
                    progress=False, log=None)
    unigram = tmp_path / "model"
    shutil.copytree(model_dir, unigram)
    shutil.copy2(tmp_path / "uni" / "tokenizer.model", unigram / "tokenizer.model")
    with pytest.warns(UserWarning, match="unigram tokenizer.*exact for BPE models only"):
        export_gguf(unigram, tmp_path / "unigram.gguf", "f16")
