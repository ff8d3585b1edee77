"""Retraining a pruned network by distillation from the dense original.

The paper retrains with the original identity-classification objective on its training
set. We have neither CASIA-WebFace nor its classifier head here, so the sparse network is
retrained to reproduce the dense model's normalised embeddings on aligned faces from the
shared training sets (CelebA-299, AAF-8k; never LFW): loss = 1 - cos(student, teacher).
BatchNorm running statistics are frozen (eval mode) because retraining runs are short and
small-batch, and the faces differ from the original training distribution; BN affine
parameters are still trained.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.card import ModelCard
from ..core.preprocess import normalize
from .masks import Masks, apply_masks


def to_tensor(faces: np.ndarray, card: ModelCard) -> torch.Tensor:
    """Aligned uint8 faces normalised as the card says, as a float32 (N, C, H, W) tensor."""
    return torch.from_numpy(normalize(faces, card))


def batches(faces: np.ndarray, card: ModelCard, batch_size: int = 64):
    """Yield the faces as normalised tensors of at most `batch_size` faces."""
    for i in range(0, len(faces), batch_size):
        yield to_tensor(faces[i : i + batch_size], card)


@torch.no_grad()
def embed(model: nn.Module, faces: np.ndarray, card: ModelCard, batch_size: int = 64) -> np.ndarray:
    """Embeddings of the faces in eval mode, no gradients: (N, D) float32 unit vectors ((0, D) for no faces)."""
    model.eval()
    out = [F.normalize(model(x), dim=1).numpy() for x in batches(faces, card, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, card.embedding_size), np.float32)


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def targets_from_teacher_view(jitter: bool, relation_weight: float, mixup: float) -> bool:
    """Whether `distill` with these options takes each step's targets from the teacher network's
    view of that step's inputs (so no stored teacher embeddings are needed)."""
    return jitter or relation_weight > 0 or mixup > 0


