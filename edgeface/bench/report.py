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
    "latency_p50_ms_1t", "latency_p90_ms_1t", "latency_p99_ms_1t", "latency_iqr_ms_1t", "latency_min_ms_1t", "latency_max_ms_1t",
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


def table(result: dict) -> str:
    rows = result["rows"]
    n_all = next((r["threads_all"] for r in rows if r.get("threads_all")), None)
    tb = result["settings"].get("throughput_batch")
    cols = ["target", "backend", "MB", "cold s", "p50 ms 1t (IQR)", f"p50/p99 ms {n_all}t", f"img/s 1t @{tb}", f"img/s {n_all}t @{tb}", "RSS MB", "cos min/mean", "LFW acc", "budgets"]
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
            f"{_f(r.get('accuracy'), '.2f', 100)} ± {_f(r.get('accuracy_std'), '.2f', 100)} %" if "accuracy" in r else "n/a",
            _verdict(r),
        ])
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(cols), line(["-" * w for w in widths])] + [line(b) for b in body]
    for e in result.get("errors", []):
        out.append(f"{e['target']}: not measured: {e['error']}")
    out.append(f"machine: {summary_line(result['machine'])}")
    return "\n".join(out)


def markdown(result: dict) -> str:
    """The README table."""
    rows = result["rows"]
    n_all = next((r["threads_all"] for r in rows if r.get("threads_all")), "all")
    tb = result["settings"].get("throughput_batch")
    head = ["model", "target", "size MB", "cold start s", "p50 ms 1 thread (IQR)", f"p50 / p99 ms {n_all} threads", f"img/s @{tb} 1 / {n_all} threads", "peak RSS MB", "cosine to source min / mean", "LFW-dev acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], r["target"], _f(r["file_size_mb"], ".2f"), _f(r["cold_start_s"], ".3f"),
            f"{_f(r.get('latency_p50_ms_1t'), '.2f')} ({_f(r.get('latency_iqr_ms_1t'), '.2f')})",
            f"{_f(r.get('latency_p50_ms_all'), '.2f')} / {_f(r.get('latency_p99_ms_all'), '.2f')}",
            f"{_f(r.get('throughput_ips_1t'), '.0f')} / {_f(r.get('throughput_ips_all'), '.0f')}",
            _f(r["peak_rss_mb"], ".0f"),
            f"{_f(r.get('parity_cos_min'), '.4f')} / {_f(r.get('parity_cos_mean'), '.4f')}" if "parity_cos_min" in r else "n/a",
            f"{_f(r.get('accuracy'), '.2f', 100)} ± {_f(r.get('accuracy_std'), '.2f', 100)} %" if "accuracy" in r else "n/a",
        ]) + " |")
    lines.append("")
    lines.append(f"Machine: {summary_line(result['machine'])}.")
    return "\n".join(lines)


def write_csv(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            w.writerow({k: r.get(k, "") for k in CSV_COLUMNS})


def write_json(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def plot(result: dict, path: str | Path, latency_key: str = "latency_p50_ms_1t", title: str | None = None) -> Path | None:
    """Accuracy vs latency per target; marker area ∝ file size; one colour per model. Targets
    without an accuracy are left out of the plot (they stay in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("accuracy") is not None and r.get(latency_key) is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    models = sorted({r["model"] for r in rows})
    colours = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    max_mb = max(r["file_size_mb"] for r in rows)
    for r in rows:
        area = 40 + 600 * r["file_size_mb"] / max_mb
        ax.scatter(r[latency_key], 100 * r["accuracy"], s=area, color=colours[r["model"]], alpha=0.6, edgecolors="black", linewidths=0.6)
        # The colour names the model, so the label is only the target (after "model:").
        label = r["target"].split(":", 1)[-1]
        ax.annotate(f"{label} {r['file_size_mb']:.1f} MB", (r[latency_key], 100 * r["accuracy"]), textcoords="offset points", xytext=(6, 3), fontsize=6.5, alpha=0.85)
    for m in models:
        ax.scatter([], [], color=colours[m], label=m, s=60)
    # Below the axes: inside, it covered the points of whichever model sat in that corner.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(3, len(models)), fontsize=8, title="model (marker area ∝ file size)", title_fontsize=8)
    which = "1 thread" if latency_key.endswith("_1t") else "all threads"
    ax.set_xlabel(f"latency p50, batch 1, {which} (ms)")
    folds = rows[0].get("folds")
    ax.set_ylabel(f"LFW-dev verification accuracy (%, {folds}-fold)")
    ax.grid(alpha=0.3)
    m = result["machine"]
    ax.set_title(title or f"edgeface bench: accuracy vs latency\n{m['cpu']}, {m['usable_cores']} cores", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_all(result: dict, out_dir: str | Path, stem: str = "bench") -> dict[str, str]:
    out_dir = Path(out_dir)
    files = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    write_json(result, files["json"])
    write_csv(result, files["csv"])
    files["md"].write_text(markdown(result) + "\n")
    if plot(result, files["png"]) is None:
        files.pop("png")
    return {k: str(v) for k, v in files.items()}
