"""Fail fast when the Hugging Face Hub is needed but unreachable.

Hub libraries retry for tens of seconds before they give up offline. Every tongues loader that
takes a hub name (a model "org/name", a dataset "hf:NAME", a hub tokenizer, a task's hub data)
first calls `require_hub`, which answers in at most a few seconds: HF_HUB_OFFLINE set, or no TCP
connection to the endpoint, is one line saying so and how to pass a local path instead.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from tongues.errors import DataError, TonguesError

CONNECT_TIMEOUT_S = 3.0
_checked: dict[str, str | None] = {}  # endpoint host -> None (reachable) or the reason it is not


class HubUnreachable(DataError):
    """A hub name was given, and the Hugging Face Hub cannot be reached."""


def _endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_unreachable_reason() -> str | None:
    """None when the hub answers a TCP connection (checked once per process), else why not."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host, port = _endpoint()
    if host not in _checked:
        start = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                _checked[host] = None
        except OSError as err:
            waited = time.monotonic() - start
            _checked[host] = f"no connection to {host}:{port} ({type(err).__name__} after {waited:.1f}s)"
    return _checked[host]


def require_hub(what: str, local_hint: str) -> None:
    """Raise HubUnreachable for `what` (e.g. "model 'org/name'") when the hub cannot be reached;
    `local_hint` says how to pass a local copy instead."""
    reason = hub_unreachable_reason()
    if reason is not None:
        raise HubUnreachable(f"{what} needs the Hugging Face Hub, which is unreachable: {reason}. "
                             f"Offline, {local_hint}")


def resolve_model_dir(path: str | Path) -> Path:
    """A local model directory, or a Hub name "org/name" downloaded (safetensors, configs and
    tokenizer files only: no pickle weights, no code). TonguesError for anything else."""
    directory = Path(path).expanduser()
    if directory.is_dir():
        return directory
    name = str(path)
    if directory.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise TonguesError(f"model directory {name} does not exist (expected a Hugging Face model directory)")
    require_hub(f"model {name!r} (not a local directory)",
                "pass the path of a downloaded model directory (config.json, *.safetensors, tokenizer files)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as err:  # unknown repo, gated: all a user error here
        raise TonguesError(f"{name} is not a local directory and could not be fetched from the Hub: {err}") from err


__all__ = ["HubUnreachable", "hub_unreachable_reason", "require_hub", "resolve_model_dir"]
