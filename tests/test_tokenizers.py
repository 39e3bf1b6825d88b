"""Tokenizers: training, NFC normalization, HF export parity, chat template, report, bad input.

Hermetic: throwaway tokenizers are trained in-process (once per module) on the small
sentences below, written for these tests.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm

from tongues.errors import ConfigError, DataError
from tongues.manifest import sha256_file
from tongues.tokenizers.export import CHAT_TEMPLATE, SPECIAL_IDS
from tongues.tokenizers.sampling import mixing_probabilities, sampling_rates
from tongues.tokenizers.train import default_model_type, resolve_sources, train_tokenizer

SENTENCES = {
    "ko": [
        "오늘은 날씨가 맑고 따뜻해서 공원에 산책을 나갔습니다.",
        "한국어 형태소 분석은 자연어 처리에서 중요한 단계입니다.",
        "우리 팀은 새로운 언어 모델을 처음부터 학습하고 있어요.",
        "서울의 지하철은 빠르고 깨끗해서 많은 사람들이 이용한다.",
        "저녁에는 가족과 함께 김치찌개를 먹었습니다.",
        "이 영화는 정말 재미있었고 배우들의 연기도 훌륭했다.",
        "학생들은 도서관에서 시험 공부를 열심히 하고 있다.",
        "컴퓨터가 문장을 이해하려면 많은 데이터가 필요합니다.",
        "봄이 오면 벚꽃이 피고 사람들은 꽃구경을 간다.",
        "회의는 다음 주 월요일 오전 열 시에 시작됩니다.",
        "그녀는 매일 아침 커피를 마시며 신문을 읽는다.",
        "한글은 세종대왕이 만든 과학적인 문자입니다.",
        "2024년 3월 15일에 1,200명이 모였고 입장료는 5000원이었다.",
    ],
    "hi": [
        "भारत एक विशाल देश है जहाँ अनेक भाषाएँ बोली जाती हैं।",
        "विज्ञान और प्रौद्योगिकी ने हमारे जीवन को बदल दिया है।",
        "छात्र पुस्तकालय में परीक्षा की तैयारी कर रहे हैं।",
        "क्षत्रिय राजा ने अपने मित्र को पत्र लिखा।",
        "श्रीमान शर्मा प्रतिदिन सुबह योग करते हैं।",
        "ज्ञान सबसे बड़ा धन है, इसे कोई चुरा नहीं सकता।",
        "हमारी टीम हिंदी के लिए एक नया भाषा मॉडल बना रही है।",
        "बारिश के मौसम में किसान खेतों में धान बोते हैं।",
        "दुःख के समय में सच्चे मित्र की पहचान होती है।",
        "गाँव के लोग त्योहार पर मिठाइयाँ बाँटते हैं।",
        "रेलगाड़ी समय पर स्टेशन पहुँच गई।",
        "कौन सा रास्ता बाज़ार की ओर जाता है?",
        "सुबह सूरज निकलते ही बच्चे स्कूल जाते हैं।",
        "सन 1947 में 15 अगस्त को देश आज़ाद हुआ और 26 जनवरी 1950 को संविधान लागू हुआ।",
    ],
    "vi": [
        "Hôm nay trời đẹp nên chúng tôi đi dạo trong công viên.",
        "Tiếng Việt có sáu thanh điệu và nhiều dấu phụ.",
        "Nhóm của chúng tôi đang huấn luyện một mô hình ngôn ngữ mới.",
        "Người dân Hà Nội thường uống cà phê vào buổi sáng.",
        "Học sinh đang ôn thi ở thư viện của trường.",
        "Mùa xuân đến, hoa đào nở rộ khắp các con phố.",
        "Chính phủ đã công bố kế hoạch phát triển kinh tế.",
        "Bà tôi kể những câu chuyện cổ tích rất hay.",
        "Máy tính cần rất nhiều dữ liệu để hiểu được câu văn.",
        "Cuộc họp sẽ bắt đầu lúc mười giờ sáng thứ Hai.",
        "Những người nông dân đang gặt lúa trên cánh đồng.",
        "Phở là món ăn nổi tiếng của Việt Nam.",
        "Năm 2023 có 98 triệu người, giá vé là 350000 đồng vào ngày 30 tháng 4.",
    ],
    "en": [
        "The weather was clear and warm, so we went for a walk in the park.",
        "Our team is training a new language model from scratch.",
        "Students are preparing for their exams in the library.",
        "Tokenizers borrowed from English models often split other scripts badly.",
        "The meeting starts at ten o'clock next Monday morning.",
        "She reads the newspaper every morning with a cup of coffee.",
        "Farmers plant rice in the fields during the rainy season.",
        "A computer needs a lot of data to understand a sentence.",
        "In 2024 about 1,500 people paid 25 dollars each on March 3.",
    ],
}

# Every text checked for SentencePiece / tokenizer.json parity and exact roundtrip.
PROBES = {
    "hangul": "한국어 형태소 분석은 자연어 처리에서 중요한 단계입니다.",
    "hangul_unseen": "낯선 글자: 똠방각하 뷁",
    "devanagari": "क्षत्रिय ज्ञान श्रीमान पत्र विज्ञान दुःख गाँव हिंदी कौन मौसम तैयारी सूरज देश लोग",
    "vietnamese": "Tiếng Việt có sáu thanh điệu: người, những, được, Hà Nội, phở.",
    "code_switching": "우리 팀은 GPU 8개로 model을 학습하고, हम Python में code लिखते हैं.",
    "emoji": "좋아요 👍🏽 नमस्ते 🙏 phở 🍜 ok 🇻🇳",
    "digits": "2024년 3월 15일, ₹1,250.75 và 1000000 đồng",
    "whitespace": "  leading, two  spaces,\ttab and\nnewline, trailing  ",
    "chat": "<|im_start|>user\n안녕하세요?<|im_end|>\n<|im_start|>assistant\n",
    "literal_byte_piece": "the text <0x41> is not a byte",
}


def _lines(lang: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    sentences = SENTENCES[lang]
    return [" ".join(rng.sample(sentences, rng.randint(1, 3))) for _ in range(n)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    sizes = {"ko": 300, "hi": 300, "vi": 200, "en": 100}
    return {lang: _write(root / f"{lang}.txt", _lines(lang, n, seed=i)) for i, (lang, n) in enumerate(sizes.items())}


@pytest.fixture(scope="module")
def multi(corpus, tmp_path_factory) -> Path:
    """A ko+hi+vi+en unigram tokenizer."""
    out = tmp_path_factory.mktemp("multi")
    sources = resolve_sources([f"{lang}={path}" for lang, path in corpus.items()], [])
    train_tokenizer(sources, out, vocab_size=700, model_type="unigram", progress=False, log=None)
    return out


@pytest.fixture(scope="module")
def korean(corpus, tmp_path_factory) -> Path:
    """A Korean tokenizer with the default model type (BPE for Korean)."""
    out = tmp_path_factory.mktemp("korean")
    train_tokenizer(resolve_sources([str(corpus["ko"])], ["ko"]), out, vocab_size=700, progress=False, log=None)
    return out


@pytest.fixture(scope="module")
def hindi(corpus, tmp_path_factory) -> Path:
    """A Hindi BPE tokenizer (unigram supports too few pieces on this little text)."""
    out = tmp_path_factory.mktemp("hindi")
    train_tokenizer(resolve_sources([str(corpus["hi"])], ["hi"]), out, vocab_size=600, model_type="bpe",
                    progress=False, log=None)
    return out


@pytest.fixture(scope="module", params=["multi", "korean"])
def tokenizer_dir(request) -> Path:
    return request.getfixturevalue(request.param)


def _sp(directory: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(directory / "tokenizer.model"))


def _hf(directory: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def _pieces(directory: Path, text: str) -> list[str]:
    sp = _sp(directory)
    return [sp.id_to_piece(i) for i in sp.encode(text)]


# --- export: vocabulary, special ids, parity, roundtrip ---------------------------------------


def test_metadata_records_choices(multi, korean):
    meta = json.loads((multi / "tongues_tokenizer.json").read_text(encoding="utf-8"))
    assert meta["languages"] == ["en", "hi", "ko", "vi"]
    assert meta["normalization"]["form"] == "NFC"
    assert meta["character_coverage"] == min(meta["character_coverage_by_language"].values()) == 0.9995
    assert meta["tokenizer_sha256"] == sha256_file(multi / "tokenizer.json")
    assert meta["model_type"] == "unigram"
    assert meta["parity"]["checked"] > 300 and meta["parity"]["mismatched"] == 0
    ko_meta = json.loads((korean / "tongues_tokenizer.json").read_text(encoding="utf-8"))
    assert ko_meta["model_type"] == "bpe" and ko_meta["character_coverage"] == 0.9995
    # Unigram unless the mix holds a language measured to need BPE.
    assert default_model_type(["hi", "en"]) == "unigram"
    assert default_model_type(["hi", "vi"]) == default_model_type(["ko"]) == "bpe"
    assert _sp(korean).get_piece_size() == 700


def test_vocabulary_and_special_ids_match_sentencepiece(tokenizer_dir):
    sp, hf = _sp(tokenizer_dir), _hf(tokenizer_dir)
    assert len(hf) == sp.get_piece_size()
    vocab = hf.get_vocab()
    assert all(vocab[sp.id_to_piece(i)] == i for i in range(sp.get_piece_size()))
    assert (hf.pad_token_id, hf.unk_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2, 3)
    assert hf.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [4, 5]
    for token, token_id in SPECIAL_IDS.items():
        assert sp.piece_to_id(token) == token_id == vocab[token]


@pytest.mark.parametrize("name", sorted(PROBES))
def test_hf_ids_equal_sentencepiece_and_roundtrip(tokenizer_dir, name):
    text = PROBES[name]
    sp, hf = _sp(tokenizer_dir), _hf(tokenizer_dir)
    ids = hf(text, add_special_tokens=False).input_ids
    assert ids == sp.encode(text)
    assert hf.decode(ids) == text
    assert sp.decode(ids) == text
    nfd = unicodedata.normalize("NFD", text)
    assert hf(nfd, add_special_tokens=False).input_ids == ids == sp.encode(nfd)


def test_plain_encode_adds_no_bos_or_eos(multi):
    hf = _hf(multi)
    assert hf("") .input_ids == []
    ids = hf("hello world").input_ids
    assert 2 not in ids and 3 not in ids
    # No dummy prefix: the first word has no "▁", a leading space is kept as one.
    assert not _pieces(multi, "Tiếng")[0].startswith("▁")
    assert _pieces(multi, " Tiếng")[0].startswith("▁")
    assert hf.decode(hf(" Tiếng").input_ids) == " Tiếng"


def test_training_data_lines_roundtrip_exactly(multi, corpus):
    sp, hf = _sp(multi), _hf(multi)
    for lang, path in corpus.items():
        lines = path.read_text(encoding="utf-8").splitlines()[:50]
        encoded = hf(lines, add_special_tokens=False).input_ids
        assert encoded == sp.encode(lines), lang
        assert hf.batch_decode(encoded) == lines, lang


# --- scripts -------------------------------------------------------------------------------


def test_hangul_syllables_stay_whole_from_nfc_and_nfd(korean):
    text = "한글은 세종대왕이 만든 과학적인 문자입니다."
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text and len(nfd) > len(text)  # conjoining jamo
    assert _sp(korean).encode(nfd) == _sp(korean).encode(text)
    pieces = _pieces(korean, nfd)
    assert "".join(pieces).replace("▁", " ") == text
    jamo = [p for p in pieces if any(0x1100 <= ord(c) <= 0x11FF for c in p)]
    assert jamo == []
    # A word seen in training is one piece (BPE merged it), not split into syllables or bytes.
    assert "한글은" in pieces


def test_devanagari_conjuncts_and_matras_survive_normalization(multi):
    text = PROBES["devanagari"]
    for conjunct in ("क्ष", "त्र", "ज्ञ", "श्र"):
        assert conjunct in text
    assert all(mark in text for mark in "िीुूेैोौंःँ")
    sp = _sp(multi)
    backend = _hf(multi).backend_tokenizer
    for spelling in (text, unicodedata.normalize("NFD", text)):
        assert sp.normalize(spelling) == text.replace(" ", "▁")
        assert backend.normalizer.normalize_str(spelling) == text.replace(" ", "▁")
        assert sp.encode(spelling) == sp.encode(text)
    pieces = _pieces(multi, text)
    assert not [p for p in pieces if p.startswith("<0x")]  # every letter and mark is in the vocabulary
    assert sp.decode(sp.encode(text)) == text


def test_devanagari_split_inside_clusters_far_less_than_byte_level_bpe(hindi, corpus, tmp_path):
    """GPT-2's pre-tokenization regex cuts every matra from its letter; ours cuts none by rule."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from tongues.tokenizers.report import tokenizer_report

    bbpe = ByteLevelBPETokenizer()
    bbpe.train([str(corpus["hi"])], vocab_size=600, show_progress=False)
    PreTrainedTokenizerFast(tokenizer_object=bbpe._tokenizer).save_pretrained(tmp_path / "bbpe")
    report = tokenizer_report([hindi, tmp_path / "bbpe"], {"hi": SENTENCES["hi"]}, names=["ours", "bbpe"])
    ours = report.metric("ours", "hi", "cluster_split_rate")
    theirs = report.metric("bbpe", "hi", "cluster_split_rate")
    assert theirs > 0.3 and ours < theirs / 3
    # Frequent conjuncts are inside one piece.
    pieces = [p for s in SENTENCES["hi"] for p in _pieces(hindi, s)]
    for conjunct in ("क्ष", "त्र", "ज्ञ"):
        assert any(conjunct in p for p in pieces), conjunct


