"""Connection pruning of the third-party MobileFaceNet: LFW-dev accuracy vs kept fraction,
correlation (Sun, Wang & Tang 2016) vs magnitude, each retrained by distillation.

    PYTHONPATH=. python benchmarks/compress_connection.py            # writes benchmarks/results/compress_connection.{json,md,png}

Budget knobs (the numbers in results/ were made on 2 shared CPU cores, see --help): the paper
prunes one layer per iteration; here the 33 prunable convs are pruned top-down in --groups
groups (each one iteration: statistics -> sample -> retrain), with --retrain-iters Adam steps
of --batch faces after each.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeface import zoo
from edgeface.core import paths
from edgeface.eval import faces
from edgeface.eval.verification import PairSet
from edgeface.compress import finetune, prune  # noqa: E402
from edgeface.compress.correlation import top_down_order  # noqa: E402
from edgeface.compress.evalfast import embed_with_onnx  # noqa: E402
from edgeface.compress.report import plot_curves, write_markdown_table  # noqa: E402


def grouped_steps(model, n_groups: int) -> list[list[str]]:
    """Top-down groups: the head (embedding + conv_expand) first, then the bottleneck stages."""
    order = top_down_order(model)
    if n_groups >= len(order):
        return [[n] for n in order]
    head = [n for n in order if not n.startswith(("blocks", "stem"))]
    body = [n for n in order if n not in head]
    k = n_groups - 1
    chunks = [body[round(i * len(body) / k) : round((i + 1) * len(body) / k)] for i in range(k)]
    return [head] + [c for c in chunks if c]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.75, 0.5, 0.3, 0.15], help="kept fractions S")
    ap.add_argument("--methods", nargs="+", default=["correlation", "magnitude"])
    ap.add_argument("--groups", type=int, default=4, help="pruning iterations (33 = one layer per iteration, the paper)")
    ap.add_argument("--stats-faces", type=int, default=128)
    ap.add_argument("--pool", type=int, default=1000, help="aligned training faces per source (CelebA-299, AAF-8k) to detect/cache")
    ap.add_argument("--pool-size", type=int, default=0, help="use only the first N cached faces (both sources interleaved) for retraining")
    ap.add_argument("--retrain-iters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lam", type=float, default=0.75)
    ap.add_argument("--folds", type=int, default=5, help="LFW-dev folds to evaluate on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="registry name or checkpoint (default: the reference MobileFaceNet in ../shared); give it its own --out folder")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--skip-dense", action="store_true", help="do not evaluate the dense model (another run of the same sweep does)")
    ap.add_argument("--dense-from", help="with --collect: a JSON with a 'dense' entry on the same pairs (e.g. results/compress_channel.json) if no collected run has one")
    ap.add_argument("--collect", nargs="+", help="only merge the compress_connection.json files of these folders (runs split across processes) into --out and render")
    args = ap.parse_args()
    if args.collect:
        return collect(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_file = out / "compress_connection.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {"rows": []}
    done = {(r["method"], r["keep"]) for r in results["rows"]}

    dense, card = zoo.load_torch_model(args.model or str(paths.reference_mobilefacenet()))
    pairs = PairSet.load(paths.lfw_dev(), card)
    if args.folds < 5:
        pairs = pairs.subset(args.folds)
    pool = faces.training_faces(card, args.pool)
    if args.pool_size:
        pool = pool[: args.pool_size]
    stats = pool[: args.stats_faces]
    t = time.time()
    teacher = embed_with_onnx(dense, card, pool, args.threads)
    if "dense" not in results and not args.skip_dense:
        e = embed_with_onnx(dense, card, pairs.crops, args.threads)
        results["dense"] = pairs.report(e)
        print(f"dense: {100 * results['dense']['accuracy_mean']:.2f} % ({time.time() - t:.0f}s incl. teacher)", flush=True)
    steps = grouped_steps(dense, args.groups)
    results["setup"] = {
        "model": card.name, "pairs": len(pairs.ia), "folds": args.folds, "steps": steps, "stats_faces": args.stats_faces,
        "pool_faces": len(pool), "retrain_iters_per_step": args.retrain_iters, "batch": args.batch, "lr": args.lr, "lambda": args.lam,
        "retraining": "distillation from the dense model (1 - cosine), BN statistics frozen, Adam, cosine LR; CelebA-299 + AAF-8k aligned crops",
    }
    for method in args.methods:
        for keep in args.levels:
            if (method, keep) in done:
                continue
            t = time.time()
            model = copy.deepcopy(dense)
            epochs = args.retrain_iters * args.batch / len(pool)
            retrain = (lambda m, mk: finetune.distill(m, card, pool, teacher, mk, epochs=epochs, batch_size=args.batch, lr=args.lr, show_progress=False)) if args.retrain_iters else None
            masks, log = prune.prune_connections(model, card, stats, keep, method, args.lam, steps, retrain)
            emb = embed_with_onnx(model, card, pairs.crops, args.threads)
            rep = pairs.report(emb)
            row = {
                "method": method, "keep": keep, **prune.overall_sparsity(model, masks),
                "accuracy": rep["accuracy_mean"], "accuracy_std": rep["accuracy_std"], "auc": rep["auc"], "eer": rep["eer"],
                "nonzero_mflops": round(prune.nonzero_mflops(model, card, masks), 1),
                "retrain_loss": [(s.retrain_loss_first, s.retrain_loss_last) for s in log], "seconds": round(time.time() - t),
            }
            results["rows"].append(row)
            res_file.write_text(json.dumps(results, indent=2))
            print(f"{method:12s} S={keep:.2f}: {100 * row['accuracy']:.2f} % (kept {row['kept_fraction_of_all_params']:.3f} of params, {row['seconds']} s)", flush=True)
    res_file.write_text(json.dumps(results, indent=2))
    if "dense" in results:
        render(results, out, card.name)
    return 0


def collect(args) -> int:
    merged: dict = {"rows": []}
    for d in args.collect:
        r = json.loads((Path(d) / "compress_connection.json").read_text())
        merged["rows"] += r["rows"]
        merged.setdefault("setup", r.get("setup"))
        if "dense" in r:
            merged["dense"] = r["dense"]
    if "dense" not in merged and args.dense_from:
        d = json.loads(Path(args.dense_from).read_text())["dense"]
        merged["dense"] = {"accuracy_mean": d["accuracy"], "accuracy_std": d["accuracy_std"], "source": args.dense_from}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compress_connection.json").write_text(json.dumps(merged, indent=2))
    render(merged, out, merged["setup"]["model"])
    return 0


def render(results: dict, out: Path, model_name: str) -> None:
    rows = sorted(results["rows"], key=lambda r: (r["method"], -r["keep"]))
    methods = sorted({r["method"] for r in rows})
    dense_acc = results["dense"]["accuracy_mean"]
    curves = {m: ([r["kept_fraction_of_pruned_layers"] for r in rows if r["method"] == m], [100 * r["accuracy"] for r in rows if r["method"] == m]) for m in methods}
    plot_curves(curves, out / "compress_connection.png", "kept fraction of pruned layers' weights (S)", f"LFW-dev accuracy, {results['setup']['folds']} fold(s) (%)",
                f"Connection pruning of {model_name} (retrained)", hline=(100 * dense_acc, "dense"))
    table = [["dense", "1.00", "1.000", f"{100 * dense_acc:.2f} ± {100 * results['dense']['accuracy_std']:.2f}", f"{results['dense'].get('auc', float('nan')):.4f}", f"{100 * results['dense'].get('eer', float('nan')):.2f}", ""]]
    for r in rows:
        table.append([r["method"], f"{r['keep']:.2f}", f"{r['kept_fraction_of_all_params']:.3f}", f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}",
                      f"{r['auc']:.4f}", f"{100 * r['eer']:.2f}", f"{r['nonzero_mflops']}"])
    write_markdown_table(out / "compress_connection.md", ["method", "S", "kept of all params", "LFW-dev acc (%)", "AUC", "EER (%)", "non-zero MMACs"], table,
                         preamble=f"Setup: {json.dumps(results['setup'])}")
    print((out / "compress_connection.md").read_text())


if __name__ == "__main__":
    raise SystemExit(main())
