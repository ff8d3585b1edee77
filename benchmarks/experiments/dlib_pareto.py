"""The dlib_resnet compression study in one table and plot: LFW-dev accuracy against MMACs per
face, for the dense network, every channel-pruned row (correlation vs magnitude selection, each
retrained by distillation) and, for scale, the third-party MobileFaceNet.

    python benchmarks/experiments/dlib_pareto.py RUN.json [RUN.json ...] [--out benchmarks/results/dlib/pareto]

RUN.json are `compress_channel.py --model dlib_resnet` results; rows are merged and labelled with
their run's retraining steps (a later file's row for the same method, keep and steps replaces an
earlier one).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgeface.compress.report import write_markdown_table  # noqa: E402

# measured: count_mflops of 068.ckpt at 112x96 (189.4) and its LFW-dev accuracy in the README (98.57 %)
REFERENCE_MFN = {"name": "MobileFaceNet (third-party, no licence)", "mflops": 189.4, "accuracy": 0.9857, "params": 999_552}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/dlib/pareto")
    args = ap.parse_args()
    dense, rows, setups = None, {}, []
    for f in args.runs:
        d = json.loads(Path(f).read_text())
        dense = dense or d.get("dense")
        setups.append(d.get("setup", {}))
        steps = d.get("setup", {}).get("retrain_iters")
        for r in d.get("rows", []):
            rows[(r["method"], steps, r["keep"])] = dict(r, retrain_steps=steps)
    rows = [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] or 0, -k[2]))]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, steps in sorted({(r["method"], r["retrain_steps"]) for r in rows}, key=lambda k: (k[0], k[1] or 0)):
        sel = [r for r in rows if r["method"] == method and r["retrain_steps"] == steps]
        marker = "o" if method == "correlation" else "s"
        style = "-" if (steps or 0) >= 300 else ":"
        if sel:
            ax.plot([r["mflops"] for r in sel], [100 * r["accuracy"] for r in sel], marker + style, color="tab:blue" if method == "correlation" else "tab:orange",
                    alpha=1.0 if (steps or 0) >= 300 else 0.6, label=f"{method}, {steps} retraining steps")
            for r in sel:
                ax.annotate(f"S={r['keep']:g}", (r["mflops"], 100 * r["accuracy"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    if dense:
        ax.plot([dense["mflops"]], [100 * dense["accuracy"]], "k*", ms=12, label="dlib_resnet dense")
    ax.plot([REFERENCE_MFN["mflops"]], [100 * REFERENCE_MFN["accuracy"]], "D", color="tab:red", label=REFERENCE_MFN["name"])
    ax.set_xlabel("MMACs per face")
    ax.set_ylabel("LFW-dev accuracy, 5 folds (%)")
    ax.set_title("dlib_resnet: channel pruning vs accuracy", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=110)
    table = []
    if dense:
        table.append(["dense", "1.00", "-", f"{dense['params'] / 1e6:.2f}", dense["mflops"], f"{dense['ort_latency']['min_ms']:.1f}", f"{100 * dense['accuracy']:.2f} ± {100 * dense['accuracy_std']:.2f}", "-"])
    for r in rows:
        table.append([r["method"], r["keep"], r["retrain_steps"], f"{r['params'] / 1e6:.2f}", r["mflops"], f"{r['ort_latency']['min_ms']:.1f}", f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}",
                      f"{r['retrain_loss'][0]:.3f} → {r['retrain_loss'][1]:.3f}" if r.get("retrain_loss") else "-"])
    write_markdown_table(out.with_suffix(".md"), ["selection", "kept inner channels", "retraining steps (x16 faces)", "params (M)", "MMACs", "ORT fp32 ms (1 thread, min of 50, busy machine)", "LFW-dev (5 folds)", "retraining loss first → last"], table,
                         preamble="Setups: " + json.dumps(setups))
    out.with_suffix(".json").write_text(json.dumps({"dense": dense, "rows": rows, "setups": setups, "reference_mobilefacenet": REFERENCE_MFN}, indent=1) + "\n")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
