"""Progress bars that suit where they are shown.

On a terminal: tqdm, as usual. When stderr is not a terminal (`make demo > log`, a Slurm job, CI),
a carriage-return bar would write thousands of updates into the file; there the same bar prints
one plain line at most every `TONGUES_PROGRESS_INTERVAL` seconds (default 30), and at the end.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

DEFAULT_LOG_INTERVAL_S = 30.0


def interactive(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("TONGUES_PROGRESS_INTERVAL", DEFAULT_LOG_INTERVAL_S)))
    except ValueError:
        return DEFAULT_LOG_INTERVAL_S


class _Lines:
    """A file for tqdm that turns each redraw (\\r + status) into one line and drops blank clears."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """`tqdm(iterable, **kwargs)`, log-friendly when stderr is not a terminal (see the module)."""
    from tqdm.auto import tqdm

    stream = kwargs.pop("file", None) or sys.stderr
    if not interactive(stream) and not kwargs.get("disable"):
        interval = log_interval()
        kwargs.update(file=_Lines(stream), mininterval=interval, maxinterval=max(interval, 1.0),
                      dynamic_ncols=False, ncols=kwargs.get("ncols") or 120, ascii=True)
    else:
        kwargs["file"] = stream
    return tqdm(iterable, **kwargs)


def quiet_library_bars() -> None:
    """Off-terminal, turn off the Hugging Face libraries' own bars (weights loading, downloads)."""
    if not interactive():
        import warnings

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        # the libraries then warn whenever code toggles their bars: the variable already decided
        warnings.filterwarnings("ignore", message=".*HF_HUB_DISABLE_PROGRESS_BARS.*")


__all__ = ["interactive", "progress_bar", "quiet_library_bars"]
