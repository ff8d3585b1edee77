"""`edgeface train`: train a registry architecture on aligned faces (metric losses, margin
heads, distillation from a teacher), with per-epoch LFW-dev accuracy and curves."""
from __future__ import annotations

import argparse
import json

HELP = """Train a face embedder. Faces are detected (YuNet) and aligned once, then cached;
batches are P identities x K images; augmentation runs on the training device.

Losses (--loss, comma-separated, summed): multibatch, contrastive, triplet (batch-hard),
arcface, cosface, deepid2 (softmax + contrastive), softmax. --teacher dlib (or a registry
model / checkpoint) adds embedding distillation. Data (--data, comma-separated): named
sources celeba-299, yaleb-38, aaf-8k, lfw-extra (under ../shared/datasets), or folders of
identity sub-folders. Images of identities in the LFW-dev pairs are refused.

Teacher in the loop (a torch teacher: registry name or checkpoint, e.g. dlib_resnet):
--teacher-mode views caches its embeddings of N fixed augmented views per face, online runs
it on every batch (needed by --feature-weight); --relational-weight matches the batch's
similarity matrices. A --data entry ending in .npz is a pre-aligned face set (uint8 crops).

A recipe (--recipe NAME or FILE.toml) holds the same options; command-line options override it.
Writes OUT/last.safetensors (weights + card), state.safetensors (for --resume: the exact
step, optimizer, sampler and RNG states), history.json and curves.png. --stop-after-steps /
--sitting-time end a sitting with a resumable state (so does Ctrl-C); --resume continues it.
Under `torchrun --nproc-per-node N -m edgeface train ...` every process trains its share of
each global P x K batch (DDP: gloo on CPU, NCCL on GPU)."""

RECIPE_KEYS = {
    "arch", "loss", "loss_weights", "teacher", "distill", "distill_weight", "pairwise_weight", "distill_extra", "teacher_sources", "data",
    "epochs", "batches_per_epoch", "p", "k", "optimizer", "lr", "weight_decay", "warmup_epochs", "augment", "seed", "name",
    "max_images", "time_budget_s", "teacher_mode", "teacher_views", "relational_weight", "feature_weight", "feature_stages",
    "checkpoint_every", "sync_bn",
}


