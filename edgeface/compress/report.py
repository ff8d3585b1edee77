"""Compression reports: JSON + markdown + PNG curves."""
from __future__ import annotations

import json
import os
from pathlib import Path


def plot_curves(curves: dict[str, tuple[list, list]], path: str | os.PathLike, xlabel: str, ylabel: str, title: str, hline: tuple[float, str] | None = None) -> Path:
    """Plot named (xs, ys) curves, with an optional labelled horizontal line, to a PNG at `path` (matplotlib, Agg);
    returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, "o-", label=name)
    if hline:
        ax.axhline(hline[0], color="gray", ls="--", label=hline[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_markdown_table(path: str | os.PathLike, header: list[str], rows: list[list], preamble: str = "") -> Path:
    """Write a Markdown table (optionally after a preamble paragraph) to `path`; returns the path."""
    lines = ([preamble, ""] if preamble else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_report(stem: str | os.PathLike, report: dict, title: str) -> tuple[Path, Path]:
    """<stem>.json (everything) and <stem>.md (a readable summary of the top-level numbers
    and the per-layer table if present)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    js = stem.with_suffix(".json")
    js.write_text(json.dumps(report, indent=2, default=str))
    lines = [f"# {title}", ""]
    for k, v in report.items():
        if isinstance(v, (str, int, float)) or v is None:
            lines.append(f"- **{k}**: {v}")
    for section in ("before", "after", "qat"):
        if isinstance(report.get(section), dict):
            lines.append(f"- **{section}**: " + ", ".join(f"{k} {v}" for k, v in report[section].items() if isinstance(v, (int, float, str))))
    if report.get("layers"):
        lines += ["", "| layer | weights | kept | sparsity |", "|---|---|---|---|"]
        lines += [f"| {r['layer']} | {r['weights']} | {r['kept']} | {r['sparsity']:.3f} |" for r in report["layers"]]
    for p in report.get("plots", []):
        lines += ["", f"![{Path(p).stem}]({Path(p).name})"]
    md = stem.with_suffix(".md")
    md.write_text("\n".join(lines) + "\n")
    return js, md
