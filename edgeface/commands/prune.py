"""`edgeface prune`: correlation (Sun, Wang & Tang 2016) or magnitude pruning of connections or
channels, retrained by distillation from the dense model, with a report."""
from __future__ import annotations

import argparse

from .eval import add_model_args

HELP = """Prune a face embedder and retrain it by distillation from the original.

--level connection: the CVPR 2016 method. Layers are sparsified one at a time (--layers-per-step)
from the embedding layer down; for each layer the correlation of every connection's input and
output neuron is measured on aligned faces, positive and negative connections are split into a
stronger and a weaker half by |r| and lambda*S*K / (1-lambda)*S*K are sampled from them
(--method magnitude: keep the largest |w| instead); then the whole network is retrained with the
masks held, before the next layer. Depthwise layers are not pruned. Output: a checkpoint whose
pruned weights are zero, a .masks.safetensors sidecar, and a report.

--level channel: removes MobileFaceNet bottleneck expansion channels (redundant = highly
correlated with a kept one, or uninformative = low activation x weight; --method magnitude: L1
of the filter) and writes a smaller dense network (arch mobilefacenet_pruned) that runs faster.

Retraining data: aligned faces from ../shared CelebA-299 + AAF-8k (never LFW); the paper
retrained on its identity-labelled training set, which is not available here."""