def register(sub) -> None:
    """Add the `train` subcommand and its options to the subparsers `sub`."""
    p = sub.add_parser("train", help="train a face embedder (metric losses, margin heads, distillation)", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="training recipe: a name (default: edgeface/configs/train/default.toml) or a .toml path; flags override it")
    p.add_argument("--arch", help="registry name of the architecture (default mobilefacenet; see `edgeface models`)")
    p.add_argument("--loss", help="identity losses, comma-separated (default multibatch); 'none' for distillation only")
    p.add_argument("--loss-weights", help="weights of the losses, comma-separated")
    p.add_argument("--teacher", help="distil from this teacher: 'dlib' or a registry name / .safetensors")
    p.add_argument("--distill", choices=["cosine", "l2"], help="distillation distance on normalised embeddings (default cosine)")
    p.add_argument("--distill-weight", type=float)
    p.add_argument("--pairwise-weight", type=float, help="weight of pairwise-similarity matching to the teacher (default 0)")
    p.add_argument("--distill-extra", type=int, help="extra random images per step for distillation only (default 0)")
    p.add_argument("--teacher-sources", help="comma-separated sources to compute teacher embeddings for (default: all of --data)")
    p.add_argument("--teacher-mode", choices=["clean", "views", "online"], help="teacher embeddings of clean crops (cached; default), of N cached augmented views per face, or computed online on every batch")
    p.add_argument("--teacher-views", type=int, help="augmented views cached per face with --teacher-mode views (default 4)")
    p.add_argument("--relational-weight", type=float, help="weight of relational distillation (batch similarity matrices; default 0)")
    p.add_argument("--feature-weight", type=float, help="weight of feature distillation through a 1x1 adapter (needs --teacher-mode online; default 0)")
    p.add_argument("--feature-stages", help="STUDENT_MODULE:TEACHER_MODULE for feature distillation (default: each network's last spatial map)")
    p.add_argument("--data", help="comma-separated sources (default celeba-299,yaleb-38,lfw-extra) or pre-aligned .npz face sets")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batches-per-epoch", type=int)
    p.add_argument("--time-budget", type=float, dest="time_budget_s", help="wall-clock budget in seconds: steps per epoch are sized to fit it, the LR schedule follows elapsed time, and training stops when it is spent")
    p.add_argument("-P", "--p", type=int, dest="p", help="identities per batch (default 16)")
    p.add_argument("-K", "--k", type=int, dest="k", help="images per identity (default 16)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="name written into the trained model's card")
    p.add_argument("--max-images", type=int, help="use at most N images per source (quick runs)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, history.json, curves.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.safetensors at the exact step it was saved")
    p.add_argument("--checkpoint-every", type=int, help="global steps between resumable states (default 100; also at every epoch end and on a stop)")
    p.add_argument("--stop-after-steps", type=int, help="end this sitting after N global steps (counted from the start of the run) with a resumable state")
    p.add_argument("--sitting-time", type=float, help="end this sitting after S seconds with a resumable state (the run's own --time-budget is unaffected)")
    p.add_argument("--no-sync-bn", action="store_true", help="under torchrun, keep per-process BatchNorm statistics (default: statistics over the global batch)")
    p.add_argument("--no-eval", action="store_true", help="skip the per-epoch LFW-dev accuracy")
    p.add_argument("--lfw-crops", help="pre-aligned LFW-dev pairs .npz (from a previous run's OUT/lfw_pairs.npz)")
    p.add_argument("--device", help="torch device (default cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run)


def load_recipe(name: str) -> dict:
    """A training recipe's [train] table by name (`default`: edgeface/configs/train/default.toml) or path."""
    from ..core.config import load_table

    body, path = load_table("train", name, section="train")
    unknown = set(body) - RECIPE_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {sorted(unknown)}; known: {sorted(RECIPE_KEYS)}")
    return body


def _split(v):
    if v is None or isinstance(v, list):
        return v
    return [s.strip() for s in str(v).split(",") if s.strip()]


def build_config(args):
    """The TrainConfig for a `train` command line: defaults, then the recipe, then the flags given. Raises ValueError
    for inconsistent settings (teacher mode without a teacher, nothing to train, loss weights not matching the losses, ...)."""
    from ..train.loop import TrainConfig

    recipe = load_recipe(args.recipe) if args.recipe else {}
    cfg = TrainConfig()
    for key, value in recipe.items():
        if key == "loss":
            cfg.losses = [] if value in ("none", []) else _split(value)
        elif key in ("data", "teacher_sources"):
            setattr(cfg, key, _split(value))
        else:
            setattr(cfg, key, value)
    for key in ("arch", "teacher", "distill", "distill_weight", "pairwise_weight", "distill_extra", "epochs", "batches_per_epoch", "p", "k", "optimizer", "lr", "weight_decay", "warmup_epochs", "seed", "name", "max_images", "time_budget_s",
                "teacher_mode", "teacher_views", "relational_weight", "feature_weight", "feature_stages", "checkpoint_every"):
        v = getattr(args, key)
        if v is not None:
            setattr(cfg, key, v)
    if args.loss is not None:
        cfg.losses = [] if args.loss == "none" else _split(args.loss)
    if args.loss_weights:
        cfg.loss_weights = [float(w) for w in _split(args.loss_weights)]
    if args.data:
        cfg.data = _split(args.data)
    if args.teacher_sources:
        cfg.teacher_sources = _split(args.teacher_sources)
    if args.no_augment:
        cfg.augment = False
    if args.no_eval:
        cfg.eval_lfw = False
    if args.device:
        cfg.device = args.device
    if args.no_sync_bn:
        cfg.sync_bn = False
    if cfg.teacher in ("", "none"):
        cfg.teacher = None
    if cfg.teacher_mode not in ("clean", "views", "online"):
        raise ValueError(f"teacher_mode must be clean, views or online, got {cfg.teacher_mode!r}")
    if cfg.teacher_mode != "clean" and not cfg.teacher:
        raise ValueError(f"--teacher-mode {cfg.teacher_mode} needs --teacher")
    if cfg.teacher_mode != "clean" and cfg.teacher == "dlib":
        raise ValueError("--teacher dlib (dlib's own CPU code) gives clean-crop embeddings only; use --teacher-mode clean, or the torch port (--teacher dlib_resnet) for views/online")
    if cfg.feature_weight and cfg.teacher_mode != "online":
        raise ValueError("--feature-weight needs --teacher-mode online (feature maps are not cached)")
    if not cfg.losses and not cfg.teacher:
        raise ValueError("nothing to train: give --loss and/or --teacher")
    if cfg.loss_weights and len(cfg.loss_weights) != len(cfg.losses):
        raise ValueError(f"--loss-weights has {len(cfg.loss_weights)} values for {len(cfg.losses)} losses")
    return cfg


def run(args) -> int:
    """`edgeface train`: run the training job; the main process prints the result summary as JSON. Returns 0."""
    from ..train.job import TrainJob, run_training

    result = run_training(TrainJob(config=build_config(args), out=args.out, resume=args.resume, lfw_crops=args.lfw_crops, quiet=args.quiet,
                                   threads=args.threads, stop_after_steps=args.stop_after_steps, sitting_s=args.sitting_time))
    if result.is_main:
        print(json.dumps(result.summary()))
    return 0
