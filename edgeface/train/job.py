"""`edgeface train` as a library job: `run_training(TrainJob) -> TrainResult`.

The job holds the training configuration (edgeface.train.loop.TrainConfig: from a recipe and
flags) and what a sitting needs besides it (output folder, resume, LFW-dev crops, threads, when
to stop). `run_training` loads the faces (pre-aligned .npz sets, or named sources aligned once
and cached), the teacher (cached clean-crop embeddings, or a torch teacher in the loop) and the
LFW-dev monitor pairs, then runs the loop. Under torchrun every process calls it; only the main
process evaluates, writes and reports.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .loop import TrainConfig


@dataclass(kw_only=True)
class TrainJob:
    config: TrainConfig
    out: str
    resume: bool = False
    lfw_crops: str | None = None  # pre-aligned LFW-dev pairs .npz (a previous run's OUT/lfw_pairs.npz)
    quiet: bool = False
    threads: int = 0  # torch CPU threads (0: torch's choice)
    stop_after_steps: int | None = None
    sitting_s: float | None = None


@dataclass
class TrainResult:
    out: str
    history: list
    steps: list
    stopped: bool
    world_size: int
    is_main: bool

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {"out": self.out, "epochs": last.get("epoch"), "steps": len(self.steps), "loss": last.get("loss"),
                "lfw_dev_accuracy": last.get("lfw_accuracy"), "stopped": self.stopped, "world_size": self.world_size}


def load_training_data(cfg: TrainConfig, quiet: bool):
    """The training faces: pre-aligned .npz sets, or named sources / folders (aligned once, cached)."""
    import numpy as np

    from .data import AlignedSet, load_aligned, load_training_sources

    npz = [d for d in cfg.data if d.endswith(".npz")]
    if npz and len(npz) != len(cfg.data):
        raise ValueError("--data: give either pre-aligned .npz sets or named sources / folders, not both")
    if not npz:
        return load_training_sources(cfg.data, show_progress=not quiet, max_per_source=cfg.max_images)
    parts = [load_aligned(d) for d in npz]
    data = AlignedSet.concat(parts) if len(parts) > 1 else parts[0]
    if cfg.max_images:
        data = data.subset(np.arange(min(len(data), cfg.max_images)))
    return data


def run_training(job: TrainJob) -> TrainResult:
    """Run a training job: load the data and teacher (cached clean-crop embeddings or an online TorchTeacher), the
    LFW-dev pairs on the main process, then train. Returns the TrainResult; raises for an unknown architecture before
    loading anything."""
    import torch

    from .. import models
    from ..core import paths
    from ..eval.faces import crop_card
    from ..eval.verification import PairSet
    from .distributed import world_from_env
    from .loop import train
    from .teacher import TorchTeacher, teacher_embeddings

    cfg = job.config
    if job.threads:
        torch.set_num_threads(job.threads)
    models.get(cfg.arch)  # fail early on an unknown architecture
    main = world_from_env().is_main
    quiet = job.quiet or not main
    data = load_training_data(cfg, quiet)
    if main:
        print(f"training set: {len(data)} faces, {data.num_classes} identities from {', '.join(cfg.data)}", file=sys.stderr)
    teacher = teacher_emb = None
    if cfg.teacher and cfg.teacher_mode == "clean":
        teacher_emb = teacher_embeddings(cfg.teacher, data, show_progress=not quiet, sources=cfg.teacher_sources)
    elif cfg.teacher:
        teacher = TorchTeacher(cfg.teacher, device=cfg.device)
    lfw = None
    if cfg.eval_lfw and main:
        lfw = PairSet.from_npz(job.lfw_crops) if job.lfw_crops else PairSet.load(paths.lfw_dev(), crop_card(), show_progress=not quiet)
    r = train(cfg, data, job.out, teacher_emb, lfw, resume=job.resume, show_progress=not quiet, teacher=teacher,
              stop_after_steps=job.stop_after_steps, sitting_s=job.sitting_s)
    return TrainResult(r["out"], r["history"], r["steps"], r["stopped"], r["world_size"], main)
