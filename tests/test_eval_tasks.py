"""Task files: every shipped one validates, embedded data is well formed, bad files and missing
data get errors that name them, local source formats map onto the prompts lm-eval uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tongues.errors import ConfigError, DataError
from tongues.eval import prompts
from tongues.eval.documents import embedded_eval_dir, load_split, read_rows
from tongues.eval.registry import load_task_file, resolve_tasks, task_files

ALL_TASKS = task_files()
NATIVE = {"ko": ("질문:", "답변:"), "hi": ("प्रश्न:", "उत्तर:"), "vi": ("Câu hỏi:", "Trả lời:")}


@pytest.mark.parametrize("name", sorted(ALL_TASKS))
def test_every_task_file_validates(name):
    spec = load_task_file(ALL_TASKS[name])
    assert spec.task == name and spec.version >= 1 and spec.summary
    assert (Path(spec.path).parent / "README.md").is_file(), f"{spec.family} has no README.md"
    if spec.family != "embedded":
        assert spec.lm_eval_task and spec.data.hub is not None  # public tasks mirror an lm-eval task


def test_the_issue_s_tasks_are_all_there():
    expected = {f"{lang}_{kind}" for lang in ("ko", "hi", "vi") for kind in ("heldout_bpb", "mc", "gen")}
    expected |= {f"kobest_{t}" for t in ("copa", "boolq", "hellaswag", "sentineg", "wic")}
    expected |= {"belebele_kor_Hang", "belebele_hin_Deva", "belebele_vie_Latn", "xnli_hi", "xnli_vi", "xcopa_vi",
                 "xstorycloze_hi", "global_mmlu_ko", "global_mmlu_hi", "global_mmlu_full_vi"}
    assert expected <= set(ALL_TASKS)
    assert [s.task for s in resolve_tasks(["kobest"])] == sorted(n for n in ALL_TASKS if n.startswith("kobest_"))
    assert {s.task for s in resolve_tasks(["ko_*"])} >= {"ko_heldout_bpb", "ko_mc", "ko_gen"}


@pytest.mark.parametrize("lang", ["ko", "hi", "vi"])
def test_embedded_prompts_are_native(lang):
    spec = load_task_file(ALL_TASKS[f"{lang}_mc"])
    question, answer = NATIVE[lang]
    text = prompts.doc_text(spec, {"context": "", "question": "X"})
    assert text == f"{question} X\n{answer}"
    assert "Question" not in spec.doc_to_text and "Answer" not in spec.doc_to_text


@pytest.mark.parametrize("lang", ["ko", "hi", "vi"])
def test_embedded_data_is_well_formed(lang):
    root = embedded_eval_dir() / lang
    if not (root / "mc.jsonl").is_file():
        pytest.skip(f"{root}/mc.jsonl is not written yet")
    mc = load_task_file(ALL_TASKS[f"{lang}_mc"])
    items = load_split(mc, "test")
    assert len(items) >= 100
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        assert set(item) == {"id", "kind", "context", "question", "choices", "answer"}, item["id"]
        assert item["kind"] in ("commonsense", "reading") and item["question"].strip()
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4, item["id"]
        choices = prompts.doc_choices(mc, item, item["id"])
        assert prompts.doc_gold(mc, item, choices, item["id"]) == item["answer"]
    if (root / "gen.jsonl").is_file():
        gen = load_task_file(ALL_TASKS[f"{lang}_gen"])
        for row in load_split(gen, "test"):
            assert set(row) == {"id", "prompt", "reference"} and row["prompt"].strip() and row["reference"].strip()
    if (root / "heldout.txt").is_file():
        docs = load_split(load_task_file(ALL_TASKS[f"{lang}_heldout_bpb"]), "test")
        assert docs and all(d["text"].strip() for d in docs)


# ---- errors that name the file -------------------------------------------------------------------

GOOD = ("task: toy\nlanguage: ko\nversion: 1\nkind: multiple_choice\nsummary: toy\n"
        "data: {files: {test: items.jsonl}}\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: choices\ndoc_to_target: gold\n")


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.replace("kind: multiple_choice", "kind: multiple_choice\n  oops: [\n"), r"toy\.yaml:\d+: not valid YAML"),
    (lambda t: t + "promt: x\n", r"toy\.yaml: promt: unknown key"),
    (lambda t: t.replace("doc_to_choice: choices\n", ""), r"toy\.yaml: .*needs doc_to_choice"),
    (lambda t: t.replace('"{{q}}"', '"{{q"'), r"toy\.yaml: doc_to_text: bad Jinja template"),
    (lambda t: t.replace("language: ko", "language: xx"), r"toy\.yaml: language: .*xx"),
    (lambda t: t.replace("version: 1", "version: new"), r"toy\.yaml: version: "),
    (lambda t: t.replace("task: toy", "task: other"), r"toy\.yaml: task: 'other' must match the file name"),
    (lambda t: "- just\n- a list\n", r"toy\.yaml: a task file is a mapping"),
])
def test_a_malformed_task_file_gets_an_error_naming_it(tmp_path, change, expected):
    path = tmp_path / "toy.yaml"
    path.write_text(change(GOOD), encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_task_file(path)


def test_a_missing_data_file_gets_an_error_naming_it(tmp_path):
    (tmp_path / "toy.yaml").write_text(GOOD, encoding="utf-8")
    spec = load_task_file(tmp_path / "toy.yaml")
    with pytest.raises(DataError, match=r"task toy \(.*toy\.yaml\).*no --data-dir"):
        load_split(spec, "test")
    with pytest.raises(DataError, match=r"task toy .*items\.jsonl does not exist"):
        load_split(spec, "test", data_dir=tmp_path)
    with pytest.raises(DataError, match=r"no data for split 'train'"):
        load_split(spec, "train", data_dir=tmp_path)
    (tmp_path / "items.jsonl").write_text('{"q": "a", "choices": ["x", "y"], "gold": 0}\n{"q": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.jsonl:2: not valid JSON"):
        load_split(spec, "test", data_dir=tmp_path)


def test_offline_hub_task_says_to_use_local_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_task_file(ALL_TASKS["xcopa_vi"])
    with pytest.raises(DataError, match=r"xcopa_vi .*cambridgeltl/xcopa/vi.*--data-dir"):
        load_split(spec, "test", data_dir=tmp_path)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown task 'ko_mcq'.*ko_mc"):
        resolve_tasks(["ko_mcq"])


def test_bad_document_names_the_task_and_item(tmp_path):
    (tmp_path / "toy.yaml").write_text(GOOD, encoding="utf-8")
    spec = load_task_file(tmp_path / "toy.yaml")
    with pytest.raises(DataError, match=r"item 7: doc_to_text: .*'q' is undefined.*its fields: question"):
        prompts.doc_text(spec, {"question": "no q here"}, "item 7")
    with pytest.raises(DataError, match=r"answer index 5 is out of range for 2 choices"):
        prompts.doc_gold(spec, {"gold": 5}, ["x", "y"], "item 8")


# ---- local source formats mapped onto the lm-eval prompts ---------------------------------------

KOBEST_COPA_TSV = ("ID\tsentence\tquestion\t1\t2\tAnswer\n"
                   "1\t전쟁이 시작되었다.\t결과\t병사들이 집으로 돌아왔다.\t병사들이 전투에 파견되었다.\t2\n"
                   "2\t남자는 \"토스트\" 냄새를 맡았다.\t원인\t남자는 토스트기를 샀다.\t빵이 탔다.\t1\n")


def test_kobest_tsv_maps_onto_the_lm_eval_prompt(tmp_path, monkeypatch):
    (tmp_path / "kobest_copa").mkdir()
    (tmp_path / "kobest_copa" / "dev.tsv").write_text(KOBEST_COPA_TSV, encoding="utf-8")
    spec = load_task_file(ALL_TASKS["kobest_copa"])
    monkeypatch.setenv("TONGUES_EVAL_DATA", str(tmp_path))  # the data directory, from the environment
    docs = load_split(spec, "validation")
    assert len(docs) == 2
    assert prompts.doc_text(spec, docs[0]) == "전쟁이 시작되었다.  그래서"  # lm-eval's two spaces, kept
    assert prompts.doc_text(spec, docs[1]) == '남자는 "토스트" 냄새를 맡았다.  왜냐하면'  # quotes are text in TSV
    choices = prompts.doc_choices(spec, docs[0])
    assert choices == ["병사들이 집으로 돌아왔다.", "병사들이 전투에 파견되었다."]
    assert prompts.doc_gold(spec, docs[0], choices) == 1 and prompts.doc_gold(spec, docs[1], choices) == 0
    # The same items already in the Hub's format (JSON lines) read as they are.
    hub_rows = [{k: d[k] for k in ("premise", "question", "alternative_1", "alternative_2", "label")} for d in docs]
    (tmp_path / "kobest_copa" / "dev.tsv").unlink()
    spec.data.files["validation"] = "kobest_copa/dev.jsonl"
    (tmp_path / "kobest_copa" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hub_rows), encoding="utf-8")
    assert load_split(spec, "validation", data_dir=tmp_path) == hub_rows


def test_public_prompts_equal_lm_eval_s_own(tmp_path):
    kobest = pytest.importorskip("lm_eval.tasks.kobest.utils")
    xcopa = pytest.importorskip("lm_eval.tasks.xcopa.utils")
    copa = {"premise": "전쟁이 시작되었다.", "question": "결과", "alternative_1": "가", "alternative_2": "나", "label": 1}
    wic = {"word": "배", "context_1": "배가 아프다.", "context_2": "배를 탔다.", "label": 0}
    senti = {"sentence": "좋지 않아요", "label": 0}
    cases = [("kobest_copa", copa, kobest.copa_doc_to_text(copa), kobest.copa_doc_to_choice(copa)),
             ("kobest_wic", wic, kobest.wic_doc_to_text(wic), ["아니오", "예"]),
             ("kobest_sentineg", senti, kobest.sentineg_doc_to_text(senti), ["부정", "긍정"])]
    for cause in ("cause", "effect"):
        doc = {"premise": "Người đàn ông bật vòi nước.", "choice1": "Nhà đầy nước.", "choice2": "Nước chảy ra.",
               "question": cause, "label": 1}
        cases.append(("xcopa_vi", doc, xcopa.doc_to_text_vi(doc), xcopa.doc_to_choice(doc)))
    for task, doc, text, choices in cases:
        spec = load_task_file(ALL_TASKS[task])
        assert prompts.doc_text(spec, doc) == text, task
        assert prompts.doc_choices(spec, doc) == choices, task


def test_text_and_tsv_readers(tmp_path):
    (tmp_path / "docs.txt").write_text("첫 문서\n둘째 줄\n\n\n다음 문서\n", encoding="utf-8")
    assert read_rows(tmp_path / "docs.txt") == [{"text": "첫 문서\n둘째 줄"}, {"text": "다음 문서"}]
    assert len(read_rows(tmp_path / "docs.txt", documents="line")) == 3
    (tmp_path / "bad.tsv").write_text("a\tb\n1\t2\t3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:2: 3 columns, the header has 2"):
        read_rows(tmp_path / "bad.tsv")
    (tmp_path / "x.dat").write_text("?", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.dat: cannot tell the format"):
        read_rows(tmp_path / "x.dat")
