"""Pruning masks: applied with torch.nn.utils.prune (so they hold during retraining), baked
into zero weights for saving/export, and stored beside the checkpoint.

A pruned checkpoint is an ordinary edgeface checkpoint whose pruned weights are exactly zero
(any tool, `edgeface eval`, export, reads it unchanged), plus a sidecar
`<name>.masks.safetensors` with one bool tensor per pruned weight (so a later retraining keeps
the same connections pruned even if a kept weight happens to be 0) and a per-layer sparsity
summary in the checkpoint's metadata.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from ..core.card import ModelCard

Masks = dict[str, torch.Tensor]  # conv module name -> bool mask shaped like its weight


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Re-parametrise each masked weight as weight_orig * weight_mask (torch.nn.utils.prune):
    gradients reach only kept connections, so retraining cannot revive a pruned one."""
    for name, mask in masks.items():
        mod = model.get_submodule(name)
        if prune.is_pruned(mod) and hasattr(mod, "weight_mask"):
            prune.remove(mod, "weight")
        if tuple(mask.shape) != tuple(mod.weight.shape):
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, weight is {tuple(mod.weight.shape)}")
        prune.custom_from_mask(mod, "weight", mask.to(mod.weight.device, torch.float32))


def bake_masks(model: nn.Module) -> None:
    """Make masking permanent: plain weights with zeros where pruned (for saving/export)."""
    for mod in model.modules():
        if hasattr(mod, "weight_mask") and hasattr(mod, "weight_orig"):
            prune.remove(mod, "weight")


def zero_masked(model: nn.Module, masks: Masks) -> None:
    """Set the masked-out weights of each masked layer to zero, in place."""
    with torch.no_grad():
        for name, mask in masks.items():
            w = model.get_submodule(name).weight
            w.mul_(mask.to(w.device, w.dtype))


def sparsity_table(model: nn.Module, masks: Masks) -> list[dict]:
    """Per Conv2d layer: weights, kept weights (from its mask, else the non-zero ones), sparsity and groups, as
    a list of dicts."""
    rows = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            total = mod.weight.numel()
            kept = int(masks[name].sum()) if name in masks else int((mod.weight != 0).sum())
            rows.append({"layer": name, "weights": total, "kept": kept, "sparsity": round(1 - kept / total, 4), "groups": mod.groups})
    return rows


def mask_file(checkpoint: str | os.PathLike) -> Path:
    """Path of the masks file stored beside a checkpoint: NAME.safetensors -> NAME.masks.safetensors."""
    p = Path(checkpoint)
    return p.with_name(p.name.removesuffix(".safetensors") + ".masks.safetensors")


def save_pruned(model: nn.Module, card: ModelCard, masks: Masks, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Checkpoint with zeroed pruned weights + mask sidecar + sparsity summary in metadata."""
    from safetensors.torch import save_file

    from ..models.checkpoints import save_checkpoint

    bake_masks(model)
    zero_masked(model, masks)
    summary = {"pruned_layers": {n: round(1 - float(m.float().mean()), 4) for n, m in masks.items()}, "mask_file": mask_file(path).name}
    out = save_checkpoint(model, card, path, extra={**(extra or {}), **summary})
    mf = mask_file(path)
    tmp = mf.with_name(mf.name + ".tmp")
    save_file({n: m.to(torch.bool).contiguous() for n, m in masks.items()}, str(tmp), metadata={"edgeface_masks_for": Path(path).name})
    os.replace(tmp, mf)
    return out


def load_pruned(path: str | os.PathLike) -> tuple[nn.Module, ModelCard, Masks]:
    """A pruned checkpoint and its masks (from the sidecar; without it, from the zero weights
    of the layers the metadata lists as pruned)."""
    from safetensors.torch import load_file

    from ..models.checkpoints import load_checkpoint, read_checkpoint

    model, card = load_checkpoint(path)
    _, _, extra = read_checkpoint(path)
    mf = mask_file(path)
    if mf.is_file():
        masks = {n: m.to(torch.bool) for n, m in load_file(str(mf)).items()}
    else:
        masks = {n: model.get_submodule(n).weight.detach() != 0 for n in extra.get("pruned_layers", {})}
    for n, m in masks.items():
        w = model.get_submodule(n).weight
        if tuple(m.shape) != tuple(w.shape):
            raise ValueError(f"{mf}: mask {n} {tuple(m.shape)} does not fit weight {tuple(w.shape)}")
    return model, card, masks
