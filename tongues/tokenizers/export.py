"""Hugging Face export of a SentencePiece tokenizer: tokenizer.json, chat template, special tokens.

The fast tokenizer is built deliberately from the SentencePiece model proto with the `tokenizers`
library (no slow-tokenizer conversion, which in transformers 5 can silently produce a 3-entry
vocabulary): the same pieces and scores (Unigram) or the merges implied by the piece ranks (BPE),
byte fallback, the same NFC normalization, no dummy prefix. `verify_parity` checks that it gives
SentencePiece's ids; `tongues tokenizer train` runs it before writing anything.

The directory then loads with `transformers.AutoTokenizer.from_pretrained(DIR)` alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Fixed ids (the contract with every later stage); SentencePiece control symbols 0-3, then
# user-defined symbols (matched whole in text) for ChatML turns and future use.
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
RESERVED = tuple(f"<|reserved_{i}|>" for i in range(10))
USER_DEFINED = (IM_START, IM_END, *RESERVED)
SPECIAL_IDS = {PAD: 0, UNK: 1, BOS: 2, EOS: 3, IM_START: 4, IM_END: 5} | {
    token: 6 + i for i, token in enumerate(RESERVED)
}

# ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n" per turn; the generation prompt opens an
# assistant turn. A model stops its turn with <|im_end|>. An assistant turn's content and its
# <|im_end|> sit inside {% generation %} markers: `return_assistant_tokens_mask` (TRL's
# assistant_only_loss) then trains exactly the assistant tokens, the stop token included. The
# markers render nothing: the text is the same as plain ChatML.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# SentencePiece piece types (sentencepiece_model.proto).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _BYTE = 1, 2, 3, 4, 6
_UNIGRAM, _BPE = 1, 2


def load_proto(model_file: str | Path) -> Any:
    """The SentencePiece ModelProto of `model_file`."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(model_file).read_bytes())
    return proto


def bpe_merges(proto: Any) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece BPE model: every split of a normal piece into two
    normal pieces, ranked by the merged piece's score (SentencePiece merges the best-scored
    adjacent pair first), then by its id."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces) if p.type == _NORMAL}
    ranked = []
    for piece, (score, index) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, index, cut, left, right))
    return [(left, right) for *_, left, right in sorted(ranked)]


def hf_tokenizer_from_sentencepiece(model_file: str | Path) -> Any:
    """A `tokenizers.Tokenizer` that encodes and decodes like the SentencePiece model."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    proto = load_proto(model_file)
    spec, norm = proto.trainer_spec, proto.normalizer_spec
    if spec.model_type == _UNIGRAM:
        vocab = [(p.piece, p.score) for p in proto.pieces]
        model = models.Unigram(vocab, unk_id=spec.unk_id, byte_fallback=spec.byte_fallback)
    elif spec.model_type == _BPE:
        ids = {p.piece: i for i, p in enumerate(proto.pieces)}
        model = models.BPE(ids, bpe_merges(proto), unk_token=spec.unk_piece, fuse_unk=True,
                           byte_fallback=spec.byte_fallback)
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {spec.model_type} is not unigram or BPE")
    if norm.add_dummy_prefix or norm.remove_extra_whitespaces:
        raise ValueError(f"{model_file}: expected a model trained by tongues (no dummy prefix, whitespace kept)")
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(" ", "▁")])
    # The Unigram model would match the text "<0x41>" as the byte piece <0x41> (SentencePiece
    # never matches byte pieces in text): cut such text after "<". Digits are split, so no
    # SentencePiece piece spans that cut.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"<(?=0x[0-9A-Fa-f]{2}>)"), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = [p.piece for p in proto.pieces if p.type in (_CONTROL, _USER_DEFINED, _UNKNOWN)]
    tokenizer.add_special_tokens([AddedToken(piece, special=True, normalized=False) for piece in specials])
    return tokenizer


def tokenizer_config(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """tokenizer_config.json: the fast-tokenizer class, special tokens, no BOS/EOS added, chat template."""
    config: dict[str, Any] = {
        # The generic fast class: loads tokenizer.json as it is (a model-specific class such as
        # LlamaTokenizer may rebuild the pipeline from its own assumptions).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        # transformers 5 reads this older key as `extra_special_tokens`; 4.x reads it as it is.
        "additional_special_tokens": list(USER_DEFINED),
        # Plain encode adds nothing; data.tokenize adds <s>/</s> around documents explicitly.
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "padding_side": "right",
        "chat_template": CHAT_TEMPLATE,
    }
    config.update(extra or {})
    return config


def special_tokens_map() -> dict[str, Any]:
    """special_tokens_map.json (read by older transformers and other tools)."""
    return {
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD,
        "additional_special_tokens": list(USER_DEFINED),
    }


def write_hf_files(model_file: str | Path, out_dir: str | Path) -> Any:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json beside the model.

    Returns the `tokenizers.Tokenizer` written to tokenizer.json.
    """
    out_dir = Path(out_dir)
    tokenizer = hf_tokenizer_from_sentencepiece(model_file)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    _write(out_dir / "tokenizer_config.json", tokenizer_config())
    _write(out_dir / "special_tokens_map.json", special_tokens_map())
    return tokenizer


def verify_parity(model_file: str | Path, tokenizer: Any, texts: Iterable[str], max_mismatch: float = 0.01) -> dict[str, Any]:
    """Compare tokenizer.json with SentencePiece: vocabulary, special ids, then ids and decode per text.

    Returns {"checked", "mismatched", "examples"}. A vocabulary or special-id difference, or more
    than `max_mismatch` of the texts differing, is a bug in the export: RuntimeError. (A rare
    difference can remain for BPE: when one piece can be merged from two overlapping pairs,
    SentencePiece takes the leftmost, Hugging Face BPE the lower-ranked merge.)
    """
    import sentencepiece as spm

    from tongues.tokenizers.normalization import normalize_text

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    if tokenizer.get_vocab_size() != sp.get_piece_size():
        raise RuntimeError(f"tokenizer.json has {tokenizer.get_vocab_size()} entries, "
                           f"SentencePiece {sp.get_piece_size()}")
    for token, token_id in SPECIAL_IDS.items():
        if sp.piece_to_id(token) != token_id or tokenizer.token_to_id(token) != token_id:
            raise RuntimeError(f"{token} should have id {token_id}: SentencePiece {sp.piece_to_id(token)}, "
                               f"tokenizer.json {tokenizer.token_to_id(token)}")
    checked, examples = 0, []
    for text in texts:
        checked += 1
        expected = sp.encode(text)
        got = tokenizer.encode(text, add_special_tokens=False).ids
        decoded = tokenizer.decode(got, skip_special_tokens=False)
        if got != expected or decoded != normalize_text(text):
            examples.append({"text": text[:200], "sentencepiece": expected[:50], "tokenizer_json": got[:50]})
    if checked and len(examples) / checked > max_mismatch:
        first = examples[0]
        raise RuntimeError(f"tokenizer.json differs from SentencePiece on {len(examples)} of {checked} texts, "
                           f"e.g. {first['text'][:80]!r}: {first['sentencepiece'][:20]} vs {first['tokenizer_json'][:20]}")
    return {"checked": checked, "mismatched": len(examples), "examples": examples[:5]}


def _write(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
