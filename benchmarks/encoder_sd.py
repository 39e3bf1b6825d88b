"""Benchmark (GPU and hub access): prompt encoders distilled against Stable Diffusion 1.5's CLIP text encoder,
judged by the CLIP-score of the images they make.

Per language (ko, hi, vi): `tongues encoder distill`'s training (tongues.distill.encoder.train_encoder) aligns a
tongues model's trunk (`--student`, e.g. the instruction benchmark's multilingual base) to the pipeline's frozen
CLIPTextModel on the public training pairs of /work/shared/corpora/parallel plus the embedded captions. Then, for
`--images` FLORES-200 dev pairs never trained on, three images per pair with the same seed:
- ours: the xx sentence through our encoder, as `prompt_embeds` (`tongues.imagine`);
- English: the English sentence through the pipeline's own text encoder (the ceiling);
- raw xx: the xx sentence through the pipeline's own text encoder (what typing Korean into SD does today);
each scored by CLIP-score against the *English* sentence, 100 * max(cos(image, text), 0) under `--clip`
(openai/clip-vit-large-patch14 by default). Goal: ours well above raw xx, close to English.

Measured only on a CUDA machine with hub access (SD 1.5 and CLIP-L download); `--tiny` runs the same path end to
end on a CPU, offline, with the tiny random teacher / pipeline / CLIP scorer that the tests use (figures
meaningless; RESULTS.md records that the path ran and that nothing is measured):

    .venv/bin/python benchmarks/encoder_sd.py --tiny --student runs/bench/pretrain-multi/model
    python benchmarks/encoder_sd.py --student runs/bench/pretrain-multi/model --steps 3000 --images 200
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks.encoder import PARALLEL, TRAIN  # noqa: E402
from benchmarks.results import report  # noqa: E402


class ClipScorer:
    """CLIP-score of images against texts: 100 * max(cos, 0) of CLIPModel's image and text embeddings."""

    def __init__(self, model, processor, tokenizer) -> None:
        self.model, self.processor, self.tokenizer = model.eval(), processor, tokenizer

    def __call__(self, images: list, texts: list[str]) -> list[float]:
        import torch

        with torch.no_grad():
            pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.model.device)
            ids = self.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.model.device)
            img = self.model.get_image_features(pixel_values=pixels)
            txt = self.model.get_text_features(**ids)
            img = getattr(img, "pooler_output", img)
            txt = getattr(txt, "pooler_output", txt)
            cos = torch.nn.functional.cosine_similarity(img.float(), txt.float(), dim=-1)
        return (100 * cos.clamp(min=0)).tolist()


