"""The edge model of issue 15: dlib's CC0 ResNet pruned step by step (the DeepID2+ way: sparsify,
retrain, sparsify further) down to a network whose int8 file fits in 2 MB, retrained by
distillation from the dense network (embedding cosine + stage-output error) after every step.

    PYTHONPATH=. python benchmarks/dlib_edge.py                      # stages 0.75 -> 0.5 -> 0.33
    PYTHONPATH=. python benchmarks/dlib_edge.py --start CKPT         # resume after a saved stage

Why gradual: one-shot pruning to keep 0.35 lost 23 pt (75.97 % after 150 steps), while keep 0.75
recovered to 98.13 % in 600 steps (benchmarks/results/dlib/pareto.md). Each stage removes a third of
the remaining inner channels, chosen by correlation on the *current* network's activations, so the
network the next stage starts from has already re-learned to carry what the removed channels held.

Writes benchmarks/results/dlib/edge.{json,md} and one checkpoint per stage in --save-dir (cards
included; the weights derive from the CC0 dlib model and stay CC0). Latency here is not measured:
the bundles are timed with `edgeface bench` on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeface import zoo  # noqa: E402
from edgeface.core import paths  # noqa: E402
from edgeface.eval import faces  # noqa: E402
from edgeface.eval.verification import PairSet  # noqa: E402
from edgeface.compress import channel, finetune  # noqa: E402
from edgeface.compress.evalfast import embed_with_onnx  # noqa: E402
from edgeface.models.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from edgeface.models.complexity import count_mflops, count_params  # noqa: E402


def parse_stages(text: str) -> list[tuple[float, int]]:
    """'0.75:600,0.5:1500' -> [(0.75, 600), (0.5, 1500)]: kept fraction of the dense widths, retraining steps."""
    out = []
    for part in text.split(","):
        keep, steps = part.split(":")
        out.append((float(keep), int(steps)))
    if any(not 0 < k <= 1 for k, _ in out) or [k for k, _ in out] != sorted((k for k, _ in out), reverse=True):
        raise SystemExit(f"--stages: kept fractions must be in (0, 1] and decreasing, got {text!r}")
    return out


PACKAGE_WEIGHTS = Path(__file__).resolve().parent.parent / "edgeface" / "weights" / "dlib_resnet_edge.safetensors"


def package(ckpt: Path) -> Path:
    """The registry's `dlib_resnet_edge`: the checkpoint's weights stored as fp16 (half the bytes in the
    wheel; the network still computes in fp32, so what ships is exactly what `edgeface eval` measures)."""
    from safetensors.torch import save_file

    from edgeface import __version__
    from edgeface.models.checkpoints import CARD_KEY, read_checkpoint

    state, card, _ = read_checkpoint(ckpt)
    card = card.replace(name="dlib_resnet_edge", licence="CC0-1.0 (derived by edgeface from dlib's CC0 dlib_face_recognition_resnet_model_v1)",
                        description=f"dlib's ResNet, inner channels pruned by correlation in stages (inner widths {card.arch_kwargs.get('widths')}) and retrained by distillation "
                                    "from the dense network; recipe and commands: benchmarks/results/dlib/edge.md (benchmarks/dlib_edge.py); "
                                    "weights stored fp16",
                        # int8 keeps only the stem in float: its final 256x128 linear quantizes without loss (OpenVINO int8 of
                        # the keep-0.33 network: LFW-dev 97.37 % vs 97.30 % fp32), and PT2E's default of three float layers
                        # (MobileFaceNet's end) would keep two 3x3 convs of the widest stage in float here (an estimated 3.1 MB of TFLite int8)
                        int8_float_scope={"first": True, "last": 0})
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    PACKAGE_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file(half, str(PACKAGE_WEIGHTS), metadata={CARD_KEY: card.to_json(), "edgeface_version": __version__, "source_checkpoint_sha256": sha256(ckpt)})
    return PACKAGE_WEIGHTS


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_table(res: dict, out: Path) -> None:
    d = res["dense"]
    lines = ["| network | params | MMACs | retraining steps (this row) | LFW-dev before | LFW-dev after |", "|---|---|---|---|---|---|",
             f"| dense dlib_resnet | {d['params']:,} | {d['mflops']} | - | - | {100 * d['accuracy']:.2f} ± {100 * d['accuracy_std']:.2f} % |"]
    for r in res["rows"]:
        what = f"keep {r['keep']}" + (", retrained further" if r.get("continued_from") else "") + (f" ({r['label']})" if r.get("label") else "")
        lines.append(f"| {what} | {r['params']:,} | {r['mflops']} | {r['steps']} | {100 * r['accuracy_before_retraining']:.2f} % | "
                     f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} % |")
    (out / "edge.md").write_text("# dlib_resnet pruned in stages (benchmarks/dlib_edge.py)\n\nSetup: " + json.dumps(res["setup"]) + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="0.75:600,0.5:1500,0.33:3000", help="KEEP:STEPS,... (keep = fraction of the dense inner widths)")
    ap.add_argument("--start", help="a checkpoint saved by an earlier stage (or by compress_channel.py --save-dir): stages with keep >= its keep are skipped")
    ap.add_argument("--keep-at", default="", metavar="WIDTH=KEEP,...",
                    help="another keep for the blocks whose outer width is WIDTH (e.g. 256=0.27: the 256-wide stage holds 3/4 of the parameters, the early stages most of the MACs)")
    ap.add_argument("--continue-training", action="store_true",
                    help="a stage whose keep equals the --start checkpoint's retrains it further (a new cosine cycle) instead of being skipped")
    ap.add_argument("--faces-per-source", type=int, default=3000, help="aligned training faces per source (at most)")
    ap.add_argument("--sources", default=",".join(faces.TRAIN_SOURCES),
                    help=f"training sources: shared dataset names, or {faces.LFW_EXTRA} (LFW's people in no evaluation pair)")
    ap.add_argument("--jitter", action="store_true", help="a new geometric/photometric view of every face each step, its target the teacher's embedding of that view")
    ap.add_argument("--relation-weight", type=float, default=0.0, help="weight of the batch cosine-matrix term (student vs teacher)")
    ap.add_argument("--mixup", type=float, default=0.0, help="fraction of each batch replaced by blends of two faces, the target the teacher's embedding of the blend")
    ap.add_argument("--label", default="", help="names this run's rows in the table (rows of other labels are kept)")
    ap.add_argument("--eval-every", type=int, default=0, help="save a checkpoint and measure LFW-dev every N steps (0: only at the end of a stage)")
    ap.add_argument("--stats-faces", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--feature-distill", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--save-dir", default=os.path.expanduser("~/.cache/edgeface/dlib_edge"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dlib"))
    ap.add_argument("--package", metavar="CKPT", help="only write CKPT as the package's dlib_resnet_edge weights (fp16 storage) and exit")
    args = ap.parse_args()
    if args.package:
        print(package(Path(args.package)))
        return 0
    torch.set_num_threads(args.threads)
    stages = parse_stages(args.stages)
    keep_at = {int(w): float(k) for w, k in (part.split("=") for part in args.keep_at.split(",") if part)}
    out, save_dir = Path(args.out), Path(args.save_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_dir.mkdir(parents=True, exist_ok=True)
    res_file = out / "edge.json"
    res = json.loads(res_file.read_text()) if res_file.is_file() else {"rows": []}

    dense, card = zoo.load_torch_model("dlib_resnet")
    dense.eval()
    dense_mid = channel.mid_channels(dense)
    pairs = PairSet.load(paths.lfw_dev(), card)
    if args.folds < 5:
        pairs = pairs.subset(args.folds)
    pool = faces.training_faces(card, args.faces_per_source, sources=tuple(args.sources.split(",")))
    print(f"{len(pool)} training faces, {len(pairs.ia)} LFW-dev pairs", flush=True)
    # with --jitter, --relation-weight or --mixup the targets are the teacher's embeddings of each step's inputs, not of the stored faces
    teacher = None if finetune.targets_from_teacher_view(args.jitter, args.relation_weight, args.mixup) else embed_with_onnx(dense, card, pool, args.threads)
    if "dense" not in res:
        r = pairs.report(embed_with_onnx(dense, card, pairs.crops, args.threads))
        res["dense"] = {"params": count_params(dense), "mflops": round(count_mflops(dense, card.input_size), 1), "mid_channels": dense_mid,
                        "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"]}
    res["setup"] = {"stages": stages, "keep_at": keep_at, "training_faces": len(pool), "sources": args.sources, "batch": args.batch, "lr": args.lr, "feature_distill": args.feature_distill,
                    "jitter": args.jitter, "relation_weight": args.relation_weight, "mixup": args.mixup,
                    "lfw_pairs": int(len(pairs.ia)), "folds": args.folds,
                    "retraining": "per stage: correlation channel selection on the current network, then Adam + cosine LR distillation from the dense network "
                                  "(1 - cosine to its embedding + W x relative stage-output error), BN statistics frozen, horizontal flips"}

    net = dense
    if args.start:
        net, start_card = load_checkpoint(args.start)
        kept = float(np.mean(np.asarray(channel.mid_channels(net)) / np.asarray(dense_mid)))
        print(f"start: {args.start} (mean kept fraction {kept:.3f})", flush=True)
    for keep, steps in stages:
        # the stage's inner widths: a fraction of the *dense* width per block (--keep-at per stage width)
        want = {name: max(8, int(round(keep_at.get(net.get_submodule(name).conv2.out_channels, keep) * c_dense)))
                for name, c_dense in zip(channel.bottlenecks(net), dense_mid)}
        now = dict(zip(channel.bottlenecks(net), channel.mid_channels(net)))
        prune = any(want[b] < now[b] for b in now)
        # a stage no narrower than the network anywhere was passed already; one of its very widths is retrained with --continue-training
        if not prune and (not args.continue_training or any(want[b] > now[b] for b in now)):
            continue
        t = time.time()
        stats = pool[: args.stats_faces]
        # channels selected among the current ones
        rel = {b: min(now[b], want[b]) / now[b] for b in now}
        if prune:
            acts = channel.expansion_activations(net, finetune.batches(stats, card))
            idx = channel.select_channels(net, rel, "correlation", acts)
            net = channel.shrink_bottlenecks(net, idx)
        acc0 = pairs.report(embed_with_onnx(net, card, pairs.crops, args.threads))["accuracy_mean"]
        print(f"keep {keep}: {count_params(net)} params, before retraining {100 * acc0:.2f} %", flush=True)
        name = f"dlib_resnet_edge_s{keep:g}"
        curve = []

        def checkpoint(step, model, keep=keep, name=name, curve=curve):
            # a long run leaves a measured, loadable network behind every --eval-every steps
            if args.eval_every and step % args.eval_every == 0 and step < steps:
                acc = pairs.report(embed_with_onnx(model, card, pairs.crops, args.threads))["accuracy_mean"]
                save_checkpoint(model, channel.pruned_card(model, card, name, f"partial: step {step} of {steps}"), save_dir / f"{name}_step{step}.safetensors")
                curve.append({"step": step, "accuracy": acc, "seconds": round(time.time() - t)})
                print(f"step {step}/{steps}: LFW-dev {100 * acc:.2f} % ({curve[-1]['seconds']} s)", flush=True)

        losses = finetune.distill(net, card, pool, teacher, None, epochs=steps * args.batch / len(pool), batch_size=args.batch, lr=args.lr,
                                  show_progress=True, teacher_model=dense, feature_weight=args.feature_distill, seed=len(res["rows"]),
                                  jitter=args.jitter, relation_weight=args.relation_weight, mixup=args.mixup, on_step=checkpoint)
        r = pairs.report(embed_with_onnx(net, card, pairs.crops, args.threads))
        ckpt = save_checkpoint(net, channel.pruned_card(net, card, name, f"dlib_resnet, correlation channel pruning in stages down to S={keep} of the dense inner widths, "
                                                        "retrained by distillation from the dense network (benchmarks/dlib_edge.py)"), save_dir / f"{name}.safetensors")
        row = {"keep": keep, "params": count_params(net), "mflops": round(count_mflops(net, card.input_size), 1), "mid_channels": channel.mid_channels(net),
               "steps": steps, "accuracy_before_retraining": acc0, "accuracy": r["accuracy_mean"], "accuracy_std": r["accuracy_std"],
               "loss": {"first": losses[0], "last_100_mean": float(np.mean(losses[-100:])), "every_100": [round(float(np.mean(losses[i:i + 100])), 5) for i in range(0, len(losses), 100)]},
               "curve": curve, "seconds": round(time.time() - t), "load_average_1min_at_end": round(os.getloadavg()[0], 2), "checkpoint": str(ckpt)}
        if not prune:
            row["continued_from"] = args.start
        row["setup"] = {k: v for k, v in res["setup"].items() if k != "stages"}
        if args.label:
            row["label"] = args.label
        # a row is replaced only by a rerun of the same thing (keep, continued or not, label)
        same = lambda x: (x["keep"], bool(x.get("continued_from")), x.get("label")) == (keep, not prune, args.label or None)  # noqa: E731
        res["rows"] = [x for x in res["rows"] if not same(x)] + [row]
        res_file.write_text(json.dumps(res, indent=2))
        print(f"keep {keep}: {row['params']} params, {row['mflops']} MMACs, {100 * acc0:.2f} -> {100 * row['accuracy']:.2f} ± {100 * row['accuracy_std']:.2f} % "
              f"({row['seconds']} s) -> {ckpt}", flush=True)

    write_table(res, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