def distill(
    model: nn.Module,
    card: ModelCard,
    faces: np.ndarray,
    teacher: np.ndarray | None,
    masks: Masks | None = None,
    epochs: float = 1.0,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
    flip: bool = True,
    show_progress: bool = True,
    teacher_model: nn.Module | None = None,
    feature_weight: float = 0.0,
    jitter: bool = False,
    relation_weight: float = 0.0,
    mixup: float = 0.0,
    on_step=None,
) -> list[float]:
    """Retrain all weights of `model` (masked ones stay zero) towards `teacher` embeddings of
    `faces`. Returns the loss per step. Horizontal flips reuse the teacher embedding of the
    unflipped face (a face-recognition teacher is near flip-invariant), which doubles the
    variety of a small face set at no teacher cost.

    With `teacher_model` and `feature_weight` > 0 (models with ``forward_with_features``, whose
    stage outputs have the same shapes: a channel-pruned ResNet keeps its residual widths), the
    loss adds feature_weight x the mean over stages of the relative squared error between the
    student's and the teacher's stage outputs, computed on the same (flipped) batch.

    `jitter` (needs `teacher_model`) draws a new view of every face each step (geometry and
    photometry, `jitter_views`) and takes the target from the teacher's embedding of that very
    view, not from `teacher` (which may then be None): a long run on a few thousand faces then sees no face twice the same
    way. `relation_weight` adds W x the mean squared difference between the student's and the
    teacher's cosine-similarity matrices of the batch: verification is decided by cosines between
    faces, so the student learns the teacher's geometry between people as well as each point.
    `mixup` (needs `teacher_model`) replaces that fraction of each batch by blends of two of its
    faces, lambda ~ U(0, 1), the target being the teacher's embedding of the blend (function
    matching, Beyer et al. 2022, "Knowledge distillation: a good teacher is patient and
    consistent"): the student is asked to copy the teacher between faces too, which a few thousand
    real faces cannot cover; the rest of the batch stays real faces.
    `on_step(step, model)` is called after every optimiser step (checkpoints of a long run); it
    may evaluate or export the model, because the training state is set again after it."""
    teacher_view = targets_from_teacher_view(jitter, relation_weight, mixup)
    if teacher_view and teacher_model is None:
        raise ValueError("jitter, relation_weight and mixup need teacher_model: the targets come from the teacher's view of each face")
    if not 0.0 <= mixup <= 1.0:
        raise ValueError(f"mixup is the fraction of each batch that is blended, in [0, 1]; got {mixup}")
    use_features = teacher_model is not None and feature_weight > 0
    use_teacher_view = teacher_model is not None and teacher_view
    if teacher is None and not use_teacher_view:
        raise ValueError("teacher embeddings are needed unless the targets come from the teacher's view (jitter, relation_weight or mixup)")
    if teacher is not None and len(faces) != len(teacher):
        raise ValueError(f"{len(faces)} faces but {len(teacher)} teacher embeddings")
    if masks:
        apply_masks(model, masks)
    if use_teacher_view:
        teacher_model.eval()
    if use_features:
        if not (hasattr(model, "forward_with_features") and hasattr(teacher_model, "forward_with_features")):
            raise ValueError("feature distillation needs models with forward_with_features (dlib_resnet)")
        teacher_model.eval()
    rng = np.random.default_rng(seed)
    steps = max(1, int(round(epochs * len(faces) / batch_size)))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    target = None if teacher is None else torch.from_numpy(np.asarray(teacher, np.float32))

    def training_state():
        model.train()
        _freeze_bn(model)

    training_state()
    losses = []
    from ..core.progress import progress

    it = progress(range(steps), steps, "retrain", show_progress, unit="step")
    for step in it:
        idx = rng.choice(len(faces), min(batch_size, len(faces)), replace=False)
        x = faces[idx]
        if flip:
            flips = rng.random(len(idx)) < 0.5
            x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
        if jitter:
            x = jitter_views(x, rng)
        xt = to_tensor(np.ascontiguousarray(x), card)
        if mixup > 0:
            # blending the normalised tensors blends the pixels (the normalisation is affine)
            blend = rng.random(len(idx)) < mixup
            lam = torch.from_numpy(np.where(blend, rng.random(len(idx)), 1.0).astype(np.float32))[:, None, None, None]
            xt = lam * xt + (1 - lam) * xt[torch.from_numpy(rng.permutation(len(idx)))]
        t_emb = None if target is None else target[idx]
        if use_features:
            y, feats = model.forward_with_features(xt)
            with torch.no_grad():
                t_out, tfeats = teacher_model.forward_with_features(xt)
            feat_loss = torch.stack([((a - b) ** 2).mean() / (b**2).mean().clamp_min(1e-8) for a, b in zip(feats, tfeats)]).mean()
        else:
            y = model(xt)
            if use_teacher_view:
                with torch.no_grad():
                    t_out = teacher_model(xt)
        if use_teacher_view:
            t_emb = F.normalize(t_out.detach(), dim=1)
        s_emb = F.normalize(y, dim=1)
        loss = (1 - (s_emb * t_emb).sum(1)).mean()
        if use_features:
            loss = loss + feature_weight * feat_loss
        if relation_weight > 0:
            loss = loss + relation_weight * ((s_emb @ s_emb.T - t_emb @ t_emb.T) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, model)
            training_state()  # an evaluation or export in the callback leaves the model in eval mode
    model.eval()
    return losses


def jitter_views(faces: np.ndarray, rng: np.random.Generator, max_shift: float = 0.04, max_scale: float = 0.06,
                 max_degrees: float = 6.0, max_brightness: float = 20.0, max_contrast: float = 0.15) -> np.ndarray:
    """A new view of each aligned uint8 face: a small random similarity transform about the centre
    (what an imperfect detector and landmarker give a deployed model: shift up to `max_shift` of the
    side, scale ±`max_scale`, rotation ±`max_degrees`; borders replicated) and a random brightness /
    contrast change. Returns a new (N, H, W, C) uint8 array; the input is not changed."""
    import cv2

    n, h, w = faces.shape[:3]
    out = np.empty_like(faces)
    for i in range(n):
        angle = rng.uniform(-max_degrees, max_degrees)
        scale = 1 + rng.uniform(-max_scale, max_scale)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += rng.uniform(-max_shift, max_shift, 2) * (w, h)
        out[i] = cv2.warpAffine(np.ascontiguousarray(faces[i]), m, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE).reshape(faces[i].shape)
    gain = 1 + rng.uniform(-max_contrast, max_contrast, (n, 1, 1, 1))
    bias = rng.uniform(-max_brightness, max_brightness, (n, 1, 1, 1))
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((out - mean) * gain + mean + bias, 0, 255).astype(np.uint8)
