"""The training loop: P x K batches of aligned crops, augmentation on the device, identity
losses + optional distillation, AdamW/SGD with warmup + cosine decay, per-epoch LFW-dev pair
accuracy, safetensors checkpoints with the card, resume, a training-curve PNG.

All crops live in one uint8 tensor on the training device and are augmented there, so a
GPU is never starved by a CPU data pipeline, and the 2-core CPU does no decoding per step.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.card import ModelCard
from ..eval.verification import PairSet
from .data import AlignedSet
from . import distributed
from .losses import DistillationLoss, FeatureDistillationLoss, RelationalDistillationLoss, build_loss
from .samplers import PKSampler


@dataclass
class TrainConfig:
    arch: str = "mobilefacenet"  # a registry name (its card says input size, template...)
    losses: list[str] = field(default_factory=lambda: ["multibatch"])  # identity losses, summed
    loss_weights: list[float] | None = None
    teacher: str | None = None  # "dlib" or a registry name / checkpoint
    distill: str = "cosine"  # cosine | l2
    distill_weight: float = 1.0
    pairwise_weight: float = 0.0
    distill_extra: int = 0  # extra random (teacher-only) images per step, e.g. AAF-8k singletons
    teacher_sources: list[str] | None = None  # sources distilled (default: all of `data`)
    data: list[str] = field(default_factory=lambda: ["celeba-299", "yaleb-38", "lfw-extra"])
    epochs: int = 10
    batches_per_epoch: int | None = None
    p: int = 16
    k: int = 16
    optimizer: str = "adamw"  # adamw | sgd
    lr: float | None = None  # default 2e-3 (AdamW) or 0.1 (SGD)
    weight_decay: float | None = None  # default 0.05 (AdamW) or 5e-4 (SGD)
    warmup_epochs: float = 1.0
    augment: bool = True
    seed: int = 0
    name: str | None = None  # card name of the trained model
    eval_lfw: bool = True
    device: str | None = None
    amp: bool = True  # bf16 autocast on CUDA
    max_images: int | None = None  # per source, for quick runs
    center_teacher: bool = True  # subtract the teacher's mean embedding before distilling (see train())
    bn_recalibration_batches: int = 16  # clean batches to re-estimate BatchNorm statistics before each eval/save
    time_budget_s: float | None = None  # wall-clock budget: the LR schedule follows elapsed time and training stops at it
    # Distillation that uses the whole teacher (edgeface/train/losses.py, docs/training.md):
    teacher_mode: str = "clean"  # clean: cached embeddings of the un-augmented crops (the only mode of dlib's CPU code);
    #   views: cached embeddings of `teacher_views` fixed augmented views per face; online: the teacher runs on every batch
    teacher_views: int = 4
    relational_weight: float = 0.0  # student vs teacher within-batch cosine-similarity matrices
    feature_weight: float = 0.0  # 1x1-adapter feature distillation onto a teacher stage (online mode only)
    feature_stages: str | None = None  # "student_module:teacher_module" (default: each net's last spatial map)
    checkpoint_every: int = 100  # global steps between resumable states (also at every epoch end and on a stop)
    sync_bn: bool = True  # BatchNorm statistics over the global batch under torchrun (SyncBatchNorm on CUDA, CrossRankBatchNorm on CPU)


# ---------------------------------------------------------------------------- augmentation


class FaceAugment:
    """Face-appropriate augmentation on uint8 NHWC batches on any device: horizontal flip,
    small scale (+-8 %) / shift (+-5 %) / rotation (+-8 deg), brightness/contrast/saturation,
    occasional Gaussian blur and grayscale. No vertical flips or large crops: faces are
    aligned, and the model will only ever see aligned faces."""

    def __init__(self, p_flip=0.5, scale=0.08, shift=0.05, rotate_deg=8.0, color=0.25, p_blur=0.15, p_gray=0.1):
        self.p_flip, self.scale, self.shift, self.rotate = p_flip, scale, shift, math.radians(rotate_deg)
        self.color, self.p_blur, self.p_gray = color, p_blur, p_gray

    NUM_PARAMS = 10  # uniform draws per face: flip, scale, rotation, tx, ty, brightness, contrast, saturation, gray, blur

    def draw(self, n: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
        """(n, NUM_PARAMS) uniform [0, 1) draws that fully determine n faces' augmentations.

        Separate from `apply` so that a view can be re-made exactly: the distributed loop
        draws for the global batch and applies each rank's rows, and the teacher-view cache
        stores the draws of each cached view instead of the augmented pixels."""
        return torch.rand(n, self.NUM_PARAMS, device=device, generator=generator)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (N, 3, H, W) float in [0, 255]. Returns the same shape."""
        return self.apply(x, self.draw(x.shape[0], generator, x.device))

    def apply(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float in [0, 255]; u: (N, NUM_PARAMS) draws from `draw`."""
        n, dev = x.shape[0], x.device
        u = u.to(dev)
        col = lambda j: u[:, j]  # noqa: E731
        img = lambda j: u[:, j].view(n, 1, 1, 1)  # noqa: E731
        flip = col(0) < self.p_flip
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        s = 1 + (col(1) * 2 - 1) * self.scale
        a = (col(2) * 2 - 1) * self.rotate
        tx, ty = (col(3) * 2 - 1) * self.shift * 2, (col(4) * 2 - 1) * self.shift * 2
        theta = torch.stack([torch.stack([torch.cos(a) / s, -torch.sin(a) / s, tx], 1), torch.stack([torch.sin(a) / s, torch.cos(a) / s, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        c = self.color
        bright = 1 + (img(5) * 2 - 1) * c
        contrast = 1 + (img(6) * 2 - 1) * c
        sat = 1 + (img(7) * 2 - 1) * c
        gray = (x * torch.tensor([0.299, 0.587, 0.114], device=dev)[None, :, None, None]).sum(1, keepdim=True)
        x = gray + (x - gray) * sat
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        x = x * bright
        gray = (x * torch.tensor([0.299, 0.587, 0.114], device=dev)[None, :, None, None]).sum(1, keepdim=True)
        x = torch.where((col(8) < self.p_gray)[:, None, None, None], gray.expand_as(x), x)
        blur = (col(9) < self.p_blur).nonzero(as_tuple=True)[0]
        if len(blur):
            k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=dev)
            k = (k[:, None] * k[None, :]) / 256.0
            w = k[None, None].repeat(3, 1, 1, 1)
            # only the faces drawn for blurring (p_blur ~15 %): the same values as blurring the whole
            # batch and selecting, at a seventh of the cost (the blur was 40 % of an augmentation call)
            x = x.index_copy(0, blur, F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="reflect"), w, groups=3))
        return x.clamp(0, 255)


def to_model_input(x: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """(N, 3, H, W) float RGB 0-255 at the crop size -> the card's input (size, colour order, mean/std)."""
    h, w = card.input_size
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    if card.color_order == "BGR":
        x = x.flip(1)
    elif card.color_order == "GRAY":
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device)[None, :, None, None]).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    mean = torch.tensor(card.mean, device=x.device, dtype=x.dtype)[None, :, None, None]
    std = torch.tensor(card.std, device=x.device, dtype=x.dtype)[None, :, None, None]
    return (x - mean) / std


