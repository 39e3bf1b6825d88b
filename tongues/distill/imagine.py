"""Text to image with a tongues prompt encoder: a diffusers pipeline is given `prompt_embeds` and
`negative_prompt_embeds` (and SDXL's pooled ones) from our encoder; the pipeline's own text encoder
never runs, so no English tokenizer or hub download is involved.

    tongues.imagine("지붕 위의 고양이", encoder="runs/demo/encoder-ko/encoder",
                    pipeline="runs/demo/encoder-ko/pipeline", out="cat.png", steps=2, seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tongues.errors import ConfigError, DataError


def load_pipeline(spec: str | Path) -> Any:
    """A diffusers text-to-image pipeline from a directory or a hub name (safetensors only)."""
    from diffusers import AutoPipelineForText2Image

    path = Path(spec)
    if not path.exists():
        from tongues.hub import require_hub

        require_hub(f"pipeline {str(spec)!r} (not a local directory)",
                    "pass a saved diffusers pipeline directory (model_index.json, unet/, vae/, scheduler/)")
    elif not (path / "model_index.json").is_file():
        raise DataError(f"--pipeline {path}: not a diffusers pipeline directory (no model_index.json)")
    try:
        return AutoPipelineForText2Image.from_pretrained(str(spec), use_safetensors=True, safety_checker=None,
                                                         requires_safety_checker=False)
    except (OSError, ValueError) as err:
        raise DataError(f"--pipeline {spec}: cannot load it ({str(err).splitlines()[0][:200]})") from None


def expand_prompt(prompt: str, assistant: str | Path, max_new_tokens: int = 64) -> str:
    """Let a chat model (the instruction stages') turn a short request into a picture description."""
    from tongues.infer.generate import load

    answer = load(assistant).chat(prompt, max_new_tokens=max_new_tokens, temperature=0).strip()
    return answer or prompt


def imagine(prompt: str, *, encoder: Any, pipeline: Any, out: str | Path | None = None, steps: int = 25,
            guidance: float = 7.5, seed: int = 0, negative: str = "", height: int | None = None,
            width: int | None = None, assistant: str | Path | None = None) -> Any:
    """Render `prompt` (any language the encoder knows); returns the PIL image (saved to `out`)."""
    import torch

    from tongues.distill.encoder import TextEncoder, load_encoder

    enc = encoder if isinstance(encoder, TextEncoder) else load_encoder(encoder)
    pipe = load_pipeline(pipeline) if isinstance(pipeline, (str, Path)) else pipeline
    if assistant is not None:
        prompt = expand_prompt(prompt, assistant)
    expected = pipe.unet.config.cross_attention_dim
    if enc.config.dim is None:
        raise ConfigError(f"{enc.path}: a pooled-only encoder (teacher {enc.config.teacher}) cannot condition a "
                          "diffusion pipeline; distil one against the pipeline's CLIP text encoder")
    if enc.config.dim != expected:
        raise ConfigError(f"the encoder gives {enc.config.dim}-dimensional prompt_embeds but the pipeline's UNet "
                          f"cross-attends to {expected}: distil the encoder against this pipeline's text encoder")
    pos, neg = enc.encode([prompt]), enc.encode([negative])
    kwargs: dict[str, Any] = {"prompt_embeds": pos["prompt_embeds"], "negative_prompt_embeds": neg["prompt_embeds"]}
    if enc.config.kind == "sdxl":
        kwargs.update(pooled_prompt_embeds=pos["pooled_prompt_embeds"],
                      negative_pooled_prompt_embeds=neg["pooled_prompt_embeds"])
    generator = torch.Generator().manual_seed(seed)
    image = pipe(num_inference_steps=steps, guidance_scale=guidance, generator=generator, height=height, width=width,
                 **kwargs).images[0]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        image.save(out)
    return image


__all__ = ["expand_prompt", "imagine", "load_pipeline"]
