"""Prompt encoders for the image pipeline, offline: a tiny random CLIP teacher and a tiny Stable
Diffusion pipeline built in-process (prompt_embeds passed, so no CLIP tokenizer download)."""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import make_tiny_model

from tongues.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAIRS = [("a red cat on a roof", "지붕 위의 빨간 고양이"), ("a blue boat at sea", "바다 위의 파란 배"),
         ("a tall tree in snow", "눈 속의 키 큰 나무"), ("two dogs in a park", "공원의 개 두 마리"),
         ("a bowl of noodles", "국수 한 그릇"), ("the moon over a village", "마을 위의 달"),
         ("an old man reading", "책을 읽는 할아버지"), ("a city at night", "밤의 도시")] * 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tongues.distill.encoder import EncoderJob, train_encoder
    from tongues.distill.tiny import tiny_clip_teacher, tiny_pipeline

    root = tmp_path_factory.mktemp("encoder")
    tsv = root / "en-ko.tsv"
    tsv.write_text("".join(f"{en} {i}\t{ko} {i}\n" for i, (en, ko) in enumerate(PAIRS)), encoding="utf-8")
    teacher = tiny_clip_teacher(root / "teacher", [en for en, _ in PAIRS])
    pipeline = tiny_pipeline(root / "pipeline", teacher)
    student = make_tiny_model(root / "student", context=128)
    job = EncoderJob(teacher=str(teacher), student=str(student), parallel=[str(tsv)], out=root / "run", steps=40,
                     batch_size=8, lr=3e-3, checkpoint_every=20)
    metrics = train_encoder(job, log=lambda _m: None)
    return root, tsv, teacher, pipeline, student, metrics


def test_distillation_lowers_the_loss_and_reports_retrieval(setup):
    root, *_, metrics = setup
    history = [json.loads(line) for line in (root / "run" / "train.jsonl").read_text().splitlines()]
    first, last = sum(r["mse"] for r in history[:5]) / 5, sum(r["mse"] for r in history[-5:]) / 5
    assert last < 0.7 * first  # the conditioning moves toward the teacher's
    assert metrics["conditioning"] == [77, 32] and metrics["pooled_dim"] == 32
    assert {"r@1", "r@10", "teacher_on_xx_r@1", "conditioning_cosine", "prompts_per_s"} <= set(metrics)


def test_encode_gives_prompt_embeds_and_embed_normalized_vectors(setup):
    import tongues

    root, *_ = setup
    enc = tongues.load_encoder(root / "run" / "encoder")
    out = enc.encode(["지붕 위의 고양이", "밤의 도시"])
    assert out["prompt_embeds"].shape == (2, 77, 32) and out["pooled_prompt_embeds"].shape == (2, 32)
    vectors = enc.embed(["지붕 위의 고양이", "밤의 도시", ""])
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(vectors[0], vectors[1])


def test_the_pipeline_renders_from_our_embeddings(setup, tmp_path):
    import tongues

    root, _, _, pipeline, *_ = setup
    image = tongues.imagine("지붕 위의 고양이", encoder=root / "run" / "encoder", pipeline=pipeline,
                            out=tmp_path / "cat.png", steps=2, height=32, width=32, seed=1)
    assert image.size == (32, 32) and (tmp_path / "cat.png").stat().st_size > 0
    again = tongues.imagine("지붕 위의 고양이", encoder=root / "run" / "encoder", pipeline=pipeline, steps=2,
                            height=32, width=32, seed=1)
    assert list(again.getdata()) == list(image.getdata())  # the seed fixes the image


def test_a_width_mismatch_is_a_one_line_error(setup, tmp_path):
    from tongues.distill.encoder import load_encoder
    from tongues.distill.imagine import imagine, load_pipeline

    root, _, _, pipeline, *_ = setup
    pipe = load_pipeline(pipeline)
    pipe.unet.register_to_config(cross_attention_dim=48)
    with pytest.raises(ConfigError, match=r"gives 32-dimensional prompt_embeds but the pipeline's UNet cross-attends to 48"):
        imagine("고양이", encoder=load_encoder(root / "run" / "encoder"), pipeline=pipe, steps=1)


def test_bad_parallel_files_name_the_line(tmp_path):
    from tongues.distill.encoder import read_parallel

    bad = tmp_path / "p.tsv"
    bad.write_text("a cat\t고양이\njust one field\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv:2: expected 'English<TAB>translation'"):
        read_parallel([bad])
    with pytest.raises(DataError, match="no such file"):
        read_parallel([tmp_path / "none.tsv"])


def test_training_resumes_from_its_checkpoint(setup, tmp_path):
    from tongues.distill.encoder import EncoderJob, train_encoder

    root, tsv, teacher, _, student, _ = setup
    job = EncoderJob(teacher=str(teacher), student=str(student), parallel=[str(tsv)], out=tmp_path / "r", steps=6,
                     batch_size=8, checkpoint_every=3)
    train_encoder(job, log=lambda _m: None)
    said = []
    job.steps = 9
    metrics = train_encoder(job, log=said.append)
    assert any("resuming at step 6" in m for m in said) and metrics["steps"] == 9


def test_cli_eval_and_imagine(setup, tmp_path, capsys):
    from tongues.cli import main

    root, tsv, teacher, pipeline, *_ = setup
    assert main(["encoder", "eval", "--encoder", str(root / "run" / "encoder"), "--parallel", str(tsv), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert 0 <= figures["r@1"] <= figures["r@10"] <= 1
    assert main(["imagine", "밤의 도시", "--encoder", str(root / "run" / "encoder"), "--pipeline", str(pipeline),
                 "--out", str(tmp_path / "city.png"), "--steps", "1", "--size", "32"]) == 0
    assert (tmp_path / "city.png").exists()
    assert main(["imagine", "x", "--encoder", str(tmp_path), "--pipeline", str(pipeline), "--out", "x.png"]) == 2
    assert "not a tongues text encoder" in capsys.readouterr().err
