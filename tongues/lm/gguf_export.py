"""Export a tongues model (a Hugging Face Llama directory with a SentencePiece tokenizer) as GGUF,
the file format of llama.cpp-family runtimes (llama.cpp, ollama, LM Studio), with the ggml
project's own writer (the `gguf` package).

- Metadata: the `llama` architecture (context, widths, heads, RoPE base, RMSNorm epsilon).
- Tensors in llama.cpp's naming (token_embd, blk.N.attn_q, ..., output_norm, output). Q and K are
  permuted as llama.cpp's RoPE expects: Hugging Face keeps each head's rotary pairs split into two
  halves, llama.cpp interleaves them (the same permutation as llama.cpp's convert_hf_to_gguf.py).
- The tokenizer as `tokenizer.ggml.model = llama`: every SentencePiece piece with its score and
  type (normal, unknown, control, user-defined, byte), the special ids, no automatic BOS and no
  space prefix (tongues tokenizers add neither), and the ChatML chat template.
- Quantization: f16, q8_0, q4_0 for the 2-D weights (1-D norms stay f32), with `gguf.quants`.

Written to a temporary file, then renamed.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, get_args

import numpy as np

from tongues.errors import ConfigError, DataError
from tongues.lm.config import Quant
from tongues.manifest import atomic_path

QUANTS: tuple[str, ...] = get_args(Quant)


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotary halves -> llama.cpp's interleaved pairs, per head."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tensor_names(config: dict[str, Any]) -> dict[str, str]:
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(config["num_hidden_layers"]):
        for hf, cpp in parts.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{cpp}.weight"
    return names


def _vocabulary(model_dir: Path, vocab_size: int) -> tuple[list[bytes], list[float], list[int]]:
    """(pieces, scores, token types) from the SentencePiece model, padded to the model's vocabulary."""
    from gguf import TokenType
    from sentencepiece import SentencePieceProcessor

    spm_file = model_dir / "tokenizer.model"
    if not spm_file.is_file():
        raise DataError(f"{model_dir}: no tokenizer.model: GGUF export supports SentencePiece tokenizers "
                        "(every tongues tokenizer is one)")
    sp = SentencePieceProcessor(model_file=str(spm_file))
    pieces, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        pieces.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(TokenType.BYTE)
        elif sp.is_unused(i):
            types.append(TokenType.UNUSED)
        else:
            types.append(TokenType.NORMAL)
    added = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens", [])
    for token in added:  # ChatML specials and reserved tokens: control tokens for llama.cpp
        i = token["id"]
        if i < len(types) and token.get("special"):
            types[i] = TokenType.CONTROL if token["content"] not in ("<unk>",) else TokenType.UNKNOWN
    for i in range(len(pieces), vocab_size):
        pieces.append(f"[PAD{i}]".encode())
        scores.append(-1e4)
        types.append(TokenType.UNUSED)
    return pieces, scores, [int(t) for t in types]


def export_gguf(model_dir: str | Path, out: str | Path, quant: str = "f16") -> Path:
    """Write `model_dir` (a Llama with a SentencePiece tokenizer) as a GGUF file `out`; returns `out`."""
    import gguf
    from safetensors.numpy import load_file

    model_dir, out = Path(model_dir), Path(out)
    if quant not in QUANTS:
        raise ConfigError(f"--quant {quant!r}: supported quantizations are {', '.join(QUANTS)}")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise DataError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ConfigError(f"{model_dir}: GGUF export supports Llama models (model_type 'llama'), this is "
                          f"{config.get('model_type')!r}")
    weights: dict[str, np.ndarray] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        weights.update(load_file(f))
    if not weights:
        raise DataError(f"{model_dir}: no .safetensors weights")
    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // n_head
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0}[quant]
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quant]
    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(model_dir.parent.name if model_dir.name == "model" else model_dir.name)
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(hidden)
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
        writer.add_vocab_size(config["vocab_size"])
        writer.add_file_type(int(ftype))
        pieces, scores, types = _vocabulary(model_dir, config["vocab_size"])
        if _is_unigram(model_dir / "tokenizer.model"):
            warnings.warn(f"{model_dir}: a SentencePiece unigram tokenizer. llama.cpp's SentencePiece tokenizer merges "
                          "pieces by score, exact for BPE models only: it may split some text differently from "
                          "SentencePiece (the ids stay valid). Train the tokenizer with model_type bpe for exact "
                          "llama.cpp tokenization.", stacklevel=2)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(pieces)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        for key, setter in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                            ("pad_token_id", writer.add_pad_token_id)):
            value = config.get(key)
            if isinstance(value, list):
                value = value[0]
            if value is not None:
                setter(int(value))
        writer.add_unk_token_id(1)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(False)
        template = _chat_template(model_dir)
        if template:
            writer.add_chat_template(template)
        names = _tensor_names(config)
        tied = config.get("tie_word_embeddings", False) or "lm_head.weight" not in weights
        for hf_name, array in weights.items():
            if hf_name not in names:
                raise DataError(f"{model_dir}: unexpected tensor {hf_name!r} for a Llama model")
            if hf_name == "lm_head.weight" and tied:
                continue
            data = array.astype(np.float32)
            if hf_name.endswith("q_proj.weight"):
                data = _permute(data, n_head)
            elif hf_name.endswith("k_proj.weight"):
                data = _permute(data, n_kv)
            if data.ndim == 1:
                writer.add_tensor(names[hf_name], data)
            elif quant == "f16":
                writer.add_tensor(names[hf_name], data.astype(np.float16))
            else:
                writer.add_tensor(names[hf_name], gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def _is_unigram(spm_file: Path) -> bool:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm_file.read_bytes())
    return proto.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.UNIGRAM


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    return None


def run_stage(ctx: Any) -> dict[str, Any]:
    """Recipe stage "gguf-<name>": one <name>.<quant>.gguf per quantization of the source stage's model."""
    source = ctx.inputs[ctx.stage.extra["source_input"]] / ctx.stage.extra["model_subdir"]
    name = ctx.stage.name.removeprefix("gguf-")
    files = {q: export_gguf(source, Path(ctx.out_dir) / f"{name}.{q}.gguf", q) for q in ctx.config.quants}
    sizes = {q: round(f.stat().st_size / 2**20, 3) for q, f in files.items()}
    return {"files": {q: str(f) for q, f in files.items()}, "mib": sizes, "source": str(source),
            "headline": ", ".join(f"{q} {mib:.2f} MiB" for q, mib in sizes.items()) + f" from {source}"}


__all__ = ["QUANTS", "export_gguf", "run_stage"]
