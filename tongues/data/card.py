"""The data card of a prepared corpus: `data_card.md` (Hugging Face dataset card, YAML front
matter) and `length_histogram.png` beside it, written from the statistics `prepare` gathers.

Every number in the card comes from stats.json, so the card, the stats and the shards agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tongues.manifest import atomic_path

CARD = "data_card.md"
HISTOGRAM = "length_histogram.png"

_SIZE_CATEGORIES = [
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"),
]


def size_category(n: int) -> str:
    """Hugging Face `size_categories` value for a dataset of `n` examples."""
    for limit, label in _SIZE_CATEGORIES:
        if n < limit:
            return label
    return "n>1T"


def _license_id(license: str) -> str:
    # The Hub expects lowercase license identifiers (cc-by-4.0, apache-2.0, other, unknown).
    return license.strip().lower().replace(" ", "-") or "unknown"


def front_matter(stats: dict[str, Any], name: str) -> dict[str, Any]:
    """The card's YAML metadata, in the Hub's dataset-card schema."""
    splits = stats["splits"]
    hub_sources = [s["path"] for s in stats["sources"] if s["source"].startswith("hf:")]
    data_files = [
        {"split": split, "path": f"{split}/shard-*.parquet"} for split in ("train", "validation")
        if splits[split]["documents"]
    ]
    return {
        "language": [stats["lang"]],
        "license": _license_id(stats["license"]),
        "pretty_name": f"{name} ({stats['language']}, prepared by tongues)",
        "size_categories": [size_category(stats["counts"]["kept"])],
        "task_categories": ["text-generation"],
        "task_ids": ["language-modeling"],
        "multilinguality": ["monolingual"],
        "source_datasets": hub_sources or ["original"],
        "configs": [{"config_name": "default", "data_files": data_files}],
        "dataset_info": {
            "features": [{"name": f, "dtype": "string"} for f in ("text", "id", "source")],
            "splits": [
                {"name": split, "num_bytes": splits[split]["bytes"], "num_examples": splits[split]["documents"]}
                for split in ("train", "validation")
            ],
        },
    }


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render_card(stats: dict[str, Any], name: str) -> str:
    """The Markdown text of the data card."""
    meta = yaml.safe_dump(front_matter(stats, name), sort_keys=False, allow_unicode=True)
    totals = stats["totals"]
    cfg = stats["config"]
    lines = [f"---\n{meta}---", "", f"# {name}: {stats['language']} text corpus", ""]
    lines += [
        f"Prepared by `tongues data prepare`: {stats['headline']}. Language: {stats['language']} "
        f"(`{stats['lang']}`, {stats['script']} script). License: **{stats['license']}** (as given by the "
        f"person who ran the command; check it against each source's own terms).",
        "",
        "Produced by:",
        "",
        "```",
        stats.get("command") or "(command not recorded)",
        "```",
        "",
        "## Sources",
        "",
        "| source | file | kind | bytes | sha256 | documents read |",
        "|---|---|---|---:|---|---:|",
    ]
    for src in stats["sources"]:
        sha = f"`{src['sha256']}`" if src["sha256"] else "streamed from the Hugging Face Hub (no file hash)"
        size = f"{src['bytes']:,}" if src["bytes"] is not None else "-"
        lines.append(
            f"| {_cell(src['source'])} | {_cell(src['path'])} | {src['kind']} | {size} | {sha} | {src['documents']:,} |"
        )
    lines += [
        "",
        "## Contents",
        "",
        "| split | documents | characters | bytes (UTF-8) | shards |",
        "|---|---:|---:|---:|---:|",
    ]
    for split, info in stats["splits"].items():
        lines.append(
            f"| {split} | {info['documents']:,} | {info['characters']:,} | {info['bytes']:,} | {len(info['shards'])} |"
        )
    lines.append(
        f"| **total** | {totals['kept']['documents']:,} | {totals['kept']['characters']:,} | {totals['kept']['bytes']:,} | |"
    )
    rule = stats["split_rule"]
    lines += [
        "",
        "Columns: `text` (the cleaned document), `id` (blake2b-128 of its normalized text, before PII "
        "masking), `source` (the source it came from). Load with "
        "`datasets.load_dataset(\"parquet\", data_files={\"train\": \"train/*.parquet\", "
        "\"validation\": \"validation/*.parquet\"})`.",
        "",
        f"Split: a document goes to validation when the first 8 bytes of its id, as a fraction of 2^64, "
        f"are below validation_share = {rule['validation_share']}; a document's split never changes "
        f"when the corpus grows.",
    ]
    for warning in stats.get("warnings", []):
        lines += ["", f"**Warning:** {warning}."]
    lines += _pipeline_section(stats, cfg)
    lines += _dedup_pii_section(stats)
    lines += _script_section(stats)
    lines += _length_section(stats)
    lines += _examples_section(stats)
    lines += _unreadable_section(stats)
    lines += [
        "",
        "## Configuration",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in stats["versions"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def _pipeline_section(stats: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Processing",
        "",
        f"Unicode normalization: **{stats['normalization']}**; control characters (NUL, escape, C1, BOM, "
        "zero-width space) removed, tabs and line breaks kept as whitespace, runs of spaces collapsed. "
        "Each row counts what reached a step and what left it.",
        "",
        "| step | reason for removal | docs in | docs out | removed | chars in | chars out | bytes in | bytes out |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in stats["steps"]:
        if not row["enabled"]:
            lines.append(f"| {row['step']} | off | | | | | | | |")
            continue
        removed = f"{row['removed']:,} ({_pct(row['removed'], row['documents_in'])})"
        lines.append(
            f"| {row['step']} | {_cell(row['reason'])} | {row['documents_in']:,} | {row['documents_out']:,} | "
            f"{removed} | {row['characters_in']:,} | {row['characters_out']:,} | {row['bytes_in']:,} | "
            f"{row['bytes_out']:,} |"
        )
    return lines


def _dedup_pii_section(stats: dict[str, Any]) -> list[str]:
    dup, pii = stats["duplicates"], stats["pii"]
    lines = ["", "## Duplicates", ""]
    near = dup["near_dup"]
    near_text = (
        f"near duplicates removed: {dup['near']:,} (MinHash LSH, threshold {near['threshold']}, "
        f"{near['num_perm']} permutations, {near['bands']} bands x {near['rows']} rows, {near['shingles']})"
        if near else "near-duplicate removal off"
    )
    lines.append(
        f"Duplicate rate: **{100 * dup['rate']:.2f}%** of the documents that reached deduplication "
        f"(exact duplicates removed: {dup['exact']:,}; {near_text})."
    )
    lines += ["", "## Personal information", ""]
    if pii["enabled"]:
        lines.append(
            f"Masked: {pii['emails']:,} e-mail address(es) as `<EMAIL>` and {pii['phones']:,} phone number(s) "
            f"as `<PHONE>`, in {pii['documents']:,} document(s). Names, addresses and other identifiers are "
            "not masked."
        )
    else:
        lines.append("PII masking was off: e-mail addresses and phone numbers are left as they were.")
    return lines


def _script_section(stats: dict[str, Any]) -> list[str]:
    dist = stats["script_distribution"]
    scripts = list(dict.fromkeys([*dist["output"], *dist["input"]]))
    lines = [
        "",
        "## Script distribution",
        "",
        "Share of letters and digits by script (from Unicode character names), after normalization "
        "(input) and in the kept documents (output).",
        "",
        "| script | input | output |",
        "|---|---:|---:|",
    ]
    for script in scripts:
        a, b = dist["input"].get(script), dist["output"].get(script)
        lines.append(f"| {script} | {f'{100 * a:.2f}%' if a is not None else '-'} | {f'{100 * b:.2f}%' if b is not None else '-'} |")
    return lines


def _length_section(stats: dict[str, Any]) -> list[str]:
    hist = stats["length_histogram"]
    edges, counts = hist["edges"], hist["counts"]
    total = sum(counts) or 1
    lines = [
        "",
        "## Document length",
        "",
        f"![document length histogram]({HISTOGRAM})",
        "",
        "| characters | documents | share |",
        "|---|---:|---:|",
    ]
    for i, n in enumerate(counts):
        if n:
            lines.append(f"| {edges[i]:,}-{edges[i + 1] - 1:,} | {n:,} | {100 * n / total:.1f}% |")
    return lines


def _examples_section(stats: dict[str, Any]) -> list[str]:
    lines = ["", "## What the filters removed (examples, PII masked, shortened)", ""]
    any_example = False
    for step, examples in stats["examples"].items():
        if not examples:
            continue
        any_example = True
        lines.append(f"- **{step}**:")
        lines += [f"  - `{_cell(ex).replace('`', chr(0x2035))}`" for ex in examples]
    if not any_example:
        lines.append("Nothing was removed.")
    return lines


def _unreadable_section(stats: dict[str, Any]) -> list[str]:
    unreadable = stats["unreadable"]
    lines = ["", "## Unreadable lines", ""]
    if not unreadable["count"]:
        lines.append("None: every line was valid UTF-8 (and valid JSON where applicable).")
        return lines
    reasons = ", ".join(f"{reason}: {n:,}" for reason, n in unreadable["reasons"].items())
    lines += [f"{unreadable['count']:,} line(s) skipped ({reasons}):", ""]
    lines += [f"- {_cell(item['file'])}:{item['line']}: {_cell(item['reason'])}" for item in unreadable["listed"]]
    if unreadable["not_listed"]:
        lines.append(f"- ... and {unreadable['not_listed']:,} more")
    return lines


def plot_lengths(stats: dict[str, Any], path: Path) -> None:
    """Bar chart of the document-length histogram (log2 bins), written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hist = stats["length_histogram"]
    edges, counts = hist["edges"], hist["counts"]
    used = [i for i, n in enumerate(counts) if n] or [0]
    lo, hi = used[0], used[-1]
    labels = [f"{edges[i]:,}-{edges[i + 1] - 1:,}" for i in range(lo, hi + 1)]
    fig = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(labels)), counts[lo : hi + 1], color="#4477aa")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("document length (characters)")
    ax.set_ylabel("documents")
    ax.set_title(f"{stats['language']}: {stats['counts']['kept']:,} documents kept")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def write_card(stats: dict[str, Any], out_dir: str | Path, name: str) -> Path:
    """Write data_card.md and length_histogram.png into `out_dir`; returns the card's path."""
    out = Path(out_dir)
    plot_lengths(stats, out / HISTOGRAM)
    path = out / CARD
    with atomic_path(path) as tmp:
        tmp.write_text(render_card(stats, name), encoding="utf-8")
    return path
