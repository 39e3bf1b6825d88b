"""Tiny random causal LMs with a small multilingual tokenizer, made in-process for the inference
and chat/server tests (test_generate.py, test_chat.py, test_serve.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

LINES = [
    "안녕하세요. 오늘 날씨가 정말 좋네요.", "한국어는 한글로 씁니다. 저는 학생입니다.", "서울은 대한민국의 수도입니다.",
    "नमस्ते, आप कैसे हैं? मैं ठीक हूँ।", "हिन्दी भारत की एक प्रमुख भाषा है।", "क्षत्रिय और ज्ञान शब्दों में संयुक्ताक्षर हैं।",
    "Xin chào, bạn có khỏe không? Tôi khỏe.", "Tiếng Việt có sáu thanh điệu.", "Hà Nội là thủ đô của Việt Nam.",
    "Hello, how are you today? I am fine.", "English is written with the Latin alphabet.", "The cat sat on the mat.",
]
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_tokenizer(directory: Path, chat_template: str | None = CHATML) -> None:
    """A SentencePiece-like fast tokenizer (Unigram + byte fallback, ▁ for spaces, bos added) saved in
    `directory`: ids 0-5 are the specials, 6-261 the bytes <0x00>..<0xFF>, then learned pieces."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(" ", "▁"), normalizers.Prepend("▁")])
    split = pre_tokenizers.Split("▁", behavior="merged_with_next")
    learner = Tokenizer(models.Unigram())
    learner.normalizer, learner.pre_tokenizer = normalizer, split
    learner.train_from_iterator(LINES * 20, trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                                     unk_token="<unk>"))
    # The trainer picks the same pieces on every run, but its scores (and so the ids) vary slightly
    # between runs (parallel sums): score the pieces by their frequency in the text instead, so the
    # vocabulary, and every test model's output, is the same on every run.
    text = "\n".join("▁" + line.replace(" ", "▁") for line in LINES)  # as the normalizer sees it
    pieces = [p for p, _ in json.loads(learner.to_str())["model"]["vocab"] if p not in SPECIALS]
    counts = {p: text.count(p) + 1 for p in pieces}
    total = sum(counts.values())
    learned = sorted(((p, math.log(c / total)) for p, c in counts.items()), key=lambda item: (-item[1], item[0]))
    vocab = [(s, 0.0) for s in SPECIALS] + [(f"<0x{b:02X}>", 0.0) for b in range(256)] + learned
    tok = Tokenizer(models.Unigram(vocab, unk_id=1, byte_fallback=True))
    tok.normalizer, tok.pre_tokenizer = normalizer, split
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                 pad_token="<pad>")
    if chat_template:
        hf.chat_template = chat_template
    hf.save_pretrained(directory)


def make_tiny_model(directory: Path, arch: str = "llama", context: int = 128, seed: int = 0,
                    chat_template: str | None = CHATML) -> Path:
    """A tiny random causal LM directory (safetensors + tokenizer). Large init std so that greedy output
    varies with the context instead of repeating one token."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    make_tokenizer(directory, chat_template)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(directory))
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                             tie_word_embeddings=True, bos_token_id=2, eos_token_id=3, pad_token_id=0,
                             initializer_range=0.4)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=context, bos_token_id=2,
                            eos_token_id=3, initializer_range=0.4)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(directory)
    return directory