class DecomposedPReLU(nn.Module):
    """nn.PReLU computed as relu(x) - a * relu(-x), holding the same `weight` Parameter.

    Same values and state-dict keys as the nn.PReLU it replaces; used only while training,
    because ATen's PReLU backward kernel took 26 % of a MobileFaceNet step on the 2-core CPU
    (channels_last), and this form raised the training rate from 12 to 17 images/s."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.weight.view(1, -1, *([1] * (x.dim() - 2))) if self.weight.numel() > 1 else self.weight
        return F.relu(x) - a * F.relu(-x)


def decompose_prelu(module: nn.Module) -> int:
    """Swap every nn.PReLU in `module` for DecomposedPReLU in place; returns how many."""
    n = 0
    for name, child in module.named_children():
        if isinstance(child, nn.PReLU):
            setattr(module, name, DecomposedPReLU(child))
            n += 1
        else:
            n += decompose_prelu(child)
    return n


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, crops: torch.Tensor, card: ModelCard, batches: int = 16, batch: int = 64, seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running mean/var as a plain average over `batches`
    clean (un-augmented) training batches, in train mode without gradients.

    Why: with AdamW at 2e-3 the features feeding the embedding BN drift faster than the
    running averages (momentum 0.1) follow; the BN then divides a stale mean by a small batch
    std. Measured on the default recipe after 210 steps: cosine to the teacher 0.66 in train
    mode but 0.02 in eval mode, 0.61 after this recalibration. Returns the number of BN layers."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or batches <= 0:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the batches below
    model.train()
    g = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(batches):
        idx = torch.randint(0, len(crops), (min(batch, len(crops)),), generator=g).to(crops.device)
        x = to_model_input(crops[idx].float(), card).contiguous(memory_format=torch.channels_last)
        model(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)
    return len(bns)


def crops_to_tensor(crops: np.ndarray, device) -> torch.Tensor:
    """(N, H, W, 3) uint8 crops as a uint8 (N, 3, H, W) tensor on `device` (a permuted view of the NHWC data)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2)  # uint8 NCHW view


