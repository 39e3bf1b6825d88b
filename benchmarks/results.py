"""benchmarks/RESULTS.md: each benchmark owns one `## name` section and replaces only that."""

from __future__ import annotations

from pathlib import Path

from tongues.manifest import atomic_path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, path: Path = RESULTS) -> None:
    """Replace the section whose `## name` heading starts `section` (append it if absent), atomically."""
    heading = section.lstrip().splitlines()[0].strip()
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        after = ["", *lines[end:]] if end < len(lines) else []
        new = "\n".join([*lines[:start], *section.strip("\n").splitlines(), *after]) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(new, encoding="utf-8")


def report(lines: list[str], write: bool = True) -> None:
    """Print a benchmark's section and, unless `write` is false (--no-write), put it in RESULTS.md."""
    section = "\n".join(lines)
    print(section)
    if write:
        write_section(section)
