"""Benchmark output: a terminal table, CSV, JSON and a PNG plot (accuracy vs latency per target,
marker area proportional to the model file's size), each with the machine description."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .machine import summary_line

CSV_COLUMNS = [
    "target", "model", "format", "precision", "backend", "profile", "file_size_mb", "cold_start_s", "peak_rss_mb", "threads_all",
    "latency_p50_ms_1t", "latency_p90_ms_1t", "latency_p99_ms_1t", "latency_iqr_ms_1t", "latency_min_ms_1t", "latency_max_ms_1t", "latency_cpu_p50_ms_1t",
    "latency_p50_ms_all", "latency_p90_ms_all", "latency_p99_ms_all", "latency_iqr_ms_all", "latency_min_ms_all", "latency_max_ms_all",
    "throughput_batch", "throughput_ips_1t", "throughput_ips_all", "parity_cos_min", "parity_cos_mean", "parity_n",
    "accuracy", "accuracy_std", "auc", "eer", "pairs", "folds", "pass", "path",
]


def _f(v, fmt: str, scale: float = 1.0, none: str = "n/a") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v * scale, fmt)


def _verdict(row: dict) -> str:
    if "budgets" not in row:
        return ""
    failed = [k for k, c in row["budgets"].items() if c["pass"] is False]
    unchecked = [k for k, c in row["budgets"].items() if c["pass"] is None]
    if failed:
        return "FAIL " + ",".join(failed)
    return "pass" + (f" (unchecked: {','.join(unchecked)})" if unchecked else "")


def benchmark_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(name, title) of every benchmark any row measured, in first-seen order: a column each."""
    seen: dict[str, str] = {}
    for r in rows:
        for name, b in r.get("benchmarks", {}).items():
            seen.setdefault(name, b["title"])
    return list(seen.items())


def accuracy_cell(r: dict, name: str | None, mark: bool = True) -> str:
    """'98.57 ± 0.29 %', followed by '(reused)' when the figure was not measured in this run."""
    b = r.get("benchmarks", {}).get(name) if name else r
    if not b or b.get("accuracy") is None:
        return "n/a"
    text = f"{_f(b.get('accuracy'), '.2f', 100)} ± {_f(b.get('accuracy_std'), '.2f', 100)} %"
    if mark and b.get("accuracy_source", "measured") != "measured":
        text += " (reused)"
    return text


def _accuracy_cells(rows: list[dict], r: dict) -> list[str]:
    cols = benchmark_columns(rows)
    return [accuracy_cell(r, name) for name, _ in cols] if cols else [accuracy_cell(r, None)]


def _accuracy_heads(rows: list[dict], suffix: str) -> list[str]:
    cols = benchmark_columns(rows)
    return [f"{title} {suffix}" for _, title in cols] if cols else [f"LFW {suffix}"]


def table(result: dict) -> str:
    """The benchmark result as a plain-text table, a row per target (size, cold start, latency, throughput, RSS,
    parity, accuracy, budget verdict), followed by errors and the machine line."""
    rows = result["rows"]
    n_all = next((r["threads_all"] for r in rows if r.get("threads_all")), None)
    tb = result["settings"].get("throughput_batch")
    cols = ["target", "backend", "MiB", "cold s", "p50 ms 1t (IQR)", f"p50/p99 ms {n_all}t", f"img/s 1t @{tb}", f"img/s {n_all}t @{tb}", "RSS MB", "cos min/mean", *_accuracy_heads(rows, "acc"), "budgets"]
    body = []
    for r in rows:
        body.append([
            r["target"],
            r["backend"],
            _f(r["file_size_mb"], ".2f"),
            _f(r["cold_start_s"], ".3f"),
            f"{_f(r.get('latency_p50_ms_1t'), '.2f')} ({_f(r.get('latency_iqr_ms_1t'), '.2f')})",
            f"{_f(r.get('latency_p50_ms_all'), '.2f')}/{_f(r.get('latency_p99_ms_all'), '.2f')}",
            _f(r.get("throughput_ips_1t"), ".0f"),
            _f(r.get("throughput_ips_all"), ".0f"),
            _f(r["peak_rss_mb"], ".0f"),
            f"{_f(r.get('parity_cos_min'), '.4f')}/{_f(r.get('parity_cos_mean'), '.4f')}" if "parity_cos_min" in r else "n/a",
            *_accuracy_cells(rows, r),
            _verdict(r),
        ])
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(cols), line(["-" * w for w in widths])] + [line(b) for b in body]
    for e in result.get("errors", []):
        out.append(f"{e['target']}: not measured: {e['error']}")
    if any("(reused)" in c for r in rows for c in _accuracy_cells(rows, r)):
        out.append("(reused): taken from the bundle's export verification, which measured the same pairs of the same images (dataset identity); all others measured now")
    out.append(f"machine: {summary_line(result['machine'])}")
    return "\n".join(out)