def tiny_stack(root: Path, english: list[str]):
    """(pipeline dir, CLIP scorer) built offline: the tests' tiny random teacher and pipeline, a tiny CLIPModel."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    from tongues.distill.tiny import tiny_clip_teacher, tiny_pipeline

    teacher = tiny_clip_teacher(root / "teacher", english)
    pipeline = tiny_pipeline(root / "pipeline", teacher)
    tok = AutoTokenizer.from_pretrained(teacher)
    config = CLIPConfig(text_config={"vocab_size": tok.vocab_size + 8, "hidden_size": 32, "intermediate_size": 64,
                                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77,
                                     "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
                        projection_dim=32)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return pipeline, ClipScorer(CLIPModel(config), processor, tok), 32


def real_stack(pipeline: str, clip: str):
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from tongues.hub import resolve_model_dir

    device = "cuda" if torch.cuda.is_available() else "cpu"
    clip_dir = resolve_model_dir(clip)
    model = CLIPModel.from_pretrained(clip_dir, use_safetensors=True).to(device)
    return (str(resolve_model_dir(pipeline)), ClipScorer(model, CLIPImageProcessor.from_pretrained(clip_dir),
                                                         AutoTokenizer.from_pretrained(clip_dir)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="the trunk: a tongues model directory (multilingual or one language)")
    parser.add_argument("--pipeline", default="stable-diffusion-v1-5/stable-diffusion-v1-5")
    parser.add_argument("--clip", default="openai/clip-vit-large-patch14", help="the CLIP-score model")
    parser.add_argument("--langs", default="ko,hi,vi")
    parser.add_argument("--steps", type=int, default=3000, help="encoder training steps")
    parser.add_argument("--images", type=int, default=200, help="FLORES dev pairs rendered per language")
    parser.add_argument("--inference-steps", type=int, default=25)
    parser.add_argument("--tiny", action="store_true", help="CPU dry run, offline, tiny random models (figures not reported)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import torch

    from tongues.distill.encoder import EncoderJob, load_encoder, read_parallel, train_encoder
    from tongues.distill.imagine import imagine, load_pipeline
    from tongues.resources import RESOURCES

    langs = args.langs.split(",")
    files = {lang: [str(RESOURCES / "parallel" / f"en-{lang}.tsv"), *(str(PARALLEL / f) for f in TRAIN[lang])]
             for lang in langs}
    work = Path(tempfile.mkdtemp(prefix="encoder-sd-"))
    if args.tiny:
        english = [en for lang in langs for en, _ in read_parallel(files[lang][:1])]
        pipeline_dir, scorer, size = tiny_stack(work, english)
        args.images, args.inference_steps, args.steps = min(args.images, 4), 2, min(args.steps, 20)
    else:
        pipeline_dir, scorer, size = real_stack(args.pipeline, args.clip)
    pipe = load_pipeline(pipeline_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    scorer_name = "a tiny random CLIP (--tiny)" if args.tiny else args.clip
    rows = []
    for lang in langs:
        start = time.perf_counter()
        trained = train_encoder(EncoderJob(teacher=pipeline_dir, student=args.student, parallel=files[lang],
                                           out=work / f"enc-{lang}", steps=args.steps),
                                log=lambda m: print(f"  {m}", flush=True))
        encoder = load_encoder(work / f"enc-{lang}" / "encoder")
        pairs = read_parallel([PARALLEL / f"flores200.dev.en-{lang}.tsv"])[: args.images]
        scores: dict[str, list[float]] = {"ours": [], "english": [], "raw": []}
        for i, (en, xx) in enumerate(pairs):
            common = dict(num_inference_steps=args.inference_steps, height=size, width=size)
            ours = imagine(xx, encoder=encoder, pipeline=pipe, steps=args.inference_steps, seed=i, height=size, width=size)
            eng = pipe(prompt=en, generator=torch.Generator().manual_seed(i), **common).images[0]
            raw = pipe(prompt=xx, generator=torch.Generator().manual_seed(i), **common).images[0]
            for name, image in (("ours", ours), ("english", eng), ("raw", raw)):
                scores[name] += scorer([image], [en])
        mean = {k: sum(v) / max(1, len(v)) for k, v in scores.items()}
        rows.append((lang, len(pairs), trained, mean, time.perf_counter() - start))
        print(lang, mean, flush=True)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    if args.tiny:  # the path proven, nothing measured: the figures of random models say nothing
        lines = ["## encoder_sd", "", f"Not measured ({date.today().isoformat()}): the CLIP-score of images from "
                 "prompt encoders distilled against SD 1.5's CLIP text encoder needs a CUDA machine and hub access "
                 "(SD 1.5, CLIP-L); none was lent. Goal (ours well above SD on raw xx, close to SD on English): "
                 "not measured.", "",
                 f"CPU dry run, offline: `.venv/bin/python benchmarks/encoder_sd.py --tiny --student {args.student} "
                 f"--langs {args.langs}` trained {args.steps} steps per language against a tiny random CLIP teacher, "
                 f"rendered {args.images} FLORES-200 dev prompts x 3 (ours, English, raw xx) through a tiny random "
                 f"Stable Diffusion pipeline and scored them with a tiny random CLIP in "
                 + ", ".join(f"{lang} {seconds:.0f} s" for lang, _, _, _, seconds in rows)
                 + " — every step of the GPU run, end to end; its scores are noise and are not reported."]
    else:
        lines = ["## encoder_sd", "", f"Prompt encoders against SD 1.5's CLIP text encoder ({date.today().isoformat()}; "
                 f"`python benchmarks/encoder_sd.py --student {args.student} --steps {args.steps} --images {args.images}`, "
                 f"{device_name}). CLIP-score ({scorer_name}) of each image against the English sentence, FLORES-200 "
                 "dev pairs never trained on.", "",
                 "| lang | images | held-out R@1 (training sources) | ours (xx via tongues) | SD on English | SD on raw xx | s |",
                 "|---|---|---|---|---|---|---|"]
        for lang, n, trained, mean, seconds in rows:
            lines.append(f"| {lang} | {n} | {trained.get('r@1', float('nan')):.3f} | {mean['ours']:.1f} | "
                         f"{mean['english']:.1f} | {mean['raw']:.1f} | {seconds:.0f} |")
    report(lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