# ---------------------------------------------------------------------------- LFW-dev monitor


@torch.no_grad()
def embed_tensor(model: nn.Module, crops: np.ndarray, card: ModelCard, device, batch: int = 512) -> np.ndarray:
    """Embeddings of uint8 crops in eval mode, no gradients, in batches of `batch`: (N, D) float32 unit vectors."""
    model.eval()
    outs = []
    for i in range(0, len(crops), batch):
        x = crops_to_tensor(crops[i : i + batch], device).float()
        outs.append(F.normalize(model(to_model_input(x, card)).float(), dim=1).cpu().numpy())
    return np.concatenate(outs)


def pair_accuracy(model: nn.Module, pairs: PairSet, card: ModelCard, device) -> dict:
    """Verification accuracy (mean and std over folds) and AUC of the model on pre-aligned pairs."""
    d = pairs.report(embed_tensor(model, pairs.crops, card, device))
    return {"accuracy": d["accuracy_mean"], "accuracy_std": d["accuracy_std"], "auc": d["auc"]}


# ---------------------------------------------------------------------------- checkpoints / resume


STATE_VERSION = 2  # 1: epoch-level (optimizer + loss modules); 2: + model, RNGs, sampler, position in the epoch


def save_training_state(path: Path, optimizer: torch.optim.Optimizer, loss_modules: nn.Module, meta: dict, model: nn.Module | None = None, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Everything needed to continue a run at the exact step, without pickle: tensors (model,
    loss modules, optimizer moments, RNG states) in safetensors, the rest (sampler state,
    counters, history, config) as JSON in its metadata. Written atomically (tmp + rename),
    so an interruption while saving leaves the previous state intact."""
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {f"loss.{k}": v.detach().cpu().contiguous() for k, v in loss_modules.state_dict().items()}
    if model is not None:
        out.update({f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    out.update({k: v.detach().cpu().contiguous() for k, v in (tensors or {}).items()})
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for pid, st in opt["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                out[f"opt.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = float(v.item() if torch.is_tensor(v) else v)
    info = {"state_version": STATE_VERSION, "param_groups": opt["param_groups"], "scalars": scalars, **meta}
    tmp = path.with_name(path.name + ".tmp")
    save_file(out, str(tmp), metadata={"edgeface_training_state": json.dumps(info)})
    os.replace(tmp, path)


def load_training_state(path: Path, optimizer: torch.optim.Optimizer, loss_modules: nn.Module, model: nn.Module | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore optimizer, loss modules and (when the state holds it) the model in place;
    returns (JSON info, the other tensors such as RNG states)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if "edgeface_training_state" not in meta:
        raise ValueError(f"{path}: not an edgeface training state")
    info = json.loads(meta["edgeface_training_state"])
    tensors = load_file(str(path))
    loss_modules.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("loss.")})
    if model is not None and any(k.startswith("model.") for k in tensors):
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for pid, sc in info["scalars"].items():
        for name, v in sc.items():
            state.setdefault(int(pid), {})[name] = torch.tensor(v)
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    rest = {k: v for k, v in tensors.items() if not k.startswith(("loss.", "model.", "opt."))}
    return info, rest


def plot_curves(history: list[dict], png: str | os.PathLike, title: str) -> None:
    """Plot the training losses and LFW-dev accuracy per epoch from the history to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({k for h in history for k in h if k.startswith("loss")}):
        ax[0].plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    acc = [100 * h["lfw_accuracy"] if "lfw_accuracy" in h else np.nan for h in history]
    ax[1].plot(ep, acc, marker="o", color="C3")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("LFW-dev pair accuracy (%)")
    ax[1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- training


def _progress(total: int, desc: str, enabled: bool):
    from ..core.progress import quiet

    if not enabled or quiet():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=2.0)


def _time_one_step(model, loss_modules, crops, labels, card, cfg, device, steps: int = 6) -> float:
    """Seconds per training step (forward + backward at the real batch size), measured on
    copies of the weights so that the run itself is unaffected."""
    import copy

    m = copy.deepcopy(model).train()
    lm = copy.deepcopy(loss_modules).train()
    n = cfg.p * cfg.k + cfg.distill_extra
    idx = torch.randint(0, len(crops), (n,), device=device)
    aug = FaceAugment()
    times = []
    for i in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.time()
        x = to_model_input(aug(crops[idx].float()), card)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            e = m(x)
        loss = e.float().pow(2).mean() + sum(p.sum() * 0 for p in lm.parameters())
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.time() - t0)
    del m, lm
    return float(np.median(times[2:])) * 1.15  # + optimizer step and loss terms


