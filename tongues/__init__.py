"""tongues: build small language models for your own language.

Public API (kept small; heavy imports happen on first use):

- ``tongues.load(path)`` -> a model you can ``generate()`` and ``chat()`` with
- ``tongues.plan(...)`` -> a Chinchilla-style plan for a compute budget
- ``tongues.load_recipe(path)`` / ``tongues.run_recipe(recipe)``
- ``tongues.load_encoder(path)`` -> a prompt encoder (``encode`` -> diffusers prompt_embeds, ``embed``)
- ``tongues.imagine(prompt, encoder=..., pipeline=..., out=...)`` -> an image from a national-language prompt
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load": "tongues.infer.generate:load",
    "plan": "tongues.plan",  # the package is callable: tongues.plan(...) plans
    "load_recipe": "tongues.config:load_recipe",
    "run_recipe": "tongues.run:run_recipe",
    "prepare": "tongues.data.prepare:prepare",
    "load_encoder": "tongues.distill.encoder:load_encoder",
    "imagine": "tongues.distill.imagine:imagine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, _, attr = _LAZY[name].partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attr) if attr else loaded
    raise AttributeError(f"module 'tongues' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