def test_hf_pipeline_does_not_cut_marks_from_letters(multi):
    """The normalizer keeps NFC marks, the pre-tokenizer never splits a word (unlike GPT-2's regex)."""
    hf = _hf(multi)
    word = "क्षत्रिय"
    backend = hf.backend_tokenizer
    assert backend.normalizer.normalize_str(word) == word
    assert [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(word)] == [word]
    from tokenizers.pre_tokenizers import ByteLevel

    assert len(ByteLevel(add_prefix_space=False).pre_tokenize_str(word)) > 1  # what we avoid


def test_vietnamese_nfd_gives_the_nfc_tokens(multi):
    text = "Người dân Hà Nội thường uống cà phê vào buổi sáng."
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    sp = _sp(multi)
    assert sp.normalize(nfd) == text.replace(" ", "▁")
    assert sp.encode(nfd) == sp.encode(text)
    # Tone marks stay on their letters: no piece holds a lone combining mark.
    assert not any(unicodedata.combining(c) for p in _pieces(multi, nfd) for c in p)
    assert sp.decode(sp.encode(nfd)) == text
    # Marks typed in a non-canonical order (circumflex before dot below) still compose.
    swapped = "e\u0302\u0323"
    assert sp.normalize(swapped) == unicodedata.normalize("NFC", swapped) == "ệ"