class _StopRequest:
    """SIGINT / SIGTERM during training: finish the current step, save a resumable state, return."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True
        print("\nstop requested: saving a resumable state after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


def _centre(emb: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return F.normalize(emb - mean, dim=-1)


def train(
    cfg: TrainConfig,
    data: AlignedSet,
    out_dir: str | os.PathLike,
    teacher_emb: np.ndarray | None = None,
    lfw: PairSet | None = None,
    resume: bool = False,
    show_progress: bool = True,
    teacher=None,
    stop_after_steps: int | None = None,
    sitting_s: float | None = None,
) -> dict:
    """Train and write OUT/last.safetensors (weights + card, at each epoch end),
    state.safetensors (resume at the exact step), history.json (per-epoch records and the
    per-step losses) and curves.png. No "best epoch" is kept: the LFW-dev monitor is for
    watching, and picking epochs on it would tune to the evaluation set.

    teacher_emb: (N, D) teacher embeddings of the clean crops (teacher_mode "clean");
    teacher: a TorchTeacher for teacher_mode "views" / "online" (and feature distillation).
    stop_after_steps / sitting_s: end this sitting after that many global steps / seconds
    with a resumable state (so does SIGINT/SIGTERM); `resume=True` continues it exactly.
    Under torchrun (WORLD_SIZE > 1) each process trains its share of every global batch
    (edgeface/train/distributed.py); only rank 0 evaluates and writes files."""
    from .. import models
    from ..models.checkpoints import save_checkpoint
    from ..models.complexity import count_mflops, count_params

    world = distributed.world_from_env()
    if cfg.device:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", world.local_rank if world.distributed else 0)
    else:
        device = torch.device("cpu")
    if device.type == "cuda" and world.distributed and device.index is None:
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    world = distributed.init(world, device)
    main = world.is_main
    show_progress = show_progress and main
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    entry = models.get(cfg.arch)
    base = entry.card
    model = models.build_from_card(base)
    teacher_label = cfg.teacher or (teacher.spec if teacher is not None else None)
    card = base.replace(
        name=cfg.name or f"{cfg.arch}-{'+'.join(cfg.losses)}{'-' + Path(teacher_label).stem if teacher_label else ''}",
        params=count_params(model),
        mflops=round(count_mflops(model, base.input_size), 1),
        licence="weights: trained by edgeface on CelebA/Extended Yale B/AAF/LFW-extra faces (non-commercial research data); code Apache-2.0",
        description=f"{base.arch} trained with {'+'.join(cfg.losses) or 'no identity loss'}{' + distillation from ' + teacher_label if teacher_label else ''}",
        source="edgeface train",
    )
    mode = cfg.teacher_mode
    if mode not in ("clean", "views", "online"):
        raise ValueError(f"teacher_mode must be clean, views or online, got {mode!r}")
    if mode == "clean":
        if teacher_emb is None and cfg.teacher:
            raise ValueError("config names a teacher but no teacher embeddings were given")
        if teacher_emb is not None and len(teacher_emb) != len(data):
            raise ValueError(f"teacher embeddings ({len(teacher_emb)}) do not match the training set ({len(data)})")
        if cfg.feature_weight > 0:
            raise ValueError("feature distillation needs the teacher in the loop: teacher_mode = 'online'")
    else:
        if teacher is None:
            raise ValueError(f"teacher_mode {mode!r} runs a torch teacher (a registry name or checkpoint, e.g. dlib_resnet); dlib's own CPU code only gives clean-crop embeddings (teacher_mode 'clean')")
        if mode == "views" and cfg.feature_weight > 0:
            raise ValueError("feature distillation needs the teacher in the loop: teacher_mode = 'online'")
        if mode == "views" and cfg.teacher_views < 1:
            raise ValueError(f"teacher_views must be >= 1, got {cfg.teacher_views}")
    has_teacher = teacher_emb is not None if mode == "clean" else teacher is not None
    teacher_size = (teacher_emb.shape[1] if mode == "clean" else teacher.embedding_size) if has_teacher else None

    weights = cfg.loss_weights or [1.0] * len(cfg.losses)
    ident_losses = nn.ModuleList([build_loss(n, base.embedding_size, data.num_classes) for n in cfg.losses])
    distill = DistillationLoss(base.embedding_size, teacher_size, cfg.distill, cfg.pairwise_weight) if has_teacher and cfg.distill_weight > 0 else None
    relational = RelationalDistillationLoss() if has_teacher and cfg.relational_weight > 0 else None
    feature = None
    student_stage = None
    if cfg.feature_weight > 0:
        from .teacher import resolve_stage

        s_name, t_name = (cfg.feature_stages.split(":", 1) if cfg.feature_stages else (None, None))
        student_stage, s_shape = resolve_stage(model, base.input_size, s_name or None)
        if t_name and teacher.stage != t_name or teacher.stage is None:
            teacher.stage, teacher.stage_shape = resolve_stage(teacher.model, teacher.card.input_size, t_name or None)
            dict(teacher.model.named_modules())[teacher.stage].register_forward_hook(teacher._keep)
        feature = FeatureDistillationLoss(s_shape[0], teacher.stage_shape[0])
        if show_progress:
            print(f"feature distillation: student {student_stage} {s_shape} -> teacher {teacher.stage} {teacher.stage_shape}", file=sys.stderr)
    loss_modules = nn.ModuleDict({"ident": ident_losses, **({"distill": distill} if distill is not None else {}), **({"feature": feature} if feature is not None else {})})
    model.to(device)
    loss_modules.to(device)
    model = model.to(memory_format=torch.channels_last)  # faster on CUDA and on oneDNN CPUs alike
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if world.distributed and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        decompose_prelu(model)
        if world.distributed and cfg.sync_bn:  # SyncBatchNorm is GPU-only; this is its CPU twin
            model = distributed.CrossRankBatchNorm.convert(model)
    student_map: list[torch.Tensor | None] = [None]  # the student stage's output of the latest training forward
    if student_stage is not None:

        def keep_student_map(_m, _i, o):
            if torch.is_grad_enabled():  # not during evaluation / BN recalibration
                student_map[0] = o

        dict(model.named_modules())[student_stage].register_forward_hook(keep_student_map)

    crops = crops_to_tensor(data.crops, device)
    labels_t = torch.from_numpy(data.labels).to(device)
    augment = FaceAugment() if cfg.augment or mode == "views" else None
    teacher_t = None  # (N, D) clean, or (N, V, D) views: centred unit teacher embeddings
    view_draws = None  # (N, V, P) augmentation draws of the cached views
    teacher_mean = None  # online: the teacher's mean embedding on clean crops (for centring)
    if mode == "clean" and teacher_emb is not None:
        if cfg.center_teacher:
            # dlib's descriptors share one dominant direction (mean cosine 0.84 between different
            # people on our training faces), so cosine distillation of raw embeddings mostly teaches
            # that direction (measured: student/teacher pair-similarity correlation 0.16) and fights
            # the identity loss. Distil the centred, re-normalised embeddings instead.
            finite = np.isfinite(teacher_emb[:, 0])
            centred = teacher_emb.copy()
            centred[finite] -= teacher_emb[finite].mean(0, keepdims=True)
            centred[finite] /= np.maximum(np.linalg.norm(centred[finite], axis=1, keepdims=True), 1e-8)
            teacher_emb = centred.astype(np.float32)
        teacher_t = torch.from_numpy(teacher_emb).to(device)
        teacher_rows = np.flatnonzero(np.isfinite(teacher_emb[:, 0]))
    elif mode == "views":
        from .teacher import teacher_view_embeddings

        for turn in ((0,) if not world.distributed else (0, 1)):  # rank 0 computes and caches; the others then read the cache
            if (turn == 0) == main:
                emb_v, draws_v = teacher_view_embeddings(teacher, data, cfg.teacher_views, augment, seed=cfg.seed, show_progress=show_progress)
            if world.distributed:
                torch.distributed.barrier()
        teacher_t = torch.from_numpy(emb_v).to(device)
        if cfg.center_teacher:
            teacher_t = _centre(teacher_t, teacher_t.reshape(-1, teacher_t.shape[-1]).mean(0))
        view_draws = torch.from_numpy(draws_v)
        teacher_rows = np.arange(len(data))
    elif mode == "online":
        teacher_rows = np.arange(len(data))
        if cfg.center_teacher:
            pick = np.random.default_rng(cfg.seed).choice(len(data), min(len(data), 1024), replace=False)
            teacher_mean = torch.cat([teacher(crops[torch.from_numpy(np.sort(pick[i : i + 128])).to(device)].float())[0] for i in range(0, len(pick), 128)]).mean(0)
    else:
        teacher_rows = np.zeros(0, np.int64)
    if cfg.losses:
        sampler = PKSampler(data.labels, cfg.p, cfg.k, batches_per_epoch=cfg.batches_per_epoch, seed=cfg.seed)
    else:
        sampler = None  # distillation only: uniform random batches
    untrained_acc = None  # the untrained net's LFW-dev accuracy, measured once
    if cfg.time_budget_s and not resume:
        per_step = _time_one_step(model, loss_modules, crops, labels_t, card, cfg, device)
        eval_s = 0.0
        if lfw is not None and main:
            t0 = time.time()
            untrained_acc = pair_accuracy(model, lfw, card, device)
            eval_s = time.time() - t0
        fit = int((cfg.time_budget_s / cfg.epochs - eval_s - 1.0) / per_step)
        cfg.batches_per_epoch = int(distributed.from_main([max(5, fit)], world, device)[0])
        if sampler is not None:
            sampler.batches_per_epoch = cfg.batches_per_epoch
        if show_progress:
            print(f"time budget {cfg.time_budget_s:.0f} s: {per_step * 1000:.0f} ms/step, eval {eval_s:.1f} s -> {cfg.batches_per_epoch} steps/epoch", file=sys.stderr)
    steps_per_epoch = len(sampler) if sampler is not None else (cfg.batches_per_epoch or max(1, len(data) // (cfg.p * cfg.k)))
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    params = list(model.parameters()) + list(loss_modules.parameters())
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr or 2e-3, weight_decay=0.05 if cfg.weight_decay is None else cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr or 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4 if cfg.weight_decay is None else cfg.weight_decay)
    else:
        raise ValueError(f"optimizer must be adamw or sgd, got {cfg.optimizer!r}")
    base_lrs = [g["lr"] for g in opt.param_groups]

    def lr_factor(progress: float) -> float:
        """Linear warmup then cosine decay over progress in [0, 1] (steps done / total steps,
        or elapsed / budget under a wall-clock budget, so a slowed machine still anneals)."""
        w = warmup / max(1, total_steps)
        if progress < w:
            return max(progress / w, 1.0 / max(1, warmup))
        t = (progress - w) / max(1e-9, 1 - w)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1000)
    history: list[dict] = []
    step_log: list[dict] = []
    budget_used = 0.0  # seconds of the wall-clock budget spent before a resume
    epoch, it0, sums, count = 0, 0, {}, 0
    best = -1.0
    state_file = out / "state.safetensors"
    if resume:
        if not state_file.is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no state.safetensors)")
        from ..models.checkpoints import load_checkpoint

        info, extra_t = load_training_state(state_file, opt, loss_modules, model)
        if info.get("state_version", 1) < 2:  # epoch-level state of earlier versions: weights from last.safetensors
            model.load_state_dict(load_checkpoint(out / "last.safetensors")[0].state_dict())
            epoch = info["epoch"]
            if sampler is not None:
                sampler.rng = np.random.default_rng(cfg.seed + epoch)
            gen.manual_seed(cfg.seed + epoch)
            rng = np.random.default_rng(cfg.seed + 1000 + epoch)
        else:
            epoch, it0, sums, count = info["epoch"], info["step_in_epoch"], info["sums"], info["count"]
            steps_per_epoch, total_steps, warmup = info["steps_per_epoch"], info["total_steps"], info["warmup"]
            step_log = info.get("steps", [])
            if sampler is not None:
                sampler.load_state_dict(info["sampler"])
            rng.bit_generator.state = info["numpy_rng"]
            gen.set_state(extra_t["rng.augment"])
            torch.set_rng_state(extra_t["rng.torch"])
        history, best = info["history"], info.get("best", -1.0)
        budget_used = float(info.get("seconds", 0.0))
        if show_progress:
            print(f"resumed {out} at epoch {epoch + 1}, step {it0} of {steps_per_epoch}", file=sys.stderr)

    ddp = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = cfg.amp and device.type == "cuda"
    if lfw is not None and main and epoch == 0 and it0 == 0 and not history:
        acc0 = untrained_acc or pair_accuracy(model, lfw, card, device)
        history.append({"epoch": 0, "lfw_accuracy": acc0["accuracy"], "lfw_accuracy_std": acc0["accuracy_std"], "lfw_auc": acc0["auc"]})
        if show_progress:
            print(f"epoch 0 (untrained): LFW-dev {100 * acc0['accuracy']:.2f} %", file=sys.stderr)

    t_start = time.time()

    def spent() -> float:  # seconds of the wall-clock budget used, resumed runs included
        return time.time() - t_start + budget_used

    def save_state() -> None:
        if not main:
            return
        meta = {
            "epoch": epoch, "step_in_epoch": it0, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup": warmup,
            "sums": sums, "count": count, "history": history, "steps": step_log, "best": best, "config": asdict(cfg),
            "seconds": round(spent(), 3), "sampler": sampler.state_dict() if sampler is not None else None, "numpy_rng": rng.bit_generator.state,
            "world_size": world.size,
        }
        save_training_state(state_file, opt, loss_modules, meta, model=model, tensors={"rng.augment": gen.get_state(), "rng.torch": torch.get_rng_state()})

    def write_history(final_card) -> None:
        (out / "history.json").write_text(json.dumps({"card": final_card.to_dict(), "config": asdict(cfg), "world_size": world.size, "history": history, "steps": step_log}, indent=2))

    loss_params = [p for p in loss_modules.parameters() if p.requires_grad]
    out_of_time = False
    stopped = None  # why this sitting ended early (resumable), if it did
    sitting_t0 = time.time()
    with _StopRequest() as stop_request:
        while epoch < cfg.epochs and not out_of_time and stopped is None:
            model.train()
            loss_modules.train()
            if it0 == 0:
                sums, count = {}, 0
            epoch_t0 = time.time()
            bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", show_progress)
            if bar is not None:
                bar.update(it0)
            while it0 < steps_per_epoch:
                step = epoch * steps_per_epoch + it0
                elapsed_sitting = time.time() - sitting_t0
                interrupt = stop_request.requested or (stop_after_steps is not None and step >= stop_after_steps) or (sitting_s is not None and elapsed_sitting >= sitting_s)
                progress = spent() / cfg.time_budget_s if cfg.time_budget_s else step / max(1, total_steps)
                if world.distributed:  # rank 0's clock decides for everyone
                    progress, interrupt = distributed.from_main([progress, float(interrupt)], world, device)
                if cfg.time_budget_s and progress >= 1.0:
                    out_of_time = True
                    break
                if interrupt:
                    stopped = "signal" if stop_request.requested else "stop_after_steps" if stop_after_steps is not None and step >= stop_after_steps else "sitting_time"
                    break
                for g, lr0 in zip(opt.param_groups, base_lrs):
                    g["lr"] = lr0 * lr_factor(progress)
                if it0 == 0 and sampler is not None:
                    sampler.start_epoch()  # here, after the stop check, so a state saved at an epoch boundary has not drawn it yet
                # The global batch: identical on every rank (same sampler, RNGs and draws).
                idx = sampler.next_batch() if sampler is not None else rng.choice(teacher_rows, cfg.p * cfg.k, replace=False)
                n_ident = len(idx)
                if cfg.distill_extra and has_teacher:
                    idx = np.concatenate([idx, rng.choice(teacher_rows, cfg.distill_extra, replace=False)])
                n_all = len(idx)
                draws = augment.draw(n_all, gen, device) if augment is not None and mode != "views" else None
                views = None
                if mode == "views":
                    views = torch.randint(0, cfg.teacher_views, (n_all,), generator=gen, device=device).cpu()
                    draws = view_draws[torch.from_numpy(np.asarray(idx)), views].to(device)
                # This rank's rows: its share of the identity rows and of the extra rows.
                if world.distributed:
                    a, b = distributed.shard_rows(n_ident, world, "P x K batch"), distributed.shard_rows(n_all - n_ident, world, "distill-extra batch")
                    local = np.r_[np.arange(n_ident)[a], n_ident + np.arange(n_all - n_ident)[b]]
                    order = np.concatenate([np.r_[np.arange(n_ident)[distributed.shard_rows(n_ident, distributed.World(r, world.size))], n_ident + np.arange(n_all - n_ident)[distributed.shard_rows(n_all - n_ident, distributed.World(r, world.size))]] for r in range(world.size)])
                    unshuffle = torch.from_numpy(np.argsort(order)).to(device)
                else:
                    local, unshuffle = np.arange(n_all), None
                idx_t = torch.from_numpy(np.asarray(idx)).to(device)
                x = crops[idx_t[torch.from_numpy(local).to(device)]].float()
                if draws is not None:
                    x = augment.apply(x, draws[torch.from_numpy(local).to(device)])
                t_local = t_map = None
                if mode == "online" and has_teacher:
                    t_local, t_map = teacher(x)
                    if teacher_mean is not None:
                        t_local = _centre(t_local, teacher_mean)
                xin = to_model_input(x, card).contiguous(memory_format=torch.channels_last)
                student_map[0] = None
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    emb_local = ddp(xin)
                emb_local = emb_local.float()
                emb = distributed.gather_rows(emb_local, world)
                if unshuffle is not None:
                    emb = emb[unshuffle]
                terms = {}
                lab = labels_t[idx_t[:n_ident]]
                for name, w, lm in zip(cfg.losses, weights, ident_losses):
                    terms[f"loss_{name}"] = w * lm(emb[:n_ident], lab)
                if has_teacher:
                    if mode == "clean":
                        t_rows = teacher_t[idx_t]
                    elif mode == "views":
                        t_rows = teacher_t[idx_t, views.to(device)]
                    else:
                        t_rows = distributed.gather_rows(t_local, world, grad=False)
                        if unshuffle is not None:
                            t_rows = t_rows[unshuffle]
                    # Rows without a teacher embedding (NaN: source not distilled) are left out.
                    has_t = torch.isfinite(t_rows[:, 0])
                    if bool(has_t.any()):
                        if distill is not None:
                            terms["loss_distill"] = cfg.distill_weight * distill(emb[has_t], t_rows[has_t])
                        if relational is not None:
                            terms["loss_relational"] = cfg.relational_weight * relational(emb[has_t], t_rows[has_t])
                if feature is not None:
                    terms["loss_feature"] = cfg.feature_weight * feature(student_map[0].float(), t_map)
                loss = sum(terms.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1} step {it0}; lower --lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_([p.grad for p in loss_params if p.grad is not None], world)
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                logged = np.array([float(v.detach()) for v in terms.values()] + [float(loss.detach())])
                if world.distributed and feature is not None:  # the feature term is per rank
                    logged = distributed.mean_over_ranks(logged, world, device)
                for k, v in zip([*terms, "loss"], logged):
                    sums[k] = sums.get(k, 0.0) + float(v)
                step_log.append({"step": step + 1, "loss": float(logged[-1]), "lr": opt.param_groups[0]["lr"]})
                count += 1
                it0 += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and it0 < steps_per_epoch:
                    save_state()
            if bar is not None:
                bar.close()
            if stopped is not None:
                break
            if count == 0:  # the budget ran out exactly at an epoch boundary
                break
            step_s = (time.time() - epoch_t0) / count
            rec = {"epoch": epoch + 1, "steps": count, **{k: v / max(1, count) for k, v in sums.items()}, "lr": opt.param_groups[0]["lr"], "seconds": round(spent(), 1)}
            eval_t0 = time.time()
            if main:  # rank 0's BatchNorm statistics are the ones saved (and DDP broadcasts them)
                recalibrate_batchnorm(model, crops, card, cfg.bn_recalibration_batches, seed=cfg.seed + epoch)
            if lfw is not None and main:
                acc = pair_accuracy(model, lfw, card, device)
                rec.update(lfw_accuracy=acc["accuracy"], lfw_accuracy_std=acc["accuracy_std"], lfw_auc=acc["auc"])
            history.append(rec)
            epoch, it0 = epoch + 1, 0
            left_epochs = cfg.epochs - epoch
            if cfg.time_budget_s and left_epochs > 0 and not out_of_time:
                # Re-size the remaining epochs from the measured step and eval times, so the whole
                # budget is used (the up-front estimate was 30 % pessimistic on the 2-core CPU).
                left_s = cfg.time_budget_s - spent()
                steps_per_epoch = max(1, int((left_s / left_epochs - (time.time() - eval_t0) - 1.0) / step_s))
                steps_per_epoch = int(distributed.from_main([steps_per_epoch], world, device)[0])
                if sampler is not None:
                    sampler.batches_per_epoch = steps_per_epoch
            if show_progress:
                msg = f"epoch {epoch}/{cfg.epochs}: loss {rec['loss']:.4f}"
                if "lfw_accuracy" in rec:
                    msg += f", LFW-dev {100 * rec['lfw_accuracy']:.2f} %"
                print(msg, file=sys.stderr)
            final_card = card.replace(description=card.description + f"; {epoch} epochs")
            if main:
                extra = {"config": asdict(cfg), "epoch": epoch, "lfw_dev_accuracy_monitor": rec.get("lfw_accuracy")}
                save_checkpoint(model, final_card, out / "last.safetensors", extra=extra)
                best = max(best, rec.get("lfw_accuracy", -rec["loss"]))
                save_state()
                write_history(final_card)
                plot_curves(history, out / "curves.png", final_card.name)
    if stopped is not None:
        save_state()
        if main:
            write_history(card.replace(description=card.description + f"; stopped in epoch {epoch + 1} at step {it0}"))
            if show_progress:
                print(f"stopped ({stopped}) at epoch {epoch + 1}, step {it0}: continue with --resume", file=sys.stderr)
    distributed.finish(world)
    model.eval()
    return {"card": card.to_dict(), "history": history, "steps": step_log, "out": str(out), "stopped": stopped, "world_size": world.size}
