"""Inference: `load` / `generate` / `chat`, streaming text, the OpenAI-compatible server."""