def markdown(result: dict) -> str:
    """The Markdown table (bench.md; docs/results/targets.md shows make main's)."""
    rows = result["rows"]
    n_all = next((r["threads_all"] for r in rows if r.get("threads_all")), "all")
    tb = result["settings"].get("throughput_batch")
    head = ["model", "target", "size MiB", "cold start s", "p50 ms 1 thread (IQR)", "CPU ms 1 thread", f"p50 / p99 ms {n_all} threads", f"img/s @{tb} 1 / {n_all} threads", "peak RSS MB", "cosine to source min / mean", *_accuracy_heads(rows, "acc")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], r["target"], _f(r["file_size_mb"], ".2f"), _f(r["cold_start_s"], ".3f"),
            f"{_f(r.get('latency_p50_ms_1t'), '.2f')} ({_f(r.get('latency_iqr_ms_1t'), '.2f')})",
            _f(r.get("latency_cpu_p50_ms_1t"), ".2f"),
            f"{_f(r.get('latency_p50_ms_all'), '.2f')} / {_f(r.get('latency_p99_ms_all'), '.2f')}",
            f"{_f(r.get('throughput_ips_1t'), '.0f')} / {_f(r.get('throughput_ips_all'), '.0f')}",
            _f(r["peak_rss_mb"], ".0f"),
            f"{_f(r.get('parity_cos_min'), '.4f')} / {_f(r.get('parity_cos_mean'), '.4f')}" if "parity_cos_min" in r else "n/a",
            *_accuracy_cells(rows, r),
        ]) + " |")
    lines.append("")
    lines.append(f"Machine: {summary_line(result['machine'])}.")
    return "\n".join(lines)


def write_csv(result: dict, path: str | Path) -> None:
    """Write the result's rows as CSV (the fixed columns plus a set of accuracy columns per benchmark); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    per_bench = ("accuracy", "accuracy_std", "tar_at_far_1e-3", "accuracy_source")
    extra = [f"{k}_{name}" for name, _ in benchmark_columns(result["rows"]) for k in per_bench]
    cols = CSV_COLUMNS[: CSV_COLUMNS.index("pass")] + ["accuracy_source"] + extra + CSV_COLUMNS[CSV_COLUMNS.index("pass"):]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            flat = dict(r)
            for name, b in r.get("benchmarks", {}).items():
                flat.update({f"{k}_{name}": b.get(k) for k in per_bench})
            w.writerow({k: "" if flat.get(k) is None else flat[k] for k in cols})


def write_json(result: dict, path: str | Path) -> None:
    """Write the result as indented JSON, atomically (a .json.tmp file renamed over `path`); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


MARKERS = "osD^vP*Xhp<>"


def plot(result: dict, path: str | Path, latency_key: str = "latency_p50_ms_1t", title: str | None = None) -> Path | None:
    """Accuracy vs latency, one panel per benchmark. Colour = model, marker shape = target
    (format-precision), marker area ∝ file size; both keys are legends below the panels, so no
    text sits on the points (labels of nearby targets used to overprint each other). Targets
    without an accuracy are left out of the plot (they stay in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    panels = benchmark_columns(result["rows"]) or [(None, "LFW-dev")]

    def acc(r, name):
        b = r.get("benchmarks", {}).get(name) if name else r
        return None if not b else b.get("accuracy")

    rows = [r for r in result["rows"] if r.get(latency_key) is not None and any(acc(r, n) is not None for n, _ in panels)]
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 5.2), dpi=120, squeeze=False, sharex=True)
    models = sorted({r["model"] for r in rows})
    colours = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    kinds = list(dict.fromkeys(r["target"].split(":", 1)[-1] for r in rows))
    markers = dict(zip(kinds, MARKERS * 4))
    max_mb = max(r["file_size_mb"] for r in rows)
    which = "1 thread" if latency_key.endswith("_1t") else "all threads"
    for ax, (name, ptitle) in zip(axes[0], panels):
        folds = None
        for r in rows:
            a = acc(r, name)
            if a is None:
                continue
            folds = folds or (r.get("benchmarks", {}).get(name, r) if name else r).get("folds")
            ax.scatter(r[latency_key], 100 * a, s=30 + 220 * r["file_size_mb"] / max_mb, marker=markers[r["target"].split(":", 1)[-1]],
                       color=colours[r["model"]], alpha=0.75, edgecolors="black", linewidths=0.5)
        ax.set_title(f"{ptitle}" + (f" ({folds}-fold)" if folds else ""), fontsize=10)
        ax.set_xlabel(f"latency p50, batch 1, {which} (ms)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("verification accuracy (%)")
    model_keys = [Line2D([], [], marker="o", linestyle="", color=colours[m], markersize=8, label=m) for m in models]
    target_keys = [Line2D([], [], marker=markers[k], linestyle="", color="grey", markeredgecolor="black", markersize=8, label=k) for k in kinds]
    fig.legend(handles=model_keys, loc="lower left", bbox_to_anchor=(0.01, 0.0), fontsize=8, title="model (colour)", title_fontsize=8, ncol=1)
    fig.legend(handles=target_keys, loc="lower right", bbox_to_anchor=(0.99, 0.0), fontsize=8, title="target (marker; area ∝ file size)",
               title_fontsize=8, ncol=min(4, len(kinds)))
    m = result["machine"]
    fig.suptitle(title or f"edgeface bench: accuracy vs latency — {m['cpu']}, {m['usable_cores']} cores", fontsize=10)
    n_leg = max(len(models), -(-len(kinds) // min(4, len(kinds))))
    fig.tight_layout(rect=(0, min(0.45, 0.06 + 0.045 * n_leg), 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_all(result: dict, out_dir: str | Path, stem: str = "bench") -> dict[str, str]:
    """Write OUT_DIR/STEM.json, .csv, .md and .png (the plot only when it can be drawn); returns {kind: path} of the
    files written."""
    out_dir = Path(out_dir)
    files = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_json(result, files["json"])
    write_csv(result, files["csv"])
    files["md"].write_text(markdown(result) + "\n")
    if plot(result, files["png"]) is None:
        files.pop("png")
    return {k: str(v) for k, v in files.items()}
