"""Throughput of `data prepare` (every filter) against baselines, on the same input in one run.

    .venv/bin/python benchmarks/data_prepare.py [FILE] [--lang ko] [--no-write]

Default input: /work/shared/corpora/ko/nsmc.train.txt (~50 MB of Korean movie reviews, one per
line). Baselines: (1) a plain read (decode every line), (2) read + normalization + exact dedup.
Then the full pipeline (normalize, length / script filters, exact + MinHash LSH near dedup, PII
masking, split, parquet shards, stats, data card). Prints MB/min for each (MB = 10^6 bytes of
input) and the peak resident memory, and replaces the `## data prepare` section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

from results import write_section  # noqa: E402  (benchmarks/results.py)

from tongues.data.config import CorpusConfig
from tongues.data.dedup import ExactDedup, digest
from tongues.data.normalize import normalize_text
from tongues.data.prepare import prepare

DEFAULT_INPUT = "/work/shared/corpora/ko/nsmc.train.txt"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## data prepare"


def plain_read(path: Path) -> int:
    lines = 0
    with open(path, "rb", buffering=1 << 20) as handle:
        for raw in handle:
            raw.decode("utf-8", "replace")
            lines += 1
    return lines


def normalize_and_exact_dedup(path: Path) -> int:
    seen = ExactDedup()
    kept = 0
    with open(path, "rb", buffering=1 << 20) as handle:
        for raw in handle:
            text = normalize_text(raw.decode("utf-8", "replace"))
            if text and not seen.is_duplicate(digest(text)):
                kept += 1
    return kept


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(label: str, func, size_mb: float) -> dict:
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    row = {"label": label, "seconds": seconds, "mb_per_min": size_mb / seconds * 60, "result": result,
           "peak_rss_mb": peak_rss_mb()}
    print(f"{label:<58} {seconds:7.1f} s {row['mb_per_min']:8.1f} MB/min  peak RSS {row['peak_rss_mb']:.0f} MB",
          flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", default=DEFAULT_INPUT, help="text file, one document per line")
    parser.add_argument("--lang", default="ko", help="language of the input")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()
    path = Path(args.input)
    if not path.exists():
        print(f"error: {path} does not exist (pass a text file)", file=sys.stderr)
        return 2
    size_mb = path.stat().st_size / 1e6
    load = os.getloadavg()
    print(f"input {path} ({size_mb:.1f} MB); {os.cpu_count()} cores, load average {load[0]:.1f} at start")
    rows = [
        timed("baseline: plain read (decode every line)", lambda: plain_read(path), size_mb),
        timed("baseline: read + NFC normalization + exact dedup", lambda: normalize_and_exact_dedup(path), size_mb),
    ]
    with tempfile.TemporaryDirectory() as out:
        config = CorpusConfig(lang=args.lang, sources=[str(path)])
        rows.append(timed("tongues data prepare, every filter (1 process)",
                          lambda: prepare(config, out, progress=False), size_mb))
    metrics = rows[-1]["result"]
    print(metrics["headline"], f"duplicate rate {100 * metrics['duplicate_rate']:.2f}%")
    if args.no_write:
        return 0
    command = shlex.join([".venv/bin/python", "benchmarks/data_prepare.py", *sys.argv[1:]])
    table = "\n".join(
        f"| {r['label']} | {r['seconds']:.1f} | **{r['mb_per_min']:.1f}** | {r['peak_rss_mb']:.0f} |" for r in rows
    )
    section = f"""{SECTION}

`{command}` on `{path}` ({size_mb:.1f} MB, {metrics['documents_read']:,} documents), {os.cpu_count()}-core
machine shared with other jobs (load average {load[0]:.1f} at start), Python {platform.python_version()}.
Target: at least 20 MB/min through every filter. Peak RSS is the process maximum so far
(monotone: each row includes the rows above).

| pipeline | seconds | MB/min | peak RSS (MB) |
|---|---:|---:|---:|
{table}

Full pipeline: {metrics['headline']}; duplicate rate {100 * metrics['duplicate_rate']:.2f}%; removed
{', '.join(f'{k} {v:,}' for k, v in metrics['removed'].items() if v)}.
"""
    write_section(section, RESULTS)
    print(f"updated {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
