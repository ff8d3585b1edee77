"""Connection (weight-level) pruning: the correlation method of Sun, Wang & Tang (CVPR 2016)
and the magnitude baseline, one layer (or group of layers) per iteration from the top,
retraining the whole network between iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..core.card import ModelCard
from .correlation import connection_correlations, top_down_order
from .masks import Masks, apply_masks, bake_masks


def _split_counts(k: int, keep: float, lam: float) -> tuple[int, int, int]:
    """(size of the stronger half, kept from it, kept from the weaker half) for k connections.

    The stronger half is the first ceil(k/2) by |r|. round(S*k) connections are kept in all,
    round(lam*S*k) from the stronger half; when a half is too small for its share the rest
    comes from the other half (only happens for lam*S > 1/2, e.g. S > 2/3 at lam = 0.75).
    """
    strong = (k + 1) // 2
    weak = k - strong
    n_keep = int(round(keep * k))
    n_strong = min(int(round(lam * keep * k)), strong, n_keep)
    n_weak = min(n_keep - n_strong, weak)
    n_strong = min(n_keep - n_weak, strong)
    return strong, n_strong, n_weak


def sample_connections(r: np.ndarray, keep: float, lam: float = 0.75, rng: np.random.Generator | None = None) -> np.ndarray:
    """The paper's sampling, per output neuron, for positive and negative correlations apart.

    r: (Cout, ...) correlation of each connection with its output neuron. For each output
    neuron j and each sign, the K connections of that sign are sorted by |r| and split into a
    stronger and a weaker half; lam*S*K are sampled at random (uniform, without replacement)
    from the stronger half and (1-lam)*S*K from the weaker. Connections with r == 0 (no
    defined correlation) count as positive. Returns a bool mask shaped like r.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep fraction S must be in (0, 1], got {keep}")
    if not 0 <= lam <= 1:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    rng = rng or np.random.default_rng(0)
    flat = r.reshape(r.shape[0], -1)
    mask = np.zeros(flat.shape, bool)
    for j in range(flat.shape[0]):
        for sign_idx in (np.flatnonzero(flat[j] >= 0), np.flatnonzero(flat[j] < 0)):
            k = len(sign_idx)
            if k == 0:
                continue
            order = sign_idx[np.argsort(-np.abs(flat[j, sign_idx]), kind="stable")]
            n_half, n_strong, n_weak = _split_counts(k, keep, lam)
            if n_strong:
                mask[j, rng.choice(order[:n_half], n_strong, replace=False)] = True
            if n_weak:
                mask[j, rng.choice(order[n_half:], n_weak, replace=False)] = True
    return mask.reshape(r.shape)


def magnitude_mask(weight: torch.Tensor, keep: float) -> torch.Tensor:
    """Keep the round(S*n) largest |w| of the layer (Han et al. 2015), the baseline."""
    w = weight.detach().abs().flatten()
    n_keep = max(1, int(round(keep * w.numel())))
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[torch.topk(w, n_keep).indices] = True
    return mask.reshape(weight.shape)


@dataclass
class PruneStep:
    layers: list[str]
    kept_fraction: dict[str, float]
    retrain_loss_first: float | None = None
    retrain_loss_last: float | None = None
    metrics: dict = field(default_factory=dict)


def layer_steps(model: nn.Module, layers_per_step: int | list[list[str]] = 1, include_stem: bool = True) -> list[list[str]]:
    """Top-down groups of prunable layers; 1 layer per step is the paper's schedule."""
    order = top_down_order(model)
    if not include_stem:
        order = [n for n in order if not n.startswith("stem")]
    if isinstance(layers_per_step, list):
        return layers_per_step
    return [order[i : i + layers_per_step] for i in range(0, len(order), layers_per_step)]


def prune_connections(
    model: nn.Module,
    card: ModelCard,
    stats_faces: np.ndarray,
    keep: float,
    method: str = "correlation",
    lam: float = 0.75,
    steps: list[list[str]] | None = None,
    retrain=None,
    seed: int = 0,
    batch_size: int = 64,
    on_step=None,
) -> tuple[Masks, list[PruneStep]]:
    """Sparsify `model` in place, step by step from the top, keeping fraction `keep` of each
    pruned layer's connections. `retrain(model, masks) -> losses` is called after every step
    (pass None to skip retraining). Returns the masks and a log of the steps."""
    from .finetune import batches

    if method not in ("correlation", "magnitude"):
        raise ValueError(f"unknown pruning method {method!r} (correlation | magnitude)")
    steps = steps or layer_steps(model)
    rng = np.random.default_rng(seed)
    masks: Masks = {}
    log: list[PruneStep] = []
    for layers in steps:
        if method == "correlation":
            apply_masks(model, masks) if masks else None
            corr = connection_correlations(model, layers, batches(stats_faces, card, batch_size))
            new = {n: torch.from_numpy(sample_connections(corr[n], keep, lam, rng)) for n in layers}
        else:
            bake_masks(model)
            new = {n: magnitude_mask(model.get_submodule(n).weight, keep) for n in layers}
        masks.update(new)
        apply_masks(model, masks)
        step = PruneStep(layers, {n: float(m.float().mean()) for n, m in new.items()})
        if retrain is not None:
            losses = retrain(model, masks)
            if losses:
                step.retrain_loss_first, step.retrain_loss_last = float(np.mean(losses[: max(1, len(losses) // 10)])), float(np.mean(losses[-max(1, len(losses) // 10) :]))
        log.append(step)
        if on_step:
            on_step(step, model, masks)
    bake_masks(model)
    with torch.no_grad():
        for n, m in masks.items():
            model.get_submodule(n).weight.mul_(m.to(torch.float32))
    return masks, log


def overall_sparsity(model: nn.Module, masks: Masks) -> dict:
    """Parameter counts after pruning: total, non-zero and pruned weights, and the kept fraction of the pruned
    layers and of all parameters."""
    total = sum(p.numel() for p in model.parameters())
    pruned = sum(int((~m).sum()) for m in masks.values())
    conv_total = sum(model.get_submodule(n).weight.numel() for n in masks)
    return {
        "params_total": total,
        "params_nonzero": total - pruned,
        "pruned_weights": pruned,
        "kept_fraction_of_pruned_layers": round(1 - pruned / max(conv_total, 1), 4),
        "kept_fraction_of_all_params": round(1 - pruned / total, 4),
    }


def nonzero_mflops(model: nn.Module, card: ModelCard, masks: Masks) -> float:
    """MACs per face if zero weights were skipped (what a sparse kernel could save): each
    conv's MACs scale with its kept fraction."""
    from ..models.complexity import count_mflops

    total = count_mflops(model, card.input_size)
    saved = 0.0
    sizes = {}

    def hook(m, a, out, name=None):
        sizes[name] = out.shape[2] * out.shape[3]

    hs = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: hook(m, a, o, n)) for n in masks]
    with torch.no_grad():
        was = model.training
        model.eval()
        model(torch.zeros(1, 3, *card.input_size))
        model.train(was)
    for h in hs:
        h.remove()
    for n, m in masks.items():
        saved += int((~m).sum()) * sizes[n] / 1e6
    return total - saved


def ceil_half(k: int) -> int:
    """Half of k, rounded up."""
    return math.ceil(k / 2)
