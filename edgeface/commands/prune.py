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
    """Add the `prune` subcommand and its options to the subparsers `sub`."""
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
    """`edgeface prune`: run the pruning job (torch limited to --threads when given) and print its summary; returns 0."""
    from ..compress.prune_job import PruneJob, prune_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(prune_model(PruneJob.from_namespace(args)).summary())
    return 0
