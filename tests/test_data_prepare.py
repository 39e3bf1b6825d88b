"""`data prepare` end to end on crafted corpora: filters, readers, errors, card, split, CLI, runner."""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from tongues.cli import main
from tongues.data.config import CorpusConfig
from tongues.data.dedup import digest
from tongues.data.prepare import prepare, run_stage
from tongues.data.prepared import read_stats, read_texts
from tongues.data.split import split_point
from tongues.errors import ConfigError, DataError
from tongues.manifest import sha256_file


def hangul_doc(rng: random.Random, words: int = 8) -> str:
    return " ".join("".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(2, 4))) for _ in range(words))


def docs(n: int, seed: int = 0, words: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [hangul_doc(rng, words) for _ in range(n)]


def config(*sources: Path | str, **fields: Any) -> CorpusConfig:
    return CorpusConfig(lang=fields.pop("lang", "ko"), sources=[str(s) for s in sources], **fields)


def table(out: Path, split: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / split).glob("shard-*.parquet")))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- every filter on one crafted corpus ---------------------------------------------------------


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A Korean corpus with one of each problem, prepared once for the tests below."""
    tmp = tmp_path_factory.mktemp("crafted")
    good = docs(40)
    long_doc = " ".join(docs(1, seed=7, words=70))  # ~220 characters
    near = long_doc[:-3] + "끝이다"
    lines = [
        *(d.encode() for d in good[:20]),
        "깨진 줄 ".encode() + b"\xff\xfe" + " 입니다".encode(),  # line 21: invalid UTF-8
        ("널" + "\x00" * 3 + good[20]).encode(),  # NUL bytes: cleaned, kept
        ("가" * 3_500_000).encode(),  # a 10 MB line
        good[0].encode(),  # exact duplicate
        ("  " + good[1].replace(" ", "   ") + "\t").encode(),  # duplicate after whitespace cleanup
        long_doc.encode(),
        near.encode(),  # near duplicate
        b"This line is English and has no Hangul at all, only Latin letters.",  # wrong script
        "짧은 글".encode(),  # too short
        f"연락은 hong@example.com 또는 010-1234-5678 으로 {good[21]}".encode(),  # PII
        *(d.encode() for d in good[22:]),
    ]
    src = tmp / "crafted.txt"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp / "out"
    metrics = prepare(config(src, license="CC-BY-4.0"), out, command="tongues data prepare crafted", progress=False)
    return {"src": src, "out": out, "metrics": metrics, "stats": read_stats(out), "good": good, "near": near}


def test_each_filter_removes_what_it_should(crafted: dict[str, Any]) -> None:
    removed = crafted["stats"]["counts"]["removed"]
    assert removed == {
        "normalize": 0, "too_short": 1, "too_long": 1, "script": 1, "language": 0,
        "exact_duplicate": 2, "near_duplicate": 1,
    }
    counts = crafted["stats"]["counts"]
    assert counts["read"] == 47 and counts["kept"] == 41  # 40 good + the long document
    texts = table(crafted["out"], "train")["text"].to_pylist() + table(crafted["out"], "validation")["text"].to_pylist()
    assert len(texts) == 41
    assert not any("\x00" in t for t in texts)
    assert "널" + crafted["good"][20] in texts
    assert crafted["near"] not in texts
    assert f"연락은 <EMAIL> 또는 <PHONE> 으로 {crafted['good'][21]}" in texts
    assert crafted["stats"]["pii"] == {"emails": 1, "phones": 1, "documents": 1, "enabled": True}


def test_invalid_utf8_is_reported_with_file_and_line(crafted: dict[str, Any]) -> None:
    unreadable = crafted["stats"]["unreadable"]
    assert unreadable["count"] == 1
    assert unreadable["listed"] == [{"file": str(crafted["src"]), "line": 21, "reason": "invalid UTF-8 (byte 11)"}]
    card = (crafted["out"] / "data_card.md").read_text(encoding="utf-8")
    assert f"{crafted['src']}:21: invalid UTF-8" in card


def test_an_unreadable_line_is_named_even_when_every_document_is_filtered(tmp_path: Path, capsys) -> None:
    """The only readable document is too short; the error names the unreadable line too (file:line)."""
    from tongues.cli import main

    src = tmp_path / "c.txt"
    src.write_bytes("짧다\n".encode() + b"\xff\xfe not utf-8 at all\n")
    with pytest.raises(DataError, match=r"too_short: 1.*1 unreadable line\(s\).*c\.txt:2: invalid UTF-8"):
        prepare(config(str(src)), tmp_path / "o", progress=False)
    good = "이것은 충분히 긴 한국어 문장입니다. 오늘은 날씨가 맑고 바람이 시원하다. "
    src.write_bytes((good * 2 + "\n").encode() + b"\xff bad\n")
    assert main(["data", "prepare", "--lang", "ko", str(src), "--out", str(tmp_path / "p"), "--no-progress"]) == 0
    assert f"skipped {src}:2: invalid UTF-8 (byte 0)" in capsys.readouterr().out


def test_card_numbers_equal_counts_recomputed_from_parquet(crafted: dict[str, Any]) -> None:
    out, stats = crafted["out"], crafted["stats"]
    card = (out / "data_card.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---")[1])
    for split in ("train", "validation"):
        texts = table(out, split)["text"].to_pylist()
        docs_, chars, nbytes = len(texts), sum(map(len, texts)), sum(len(t.encode()) for t in texts)
        assert stats["splits"][split]["documents"] == docs_
        assert {"name": split, "num_bytes": nbytes, "num_examples": docs_} in meta["dataset_info"]["splits"]
        assert f"| {split} | {docs_:,} | {chars:,} | {nbytes:,} | 1 |" in card
    kept = stats["totals"]["kept"]
    pii_row = next(r for r in stats["steps"] if r["step"] == "pii")
    assert (pii_row["documents_out"], pii_row["characters_out"], pii_row["bytes_out"]) == (
        kept["documents"], kept["characters"], kept["bytes"]
    )
    # Each step starts where the previous one ended, and removes what it says.
    for before, after in zip(stats["steps"], stats["steps"][1:], strict=False):
        assert after["documents_in"] == before["documents_out"]
    for row in stats["steps"]:
        assert row["documents_in"] - row["documents_out"] == row["removed"]
    assert meta["language"] == ["ko"] and meta["license"] == "cc-by-4.0"
    assert meta["task_categories"] == ["text-generation"] and meta["size_categories"] == ["n<1K"]
    assert sha256_file(crafted["src"]) in card
    assert "tongues data prepare crafted" in card
    assert "| too_long | longer than max_chars=200000 characters | 46 | 45 | 1 (2.2%) | 3,501,956 | 1,956 | 10,504,804 |" in card
    # Masking "hong@example.com" and "010-1234-5678" shortens the text by 9 + 6 characters.
    assert (pii_row["characters_in"] - pii_row["characters_out"], pii_row["bytes_in"] - pii_row["bytes_out"]) == (15, 15)
    assert (out / "length_histogram.png").read_bytes().startswith(b"\x89PNG")
    assert crafted["metrics"]["headline"] == "41 docs kept of 47 (87.2%)"


def test_examples_of_removed_documents_are_short_and_masked(crafted: dict[str, Any]) -> None:
    examples = crafted["stats"]["examples"]
    assert examples["script"] == ["This line is English and has no Hangul at all, only Latin letters."]
    assert examples["too_short"] == ["짧은 글"]
    assert len(examples["too_long"][0]) <= 161
    assert examples["near_duplicate"][0].startswith(crafted["near"][:40])


def test_datasets_reads_the_output(crafted: dict[str, Any], tmp_path: Path) -> None:
    import datasets

    out = crafted["out"]
    files = {s: sorted(str(p) for p in (out / s).glob("*.parquet")) for s in ("train", "validation")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].column_names == ["text", "id", "source"]
    assert loaded["train"].num_rows + loaded["validation"].num_rows == 41
    assert list(read_texts(out, "train")) == loaded["train"]["text"]


# --- split stability, tiny corpora, limits ----------------------------------------------------


def test_split_does_not_move_when_the_corpus_grows(tmp_path: Path) -> None:
    first, more = docs(300, seed=1), docs(300, seed=2)
    small = write_lines(tmp_path / "a.txt", first)
    big = write_lines(tmp_path / "b.txt", first[:150] + more + first[150:])

    def splits(out: Path) -> dict[str, str]:
        return {i: s for s in ("train", "validation") for i in table(out, s)["id"].to_pylist()}

    prepare(config(small, validation_share=0.2), tmp_path / "small", progress=False)
    prepare(config(big, validation_share=0.2), tmp_path / "big", progress=False)
    before, after = splits(tmp_path / "small"), splits(tmp_path / "big")
    assert len(before) == 300 and len(after) == 600
    assert all(after[i] == s for i, s in before.items())
    assert 80 < sum(s == "validation" for s in after.values()) < 160


def test_empty_validation_split_is_a_warning_not_a_hand_picked_document(tmp_path: Path) -> None:
    corpus = docs(5, seed=3)
    src = write_lines(tmp_path / "tiny.txt", corpus)
    shares = sorted(split_point(digest(d)) for d in corpus)
    share = (shares[0] + shares[1]) / 2  # exactly one document under the threshold
    one = prepare(config(src, validation_share=share), tmp_path / "one", progress=False)
    assert (one["train_documents"], one["validation_documents"], one["warnings"]) == (4, 1, [])
    none = prepare(config(src, validation_share=shares[0] / 2), tmp_path / "none", progress=False)
    assert none["validation_documents"] == 0 and table(tmp_path / "none", "validation").num_rows == 0
    assert "validation split is empty" in none["warnings"][0]
    assert "**Warning:** the validation split is empty" in (tmp_path / "none" / "data_card.md").read_text(encoding="utf-8")


def test_max_docs_and_paragraph_mode(tmp_path: Path) -> None:
    paragraphs = [d.replace(" ", "\n", 2) for d in docs(30, seed=4)]
    src = tmp_path / "p.txt"
    src.write_text("\n\n\n".join(paragraphs) + "\n", encoding="utf-8")
    metrics = prepare(config(src, doc_mode="paragraph"), tmp_path / "p", progress=False)
    assert metrics["documents_read"] == 30 and metrics["documents_kept"] == 30
    texts = set(read_texts(tmp_path / "p", "train")) | set(read_texts(tmp_path / "p", "validation"))
    assert texts == set(paragraphs)
    limited = prepare(config(src, doc_mode="paragraph", max_docs=7), tmp_path / "m", progress=False)
    assert limited["documents_kept"] == 7


# --- readers ------------------------------------------------------------------------------------


def test_jsonl_parquet_gz_zst_readers_give_the_same_corpus(tmp_path: Path) -> None:
    corpus = docs(25, seed=5)
    write_lines(tmp_path / "plain.txt", corpus)
    (tmp_path / "plain.txt.gz").write_bytes(gzip.compress((tmp_path / "plain.txt").read_bytes()))
    jsonl = "\n".join(json.dumps({"body": d, "n": i}, ensure_ascii=False) for i, d in enumerate(corpus)) + "\n"
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl.encode()))
    pq.write_table(pa.table({"body": corpus}), tmp_path / "c.parquet")
    (tmp_path / "c.parquet.gz").write_bytes(gzip.compress((tmp_path / "c.parquet").read_bytes()))
    results = {}
    for name in ("plain.txt", "plain.txt.gz", "c.jsonl.zst", "c.parquet", "c.parquet.gz"):
        out = tmp_path / f"out-{name}"
        prepare(config(tmp_path / name, text_field="body"), out, progress=False)
        results[name] = sorted(list(read_texts(out, "train")) + list(read_texts(out, "validation")))
    assert results["plain.txt"] == sorted(corpus)
    assert all(r == results["plain.txt"] for r in results.values())


def test_jsonl_bad_lines_are_skipped_and_listed(tmp_path: Path) -> None:
    good = docs(3, seed=6)
    src = tmp_path / "c.jsonl"
    src.write_bytes(
        b"\n".join([
            json.dumps({"text": good[0]}).encode(), b"{not json", json.dumps({"text": None}).encode(),
            json.dumps({"other": 1}).encode(), b'{"text": "\xff"}', json.dumps({"text": good[1]}).encode(),
        ]) + b"\n"
    )
    prepare(config(src), tmp_path / "out", progress=False)
    listed = read_stats(tmp_path / "out")["unreadable"]["listed"]
    assert [(i["line"], i["reason"].split(" (")[0]) for i in listed] == [
        (2, "invalid JSON"), (3, "field 'text' is not a string"), (4, "no field 'text'"), (5, "invalid UTF-8"),
    ]


def test_unreadable_line_list_is_capped(tmp_path: Path) -> None:
    good = docs(5, seed=12)
    src = tmp_path / "mixed.txt"
    src.write_bytes(b"\n".join([d.encode() for d in good] + [b"\xc3\x28 broken"] * 60) + b"\n")
    prepare(config(src), tmp_path / "o", progress=False)
    unreadable = read_stats(tmp_path / "o")["unreadable"]
    assert unreadable["count"] == 60 and len(unreadable["listed"]) == 50 and unreadable["not_listed"] == 10
    assert unreadable["listed"][-1]["line"] == 55
    card = (tmp_path / "o" / "data_card.md").read_text(encoding="utf-8")
    assert "60 line(s) skipped (invalid UTF-8: 60)" in card and "... and 10 more" in card


def test_hub_source_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []
    corpus = docs(12, seed=8)

    def fake_load_dataset(name: str, subset: str | None = None, **kwargs: Any) -> Any:
        calls.append((name, subset, kwargs))
        return ({"content": d, "url": "x"} for d in corpus)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr("tongues.hub.hub_unreachable_reason", lambda: None)  # as if online
    metrics = prepare(config("hf:someone/korean-web:ko-2024@train[:1%]", text_field="content"), tmp_path / "o", progress=False)
    assert calls == [("someone/korean-web", "ko-2024", {"split": "train[:1%]", "streaming": True})]
    assert metrics["documents_kept"] == 12
    card = (tmp_path / "o" / "data_card.md").read_text(encoding="utf-8")
    assert "streamed from the Hugging Face Hub" in card
    assert "- someone/korean-web" in card  # source_datasets in the front matter


# --- bad input ------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    write_lines(tmp_path / "english.txt", ["Only English text here, nothing in Hangul."] * 3)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "wrong.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    (tmp_path / "bad.txt.gz").write_bytes(b"not gzip at all")
    (tmp_path / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (tmp_path / "notes.docx").write_bytes(b"PK")
    expected = {
        "empty.txt": r"empty\.txt: no documents found",
        "english.txt": r"english\.txt: all 3 documents were removed by the filters \(script: 3\)",
        "broken.parquet": r"broken\.parquet: not a readable parquet file",
        "wrong.jsonl": r"wrong\.jsonl:1: no field 'text' \(fields: body\)",
        "bad.txt.gz": r"bad\.txt\.gz: cannot read",
        "latin1.txt": r"no readable documents: 1 line\(s\) skipped \(first: .*latin1\.txt:1: invalid UTF-8",
        "notes.docx": r"notes\.docx: unsupported file type",
    }
    for name, pattern in expected.items():
        with pytest.raises(DataError, match=pattern) as caught:
            prepare(config(tmp_path / name), tmp_path / "o", progress=False)
        assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=r"gone\.txt: no such file or directory"):
        prepare(CorpusConfig.model_construct(**{**config(tmp_path / "empty.txt").model_dump(), "sources": [str(tmp_path / "gone.txt")]}), tmp_path / "o")
    assert not (tmp_path / "o").exists()  # a failed run leaves no empty output directory


def test_failed_run_leaves_the_previous_corpus_in_place(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "c.txt", docs(10, seed=9))
    prepare(config(src), tmp_path / "o", progress=False)
    before = read_stats(tmp_path / "o")
    english = write_lines(tmp_path / "e.txt", ["Only English text here, nothing in Hangul."])
    with pytest.raises(DataError):
        prepare(config(english), tmp_path / "o", progress=False)
    assert read_stats(tmp_path / "o") == before
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "data_card.md", "length_histogram.png", "stats.json", "train", "validation",
    ]


def test_lid_without_lingua_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_lines(tmp_path / "c.txt", docs(3))
    monkeypatch.setitem(sys.modules, "lingua", None)  # import lingua -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tongues\[lid\]'"):
        prepare(config(src, lid=True), tmp_path / "o", progress=False)


def test_lid_filter_uses_lingua_where_scripts_are_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for lingua's API: English is detected by a few common English words."""
    fake = types.ModuleType("lingua")
    fake.Language = types.SimpleNamespace(VIETNAMESE="vi", ENGLISH="en", FRENCH="fr", INDONESIAN="id")  # type: ignore[attr-defined]
    built: list[tuple[str, ...]] = []

    class Detector:
        def detect_language_of(self, text: str) -> str:
            return "en" if re.search(r"\b(the|and|is)\b", text) else "vi"

    class Builder:
        @staticmethod
        def from_languages(*languages: str) -> Any:
            built.append(languages)
            return types.SimpleNamespace(build=Detector)

    fake.LanguageDetectorBuilder = Builder  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lingua", fake)
    vi = ["Hôm nay trời đẹp quá, chúng tôi đi dạo trong công viên.", "Tôi thích đọc sách vào buổi tối cùng gia đình."]
    en = ["The weather is nice and the park is full of people."]
    src = write_lines(tmp_path / "vi.txt", vi + en)
    off = prepare(config(src, lang="vi"), tmp_path / "off", progress=False)
    on = prepare(config(src, lang="vi", lid=True), tmp_path / "on", progress=False)
    assert off["documents_kept"] == 3  # Latin script passes the script filter either way
    assert on["documents_kept"] == 2 and on["removed"]["language"] == 1
    assert built == [("vi", "en", "fr", "id")]


