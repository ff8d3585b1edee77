"""Channel pruning of a MobileFaceNet's bottleneck expansion channels (the third-party reference, or --model): MFLOPs,
measured batch-1 latency and LFW-dev accuracy, correlation-based vs L1-magnitude selection,
each retrained by distillation from the dense model.

    PYTHONPATH=. python benchmarks/compress_channel.py     # writes benchmarks/results/compress_channel.{json,md,png}
    PYTHONPATH=. python benchmarks/compress_channel.py --model default   # ... compress_channel_default.*

Latency: ONNX Runtime, batch 1, 1 thread, median of --runs runs after warm-up (and torch,
1 thread). The machine's 2 cores were shared with other jobs, so compare rows with each
other (same run), not with other machines.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compress_common import add_setup_args, setup  # noqa: E402
from edgeface.eval import faces
from edgeface.compress import channel, finetune  # noqa: E402
from edgeface.compress.evalfast import embed_with_onnx, export_onnx, latency_ms, torch_latency_ms  # noqa: E402
from edgeface.compress.report import plot_curves, write_markdown_table  # noqa: E402
from edgeface.models.checkpoints import save_checkpoint  # noqa: E402
from edgeface.models.complexity import count_mflops, count_params  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.75, 0.5, 0.25])
    ap.add_argument("--methods", nargs="+", default=["correlation", "magnitude"])
    ap.add_argument("--stats-faces", type=int, default=64)
    ap.add_argument("--pool-size", type=int, default=320)
    ap.add_argument("--retrain-iters", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--remeasure-latency", action="store_true",
                    help="only re-time the dense net and every stored row's architecture (its recorded widths) on a quiet machine; accuracies are kept")
    ap.add_argument("--skip-no-retrain", action="store_true", help="do not evaluate the pruned networks before retraining")
    ap.add_argument("--feature-distill", type=float, default=0.0, metavar="W",
                    help="residual networks (dlib_resnet): also match the dense model's stage outputs during retraining, weight W")
    ap.add_argument("--save-dir", help="also save each retrained network as <save-dir>/<model>_<method>_s<keep>.safetensors (with its card)")
    add_setup_args(ap, folds=1)
    args = ap.parse_args()
    st = setup(args, "compress_channel")
    out, dense, card, pairs = st.out, st.model, st.card, st.pairs
    res = st.load({"rows": []})
    done = {(r["method"], r["keep"]) for r in res["rows"]}
    pool = faces.training_faces(card, 1000)[: args.pool_size]
    stats = pool[: args.stats_faces]
    todo = [(m, k) for m in args.methods for k in args.levels if (m, k) not in done]
    teacher = embed_with_onnx(dense, card, pool, args.threads) if todo else None
    tmp = Path(tempfile.mkdtemp(prefix="edgeface-channel-"))

    def measure(net):
        p = export_onnx(net, card, tmp / "m.onnx")
        return {"params": count_params(net), "mflops": round(count_mflops(net, card.input_size), 1),
                "ort_latency": latency_ms(p, card, args.runs), "torch_latency": torch_latency_ms(net, card, max(20, args.runs // 4))}

    if "dense" not in res:
        r = pairs.report(embed_with_onnx(dense, card, pairs.crops, args.threads))
        res["dense"] = {**measure(dense), "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"]}
        st.save(res)
        print(f"dense: {100 * r['accuracy_mean']:.2f} %, {res['dense']['mflops']} MMACs, {res['dense']['ort_latency']['median_ms']:.2f} ms", flush=True)
    if args.remeasure_latency:
        # latency depends on the architecture (the widths), not on which channels were kept
        names = channel.bottlenecks(dense)
        res["dense"].update(measure(dense))
        for r in res["rows"]:
            net = channel.shrink_bottlenecks(copy.deepcopy(dense), {b: np.arange(int(c)) for b, c in zip(names, r["mid_channels"])})
            m = measure(net)
            if m["params"] != r["params"]:
                raise ValueError(f"{r['method']} S={r['keep']}: rebuilt net has {m['params']} params, the stored row {r['params']}")
            r.update(ort_latency=m["ort_latency"], torch_latency=m["torch_latency"])
            print(f"{r['method']:12s} S={r['keep']}: {r['ort_latency']['median_ms']:.2f} ms (ORT), {r['torch_latency']['median_ms']:.2f} ms (torch)", flush=True)
        res["latency_measured"] = {"date": time.strftime("%Y-%m-%d"), "load_average_1min": round(os.getloadavg()[0], 2),
                                   "how": "re-timed alone with --remeasure-latency (nets rebuilt from the recorded widths)"}
        st.save(res)
    if todo or "setup" not in res:
        res["setup"] = {"model": card.name, "pairs": int(len(pairs.ia)), "folds": args.folds, "stats_faces": args.stats_faces, "pool_faces": len(pool),
                        "retrain_iters": args.retrain_iters, "batch": args.batch, "lr": args.lr,
                        "retraining": "distillation from the dense model (1 - cosine" + (f" + {args.feature_distill:g} x relative stage-output error" if args.feature_distill else "") + "), BN statistics frozen, Adam, cosine LR, once after pruning all blocks"}
    acts = channel.expansion_activations(dense, finetune.batches(stats, card)) if todo else None
    for method in args.methods:
        for keep in args.levels:
            if (method, keep) in done:
                continue
            t = time.time()
            idx = channel.select_channels(dense, keep, method, acts if method == "correlation" else None)
            net = channel.shrink_bottlenecks(copy.deepcopy(dense), idx)
            acc0 = None if args.skip_no_retrain else pairs.report(embed_with_onnx(net, card, pairs.crops, args.threads))["accuracy_mean"]
            losses = finetune.distill(net, card, pool, teacher, None, epochs=args.retrain_iters * args.batch / len(pool), batch_size=args.batch, lr=args.lr, show_progress=True,
                                      teacher_model=dense if args.feature_distill > 0 else None, feature_weight=args.feature_distill) if args.retrain_iters else []
            r = pairs.report(embed_with_onnx(net, card, pairs.crops, args.threads))
            row = {"method": method, "keep": keep, **measure(net), "accuracy_no_retrain": acc0, "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"],
                   "mid_channels": channel.mid_channels(net), "retrain_loss": [losses[0], losses[-1]] if losses else None, "seconds": round(time.time() - t)}
            if args.save_dir:
                name = f"{card.name}_{method}_s{keep:g}"
                row["checkpoint"] = str(save_checkpoint(net, channel.pruned_card(net, card, name, f"{method} channel pruning, S={keep}, retrained by distillation"), Path(args.save_dir) / f"{name}.safetensors"))
            res["rows"].append(row)
            st.save(res)
            print(f"{method:12s} S={keep}: {row['mflops']} MMACs, {row['ort_latency']['median_ms']:.2f} ms, acc {acc0} -> {100 * row['accuracy']:.2f} % ({row['seconds']} s)", flush=True)
    rows = sorted(res["rows"], key=lambda r: (r["method"], -r["keep"]))
    methods = sorted({r["method"] for r in rows})
    d = res["dense"]
    plot_curves({m: ([r["mflops"] for r in rows if r["method"] == m], [100 * r["accuracy"] for r in rows if r["method"] == m]) for m in methods},
                out / f"{st.stem}.png", "MMACs per face", f"LFW-dev accuracy, {args.folds} fold(s) (%)", f"Channel pruning of {card.name} (retrained)", hline=(100 * d["accuracy"], "dense"))
    table = [["dense", "1.00", d["params"], d["mflops"], f"{d['ort_latency']['median_ms']:.2f}", f"{d['torch_latency']['median_ms']:.2f}", "", f"{100 * d['accuracy']:.2f} ± {100 * d['accuracy_std']:.2f}"]]
    table += [[r["method"], r["keep"], r["params"], r["mflops"], f"{r['ort_latency']['median_ms']:.2f}", f"{r['torch_latency']['median_ms']:.2f}", f"{100 * r['accuracy_no_retrain']:.2f}" if r["accuracy_no_retrain"] is not None else "-",
               f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}"] for r in rows]
    write_markdown_table(out / f"{st.stem}.md", ["selection", "kept channels", "params", "MMACs", "ORT ms (1 thr, b1, median)", "torch ms (1 thr)", "acc no retrain (%)", "acc retrained (%)"], table,
                         preamble=f"Setup: {json.dumps(res['setup'])}" + (f"\n\nLatency: {json.dumps(res['latency_measured'])}" if "latency_measured" in res else ""))
    print((out / f"{st.stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