def test_emoji_fall_back_to_bytes_and_roundtrip(multi):
    text = "phở 🍜"
    hf = _hf(multi)
    ids = hf(text, add_special_tokens=False).input_ids
    tokens = hf.convert_ids_to_tokens(ids)
    assert tokens[-4:] == ["<0xF0>", "<0x9F>", "<0x8D>", "<0x9C>"]
    assert hf.unk_token_id not in ids
    assert hf.decode(ids) == text


def test_digits_are_split(tokenizer_dir):
    sp = _sp(tokenizer_dir)
    pieces = [sp.id_to_piece(i) for i in sp.encode("2024년 1000000 đồng")]
    digits = [p for p in pieces if any(c.isdigit() for c in p) and not p.startswith("<0x")]
    assert digits == list("2024") + list("1000000")  # digits seen in training, each its own piece
    vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert all(len(p) == 1 for p in vocab if any(c.isdigit() for c in p) and not p.startswith("<"))


# --- chat template, loading without tongues --------------------------------------------------


MESSAGES = [
    {"role": "system", "content": "You answer in Korean."},
    {"role": "user", "content": "한국의 수도는?"},
    {"role": "assistant", "content": "서울입니다."},
]


def test_chat_template_renders_chatml(multi):
    hf = _hf(multi)
    config = json.loads((multi / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == CHAT_TEMPLATE
    rendered = hf.apply_chat_template(MESSAGES, tokenize=False)
    assert rendered == (
        "<|im_start|>system\nYou answer in Korean.<|im_end|>\n"
        "<|im_start|>user\n한국의 수도는?<|im_end|>\n"
        "<|im_start|>assistant\n서울입니다.<|im_end|>\n"
    )
    prompt = hf.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    ids = hf(rendered, add_special_tokens=False).input_ids
    assert ids.count(4) == ids.count(5) == 3 and ids[0] == 4
    assert ids == _sp(multi).encode(rendered)
    assert hf.decode(ids) == rendered


_CHILD = textwrap.dedent(
    """
    import json, sys

    class _NoTongues:
        def find_spec(self, name, path=None, target=None):
            if name == "tongues" or name.startswith("tongues."):
                raise ImportError("tongues must not be needed to load the tokenizer")
            return None

    sys.meta_path.insert(0, _NoTongues())
    from transformers import AutoTokenizer

    out = {}
    for key, directory in (("tokenizer", sys.argv[1]), ("model", sys.argv[2])):
        tok = AutoTokenizer.from_pretrained(directory)
        out[key] = {
            "class": type(tok).__name__,
            "size": len(tok),
            "ids": tok(sys.argv[3], add_special_tokens=False).input_ids,
            "chat": tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                            add_generation_prompt=True),
        }
    out["tongues_loaded"] = any(m == "tongues" or m.startswith("tongues.") for m in sys.modules)
    print(json.dumps(out))
    """
)


def test_loads_with_autotokenizer_alone_in_a_clean_process(multi, tmp_path):
    # A model directory as pretraining exports it: Llama config.json beside the tokenizer files.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"):
        (model_dir / name).write_bytes((multi / name).read_bytes())
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 700}))
    text = PROBES["code_switching"]
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    done = subprocess.run([sys.executable, "-I", str(script), str(multi), str(model_dir), text], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = _sp(multi).encode(text)
    for key in ("tokenizer", "model"):
        assert result[key]["size"] == 700
        assert result[key]["ids"] == expected
        assert result[key]["chat"] == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert result["tongues_loaded"] is False


# --- language mixing -------------------------------------------------------------------------


def test_mixing_probabilities_follow_the_temperature():
    chars = {"ko": 900_000, "vi": 100_000}
    assert mixing_probabilities(chars, 1.0) == pytest.approx({"ko": 0.9, "vi": 0.1})
    flat = mixing_probabilities(chars, 0.3)
    expected_vi = 0.1**0.3 / (0.1**0.3 + 0.9**0.3)
    assert flat["vi"] == pytest.approx(expected_vi) and 0.1 < flat["vi"] < 0.5
    # Without a binding budget nothing is dropped: the large language is kept whole, the small repeated.
    rates = sampling_rates(chars, 0.3, budget_chars=10**9)
    assert rates["ko"] == pytest.approx(1.0) and rates["vi"] > 1.0
    # A budget scales everything down.
    small = sampling_rates(chars, 0.3, budget_chars=100_000)
    assert sum(small[lang] * n for lang, n in chars.items()) == pytest.approx(100_000)


def test_realized_mix_is_recorded_and_follows_the_temperature(multi):
    mix = json.loads((multi / "tongues_tokenizer.json").read_text(encoding="utf-8"))["mix"]
    assert mix["temperature"] == 0.3
    langs = mix["languages"]
    available = {lang: m["available_chars"] for lang, m in langs.items()}
    natural_en = available["en"] / sum(available.values())
    assert langs["en"]["share"] > natural_en  # the smallest language is raised
    for lang, m in langs.items():
        assert m["share"] == pytest.approx(m["probability"], abs=0.03), lang


def test_sample_budget_bounds_the_training_text(corpus, tmp_path):
    sources = resolve_sources([f"ko={corpus['ko']}", f"hi={corpus['hi']}"], [])
    meta = train_tokenizer(sources, tmp_path / "tok", vocab_size=700, sample_chars=12_000, progress=False, log=None)
    sampled = sum(m["sampled_chars"] for m in meta["mix"]["languages"].values())
    available = sum(m["available_chars"] for m in meta["mix"]["languages"].values())
    assert sampled < available / 2 and sampled == pytest.approx(12_000, rel=0.15)


def test_same_seed_gives_the_same_tokenizer_hash(corpus, tmp_path):
    hashes = [
        train_tokenizer(resolve_sources([str(corpus["vi"])], ["vi"]), tmp_path / f"t{i}", vocab_size=380,
                        progress=False, log=None)["tokenizer_sha256"]
        for i in range(2)
    ]
    assert hashes[0] == hashes[1]


# --- bad input -------------------------------------------------------------------------------


def test_empty_corpus_is_a_clear_error(tmp_path):
    empty = _write(tmp_path / "empty.txt", ["", "   ", ""])
    with pytest.raises(DataError, match=r"empty\.txt: no text for vi \(empty corpus\)"):
        train_tokenizer(resolve_sources([str(empty)], ["vi"]), tmp_path / "out", vocab_size=400, progress=False,
                        log=None)
    assert not (tmp_path / "out" / "tokenizer.json").exists()


def test_vocabulary_larger_than_the_text_supports_says_which_size_fits(corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"vocabulary size 50000 is larger than .* use --vocab-size (\d+) or less") as err:
        train_tokenizer(resolve_sources([str(corpus["vi"])], ["vi"]), tmp_path / "out", vocab_size=50_000,
                        model_type="unigram", progress=False, log=None)
    supported = int(str(err.value).split("--vocab-size ")[1].split()[0])
    assert 300 < supported < 50_000
    assert "\n" not in str(err.value)
    # The suggested size works.
    train_tokenizer(resolve_sources([str(corpus["vi"])], ["vi"]), tmp_path / "ok", vocab_size=supported,
                    model_type="unigram", progress=False, log=None)
    assert _sp(tmp_path / "ok").get_piece_size() == supported


def test_a_failed_training_leaves_no_folder_behind(corpus, tmp_path):
    out = tmp_path / "new" / "tok"  # neither folder exists yet
    with pytest.raises(ConfigError):
        train_tokenizer(resolve_sources([str(corpus["vi"])], ["vi"]), out, vocab_size=50_000,
                        model_type="unigram", progress=False, log=None)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):
        train_tokenizer(resolve_sources([str(corpus["vi"])], ["vi"]), kept, vocab_size=50_000,
                        model_type="unigram", progress=False, log=None)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]  # a folder the user made stays, as it was