def register(sub) -> None:
    p = sub.add_parser("prune", help="correlation / magnitude pruning of connections or channels, with retraining and a report", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--method", choices=["correlation", "magnitude"], default="correlation")
    p.add_argument("--level", choices=["connection", "channel"], default="connection")
    p.add_argument("--keep", type=float, required=True, help="kept fraction S of each pruned layer's connections (or of each bottleneck's channels)")
    p.add_argument("--lam", type=float, default=0.75, help="share of kept connections sampled from the stronger half (default 0.75, the paper's)")
    p.add_argument("--layers-per-step", type=int, default=1, help="layers sparsified per iteration before retraining (default 1, the paper's schedule)")
    p.add_argument("--retrain-iters", type=int, default=50, help="Adam steps of retraining after each iteration (0: no retraining)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--feature-distill", type=float, default=0.0, metavar="W",
                   help="channel level, residual networks (dlib_resnet): also match the dense model's stage outputs, weight W (default 0: embeddings only)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--faces", type=int, default=1000, help="aligned training faces per source (CelebA-299, AAF-8k), cached")
    p.add_argument("--stats-faces", type=int, default=256, help="faces for the correlation statistics")
    p.add_argument("--eval-folds", type=int, default=5, help="LFW-dev folds for accuracy before/after (0: skip)")
    p.add_argument("--out", help="output checkpoint (.safetensors; default out/<name>.safetensors)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args) -> int:
    import copy
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from .. import face_sets as faces
    from ..compress import channel, finetune, prune
    from ..compress.evalfast import embed_with_onnx
    from ..compress.masks import save_pruned, sparsity_table
    from ..compress.report import plot_curves, write_report
    from ..models.checkpoints import save_checkpoint
    from ..models.complexity import count_mflops, count_params
    from ..zoo import load_torch_model

    if not 0 < args.keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], got {args.keep}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    dense, card = load_torch_model(args.model, arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size)
    if args.level == "channel" and not channel.bottlenecks(dense):
        raise ValueError(f"{args.model}: channel pruning needs MobileFaceNet bottlenecks or residual basic blocks (conv1/bn1/conv2); arch {card.arch!r} has none")
    tag = f"{args.method}_{args.level}_s{args.keep:g}"
    out = Path(args.out or Path("out") / f"{card.name}_{tag}.safetensors")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: expected a .safetensors path")
    pool = faces.training_faces(card, args.faces, seed=args.seed)
    stats = pool[: args.stats_faces]
    teacher = embed_with_onnx(dense, card, pool)
    epochs = args.retrain_iters * args.batch / len(pool)
    retrain = (lambda m, mk: finetune.distill(m, card, pool, teacher, mk, epochs=epochs, batch_size=args.batch, lr=args.lr, seed=args.seed)) if args.retrain_iters else None
    model = copy.deepcopy(dense)
    losses: list[float] = []
    report: dict = {"model": card.name, "method": args.method, "level": args.level, "keep": args.keep, "lambda": args.lam if args.method == "correlation" else None,
                    "retraining": f"distillation from the dense model (1 - cos{f' + {args.feature_distill:g} x stage-output error' if args.feature_distill else ''}) on {len(pool)} aligned CelebA-299 + AAF-8k faces, {args.retrain_iters} Adam steps x {args.batch} per iteration, lr {args.lr}"}
    if args.level == "connection":
        def retrain_logged(m, mk):
            ls = retrain(m, mk) if retrain else []
            losses.extend(ls)
            return ls

        steps = prune.layer_steps(dense, args.layers_per_step)
        masks, log = prune.prune_connections(model, card, stats, args.keep, args.method, args.lam, steps, retrain_logged, seed=args.seed)
        new_card = card.replace(name=f"{card.name}_{tag}", description=f"{card.description or card.name}; {args.method} connection pruning, S={args.keep}",
                                params=count_params(model), mflops=round(count_mflops(model, card.input_size), 1))
        save_pruned(model, new_card, masks, out, extra={"pruning": {"method": args.method, "level": "connection", "keep": args.keep, "lambda": args.lam}})
        report["layers"] = sparsity_table(model, masks)
        report["steps"] = [{"layers": s.layers, "loss_first": s.retrain_loss_first, "loss_last": s.retrain_loss_last} for s in log]
        report.update(prune.overall_sparsity(model, masks))
        report["nonzero_mflops"] = round(prune.nonzero_mflops(model, card, masks), 1)
    else:
        acts = channel.expansion_activations(dense, finetune.batches(stats, card)) if args.method == "correlation" else None
        keep_idx = channel.select_channels(dense, args.keep, args.method, acts)
        model = channel.shrink_bottlenecks(model, keep_idx)
        if retrain:
            n_iter = args.retrain_iters * max(1, len(channel.bottlenecks(dense)) // max(1, args.layers_per_step * 4))
            losses = finetune.distill(model, card, pool, teacher, None, epochs=n_iter * args.batch / len(pool), batch_size=args.batch, lr=args.lr, seed=args.seed,
                                      teacher_model=dense if args.feature_distill > 0 else None, feature_weight=args.feature_distill)
        new_card = channel.pruned_card(model, card, f"{card.name}_{tag}", f"{args.method} channel pruning, S={args.keep}")
        save_checkpoint(model, new_card, out, extra={"pruning": {"method": args.method, "level": "channel", "keep": args.keep}})
        report["channels"] = {b: {"before": int(c0), "after": int(len(keep_idx[b]))} for b, c0 in zip(channel.bottlenecks(dense), channel.mid_channels(dense))}
        report["layers"] = sparsity_table(model, {})
    report["before"] = {"params": count_params(dense), "mflops": round(count_mflops(dense, card.input_size), 1), "file_bytes": 4 * count_params(dense)}
    report["after"] = {"params": new_card.params, "mflops": new_card.mflops, "file_bytes": out.stat().st_size, "checkpoint": str(out)}
    if args.level == "connection":
        report["after"]["nonzero_params"] = report["params_nonzero"]
        report["after"]["sparse_bytes_estimate"] = report["params_nonzero"] * 4 + sum(r["weights"] for r in report["layers"] if r["layer"] in masks) // 8
    if args.eval_folds:
        pairs = faces.lfw_pairs(card)
        if args.eval_folds < 5:
            pairs = pairs.subset(args.eval_folds)
        for key, net in (("before", dense), ("after", model)):
            r = pairs.evaluate(embed_with_onnx(net, card, pairs.crops))
            report[key].update(accuracy=round(r["accuracy_mean"], 5), accuracy_std=round(r["accuracy_std"], 5), auc=round(r["auc"], 5), eer=round(r["eer"], 5), lfw_pairs=r["num_pairs"])
        print(f"LFW-dev ({pairs.folds.max() + 1} folds): {100 * report['before']['accuracy']:.2f} % -> {100 * report['after']['accuracy']:.2f} %")
    plots = []
    stem = out.with_suffix("")
    if losses:
        plots.append(str(plot_curves({"retraining": (list(range(1, len(losses) + 1)), losses)}, f"{stem}_retrain.png", "Adam step", "1 - cos(student, teacher)", f"Retraining {new_card.name}")))
    rows = report["layers"]
    if rows:
        plots.append(str(plot_curves({"kept fraction": (list(range(len(rows))), [1 - r["sparsity"] for r in rows])}, f"{stem}_layers.png", "conv layer (input to output)", "kept fraction of weights", f"Per-layer density, {new_card.name}")))
    report["plots"] = plots
    report["seconds"] = round(time.time() - t0)
    js, md = write_report(stem.with_name(stem.name + "_report"), report, f"edgeface prune: {new_card.name}")
    print(f"wrote {out} (+ report {js}, {md})")
    print(f"params {report['before']['params']} -> {report['after']['params']}" + (f" ({report['params_nonzero']} non-zero)" if args.level == "connection" else "") + f", MFLOPs {report['before']['mflops']} -> {report['after']['mflops']}")
    return 0
