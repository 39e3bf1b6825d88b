"""Training metrics: JSONL files (every step) and TensorBoard (log steps), from the main process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """JSONL files (every step) and TensorBoard (log steps), written by the main process only."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, resume_step: int) -> None:
        self.enabled, self.dir, self.tb = enabled, out_dir, None
        if not enabled:
            return
        for name in ("train.jsonl", "eval.jsonl"):  # drop lines written after the checkpoint we resume from
            path = out_dir / name
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
                path.write_text("".join(ln + "\n" for ln in keep))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, name: str, record: dict[str, Any], scalars: tuple[str, ...] = ()) -> None:
        if not self.enabled:
            return
        with open(self.dir / f"{name}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key in scalars:
                if record.get(key) is not None:
                    self.tb.add_scalar(f"{name}/{key}", record[key], record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def steady_throughput(path: Path, fpt: float, peak: float | None, world: int) -> dict[str, Any]:
    """Median tokens/s (and MFU) over the run's log intervals, the first one (warm-up) left out."""
    rates = [r["tokens_per_s"] for r in map(json.loads, path.read_text().splitlines()) if r.get("tokens_per_s")]
    rates = sorted(rates[1:] or rates)
    if not rates:
        return {}
    tps = rates[len(rates) // 2]
    return {"tokens_per_s": tps, "mfu": tps * fpt / (peak * world) if peak else None}