def test_lid_with_real_lingua_separates_hindi_from_marathi(tmp_path: Path) -> None:
    pytest.importorskip("lingua")
    hindi = ["मैं आज बाज़ार जा रहा हूँ और शाम को घर लौटूँगा।", "हमारे गाँव में हर साल एक बड़ा मेला लगता है।"]
    marathi = ["मी आज बाजारात जात आहे आणि संध्याकाळी परत येईन."]
    src = write_lines(tmp_path / "hi.txt", hindi + marathi)
    metrics = prepare(config(src, lang="hi", lid=True), tmp_path / "o", progress=False)
    assert metrics["removed"]["language"] == 1
    kept = set(read_texts(tmp_path / "o", "train")) | set(read_texts(tmp_path / "o", "validation"))
    assert kept == set(hindi)


# --- CLI and runner -------------------------------------------------------------------------------


def test_cli_prepares_and_records_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_lines(tmp_path / "c.txt", docs(20, seed=10) + ["짧다"])
    out = tmp_path / "out"
    code = main(["data", "prepare", "--lang", "ko", str(src), "--out", str(out), "--license", "MIT",
                 "--min-chars", "5", "--no-mask-pii", "--near-dup-threshold", "none", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "20 docs kept of 21 (95.2%)" in printed
    stats = read_stats(out)
    assert stats["config"]["min_chars"] == 5 and stats["config"]["near_dup_threshold"] is None
    assert stats["config"]["mask_pii"] is False and stats["license"] == "MIT"
    assert stats["command"] == (
        f"tongues data prepare --lang ko {src} --out {out} --license MIT --min-chars 5 "
        "--near-dup-threshold none --no-mask-pii"
    )


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.txt"
    assert main(["data", "prepare", "--lang", "ko", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: no such file or directory") and err.count("\n") == 1
    src = write_lines(tmp_path / "c.txt", docs(3))
    assert main(["data", "prepare", "--lang", "xx", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "unknown language 'xx'" in capsys.readouterr().err
    assert main(["data", "prepare", "--lang", "ko", str(src), "--out", str(tmp_path / "o"), "--min-chars", "lots"]) == 2
    assert "data prepare: --min-chars: expected an integer, got 'lots'" in capsys.readouterr().err


def test_cli_help_documents_txt_modes_and_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["data", "prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one document per line" in text and "separated by blank lines" in text
    for flag in ("--doc-mode", "--text-field", "--normalization", "--min-chars", "--max-chars",
                 "--min-script-share", "--lid", "--dedup-exact", "--near-dup-threshold", "--minhash-perms",
                 "--mask-pii", "--validation-share", "--max-docs", "--shard-docs", "--license"):
        assert flag in text


def test_run_stage_prepares_and_skips_finished_work_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_lines(tmp_path / "c.txt", docs(10, seed=11))
    cfg = config(src)
    out = tmp_path / "runs" / "data-ko"
    out.mkdir(parents=True)
    ctx = types.SimpleNamespace(
        config=cfg, out_dir=out, resuming=False, stage=types.SimpleNamespace(name="data-ko", extra={"corpus": "ko"}),
        recipe=types.SimpleNamespace(name="demo"),
    )
    monkeypatch.setattr(sys, "argv", ["tongues", "run", "recipes/demo.yaml"])
    metrics = run_stage(ctx)
    assert metrics["documents_kept"] == 10 and metrics["headline"].startswith("10 docs kept of 10")
    card = (out / "data_card.md").read_text(encoding="utf-8")
    assert "tongues run recipes/demo.yaml" in card and "# ko: Korean text corpus" in card
    monkeypatch.setattr("tongues.data.prepare.prepare", lambda *a, **k: pytest.fail("redone on resume"))
    ctx.resuming = True
    assert run_stage(ctx) == metrics