def test_vocabulary_too_small_for_the_characters(corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"too small .* use --vocab-size \d+ or more"):
        train_tokenizer(resolve_sources([str(corpus["ko"])], ["ko"]), tmp_path / "out", vocab_size=300,
                        progress=False, log=None)


def test_unknown_language_and_unlabelled_text_are_clear_errors(corpus):
    with pytest.raises(ConfigError, match=r"unknown language 'xx' \(known: en, hi, ko, vi\)"):
        resolve_sources([str(corpus["ko"])], ["xx"])
    with pytest.raises(ConfigError, match=r"unknown language 'zz'"):
        resolve_sources([f"zz={corpus['ko']}"], [])
    with pytest.raises(ConfigError, match=r"which language is this text\? write LANG=PATH"):
        resolve_sources([str(corpus["ko"])], ["ko", "hi"])
    with pytest.raises(ConfigError, match=r"--lang hi: no --data for it"):
        resolve_sources([f"ko={corpus['ko']}"], ["ko", "hi"])
    with pytest.raises(DataError, match="does not exist"):
        resolve_sources(["missing.txt"], ["ko"])


def test_cli_errors_are_one_line_exit_2(corpus, tmp_path, capsys):
    from tongues.cli import main

    code = main(["tokenizer", "train", "--data", str(corpus["vi"]), "--lang", "xx", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown language 'xx'") and err.count("\n") == 1
    code = main(["tokenizer", "train", "--data", str(corpus["vi"]), "--lang", "vi", "--vocab-size", "100",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "vocab_size" in err and err.count("\n") == 1


# --- CLI, recipe stage, report -------------------------------------------------------------


def test_cli_train_then_report(corpus, multi, tmp_path, capsys):
    from tongues.cli import main

    out = tmp_path / "vi-tok"
    assert main(["tokenizer", "train", "--data", str(corpus["vi"]), "--lang", "vi", "--vocab-size", "400",
                 "--model-type", "bpe", "--out", str(out), "--quiet"]) == 0
    assert "tokenizer sha256 " + sha256_file(out / "tokenizer.json") in capsys.readouterr().out
    en_vi = tmp_path / "en-vi.tsv"
    _write(en_vi, [f"{en}\t{vi}" for en, vi in zip(SENTENCES["en"], SENTENCES["vi"], strict=False)])
    report_dir = tmp_path / "report"
    assert main(["tokenizer", "report", "--tokenizer", str(out), "--tokenizer", str(multi),
                 "--text", str(corpus["vi"]), f"ko={corpus['ko']}", "--parallel", f"vi={en_vi}",
                 "--out", str(report_dir)]) == 0
    printed = capsys.readouterr().out
    assert "| vi-tok | vi |" in printed and "premium" in printed
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert report["languages"] == ["vi", "ko"]  # the first file's language was recognized from its script
    assert (report_dir / "report.png").read_bytes()[:4] == b"\x89PNG"


def _prepared(root: Path, lang: str, lines: list[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, part in (("train", lines[:-20]), ("validation", lines[-20:])):
        (root / split).mkdir(parents=True)
        table = pa.table({"text": part, "id": [str(i) for i in range(len(part))], "source": ["test"] * len(part)})
        pq.write_table(table, root / split / "shard-00000.parquet")
    (root / "stats.json").write_text(json.dumps({"lang": lang, "normalization": "NFC"}))
    return root


def test_run_stage_trains_on_prepared_corpora_and_returns_the_hash(tmp_path):
    from types import SimpleNamespace

    from tongues.tokenizers.config import TokenizerConfig
    from tongues.tokenizers.train import run_stage

    inputs = {
        "data-ko": _prepared(tmp_path / "data-ko", "ko", _lines("ko", 200, seed=5)),
        "data-vi": _prepared(tmp_path / "data-vi", "vi", _lines("vi", 200, seed=6)),
    }
    out = tmp_path / "tokenizer-demo"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # the runner's; must survive
    config = TokenizerConfig(corpora=["ko", "vi"], vocab_size=800)
    ctx = SimpleNamespace(config=config, inputs=inputs, out_dir=out, seed=3, resuming=False,
                          stage=SimpleNamespace(name="tokenizer-demo"))
    metrics = run_stage(ctx)
    assert metrics["tokenizer_sha256"] == sha256_file(out / "tokenizer.json")
    assert metrics["model_type"] == "bpe" and metrics["languages"] == ["ko", "vi"]
    assert set(metrics["held_out_bytes_per_token"]) == {"ko", "vi"}
    assert all(b > 1.0 for b in metrics["held_out_bytes_per_token"].values())
    assert (out / "manifest.json").exists() and not list(out.glob(".tokenizer.*"))
    json.dumps(metrics)


def test_tokenizer_report_metrics(multi, korean, tmp_path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from tongues.tokenizers.report import tokenizer_report

    # Any Hugging Face tokenizer directory compares: a byte-level BPE (GPT-2 style) here.
    bbpe = ByteLevelBPETokenizer()
    bbpe.train_from_iterator(SENTENCES["ko"] * 5 + SENTENCES["hi"] * 5, vocab_size=400, show_progress=False)
    gpt2_dir = tmp_path / "bbpe"
    PreTrainedTokenizerFast(tokenizer_object=bbpe._tokenizer).save_pretrained(gpt2_dir)

    texts = {"ko": SENTENCES["ko"][:6] + [PROBES["emoji"]], "hi": SENTENCES["hi"][:6]}
    parallel = {"vi": (SENTENCES["vi"][:8], SENTENCES["en"][:8])}
    report = tokenizer_report([multi, korean, gpt2_dir], texts, parallel, names=["multi", "korean", "bbpe"])
    hf = _hf(multi)
    ko_tokens = sum(len(hf(t, add_special_tokens=False).input_ids) for t in texts["ko"])
    row = next(r for r in report.rows if r["tokenizer"] == "multi" and r["lang"] == "ko")
    assert row["tokens"] == ko_tokens
    assert row["bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in texts["ko"]) / ko_tokens, abs=1e-3)
    assert row["tokens_per_word"] == pytest.approx(ko_tokens / sum(len(t.split()) for t in texts["ko"]), abs=1e-3)
    assert row["roundtrip_exact"] == 1.0 and row["unk_rate"] == 0.0
    assert 0 < row["byte_fallback_rate"] < 0.2  # the emoji
    assert 0 < row["vocab_used"] < 1
    assert report.metric("bbpe", "ko", "byte_fallback_rate") == 0.0  # no <0x..> pieces in a byte-level BPE
    vi_tokens = sum(len(hf(t, add_special_tokens=False).input_ids) for t in SENTENCES["vi"][:8])
    en_tokens = sum(len(hf(t, add_special_tokens=False).input_ids) for t in SENTENCES["en"][:8])
    assert report.premium["multi"]["vi"] == pytest.approx(vi_tokens / en_tokens, abs=1e-3)
    # The Korean-only tokenizer falls back to bytes on Hindi; the multilingual one does not.
    assert report.metric("korean", "hi", "byte_fallback_rate") > 0.5 > report.metric("multi", "hi", "byte_fallback_rate")
    paths = report.save(tmp_path / "report")
    assert "| multi | ko |" in paths["markdown"].read_text(encoding="utf-8")
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["premium"]["bbpe"]["vi"] > 0


def test_report_rejects_misaligned_parallel_text(multi):
    from tongues.tokenizers.report import tokenizer_report

    with pytest.raises(DataError, match="aligned"):
        tokenizer_report([multi], {"vi": SENTENCES["vi"]}, {"vi": (SENTENCES["vi"], SENTENCES["en"])})



def test_export_check_catches_a_tokenizer_that_differs(multi):
    from tokenizers import Tokenizer, normalizers

    from tongues.tokenizers.export import verify_parity

    broken = Tokenizer.from_file(str(multi / "tokenizer.json"))
    broken.normalizer = normalizers.Replace(" ", "▁")  # NFC forgotten
    texts = [unicodedata.normalize("NFD", s) for s in SENTENCES["vi"]]
    with pytest.raises(RuntimeError, match=r"differs from SentencePiece on \d+ of 13 texts"):
        verify_parity(multi / "tokenizer.model", broken, texts)
    assert verify_parity(multi / "tokenizer.model", Tokenizer.from_file(str(multi / "tokenizer.json")),
                         texts)["mismatched"] == 0


def test_data_accepts_prepared_corpora_and_text_directories(tmp_path, corpus):
    prepared = _prepared(tmp_path / "prep-hi", "hi", _lines("hi", 40, seed=8))
    textdir = tmp_path / "texts"
    textdir.mkdir()
    _write(textdir / "a.txt", SENTENCES["vi"][:3])
    _write(textdir / "b.txt", SENTENCES["vi"][3:6])
    sources = resolve_sources([str(prepared), f"vi={textdir}"], [])
    assert [(s.lang, Path(s.name).name) for s in sources] == [("hi", "prep-hi"), ("vi", "a.txt"), ("vi", "b.txt")]
    assert sum(1 for _ in sources[0].documents()) == 20  # the train split only
    with pytest.raises(ConfigError, match="is a prepared hi corpus, not ko"):
        resolve_sources([f"ko={prepared}"], [])
