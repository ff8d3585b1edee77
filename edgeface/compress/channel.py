"""Channel (filter-level) pruning of a block's inner channels, rebuilt as a smaller dense network.

Two kinds of block have inner channels that can go without changing the block's interface:
MobileFaceNet's bottlenecks (the expansion channels, below) and the basic residual blocks of
dlib's ResNet (conv1's output channels = conv2's input channels; the residual stream keeps its
width). Each block is described by a :class:`Unit`: the conv that produces the channels and the
conv that consumes them; selection, masks and rebuilding all go through it.

In a bottleneck expand(1x1) -> depthwise(3x3) -> project(1x1), expansion channel c is the
c-th filter of `expand`, the c-th depthwise filter and the c-th input column of `project`.
Removing it removes all three, so the rebuilt network is genuinely smaller and faster with
ordinary dense kernels. Zeroing column c of `project` alone gives exactly the same outputs
(the channel then contributes nothing), which is the "masked" equivalent used in tests.

Selection from the correlation statistics of the expansion channels (what `project` sees,
every face at sampled positions being a sample):
  * informative: std of the channel's activation times the norm of its `project` column
    (its typical contribution to the block's output); low = uninformative;
  * redundant: max |correlation| with another channel still kept; high = redundant.
Channels are removed greedily, lowest score = informativeness x (1 - redundancy) first,
recomputing the redundancy against the channels still kept after each removal.
Baseline: L1 norm of each channel's `expand` filter (Li et al., "Pruning filters for
efficient ConvNets", 2017).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.card import ModelCard
from .correlation import run_hooked


@dataclass(frozen=True)
class Unit:
    """A prunable block: `producer` makes the inner channels, `consumer` reads them (paths
    relative to the block)."""

    block: str
    producer: str
    consumer: str


def units(model: nn.Module) -> list[Unit]:
    """The model's prunable blocks, input side first."""
    out = []
    for n, m in model.named_modules():
        if all(hasattr(m, a) for a in ("expand", "depthwise", "project")):
            out.append(Unit(n, "expand.conv", "project.conv"))
        elif all(isinstance(getattr(m, a, None), nn.Conv2d) for a in ("conv1", "conv2")) and isinstance(getattr(m, "bn1", None), nn.BatchNorm2d):
            out.append(Unit(n, "conv1", "conv2"))
    return out


def bottlenecks(model: nn.Module) -> list[str]:
    """Names of the blocks whose inner channels can be pruned (see :func:`units`)."""
    return [u.block for u in units(model)]


def mid_channels(model: nn.Module) -> list[int]:
    """Inner (mid) channel count of each prunable unit, in `units(model)` order."""
    return [model.get_submodule(f"{u.block}.{u.producer}").out_channels for u in units(model)]


@torch.no_grad()
def expansion_activations(model: nn.Module, batches, positions_per_face: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """(samples, C) activations at each bottleneck's project input, `positions_per_face`
    random positions per face, from one pass over `batches`."""
    gen = torch.Generator().manual_seed(seed)
    consumer = {u.block: u.consumer for u in units(model)}
    chunks: dict[str, list[torch.Tensor]] = {b: [] for b in consumer}
    hooks = []
    for b in chunks:
        def hook(m, args, out, b=b):
            x = args[0]  # (N, C, H, W)
            n, c, h, w = x.shape
            flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
            idx = torch.randint(0, h * w, (n, min(positions_per_face, h * w)), generator=gen)
            chunks[b].append(torch.gather(flat, 1, idx[:, :, None].expand(-1, -1, c)).reshape(-1, c).float())

        hooks.append(model.get_submodule(f"{b}.{consumer[b]}").register_forward_hook(hook))
    run_hooked(model, batches, hooks)
    return {b: torch.cat(v) for b, v in chunks.items()}


def greedy_select(informative: np.ndarray, corr: np.ndarray, n_keep: int) -> np.ndarray:
    """Indices kept after removing, one at a time, the channel with the lowest
    informative/median(informative) * (1 - max |corr| to another kept channel)."""
    c = len(informative)
    if not 1 <= n_keep <= c:
        raise ValueError(f"cannot keep {n_keep} of {c} channels")
    info = informative / max(float(np.median(informative)), 1e-12)
    a = np.abs(np.nan_to_num(corr, nan=0.0)).astype(np.float64)
    np.fill_diagonal(a, -np.inf)
    kept = np.ones(c, bool)
    while kept.sum() > n_keep:
        sub = np.where(kept[None, :], a, -np.inf)
        red = np.clip(sub.max(1), 0, 1)
        score = np.where(kept, info * (1 - red), np.inf)
        kept[int(np.argmin(score))] = False
    return np.flatnonzero(kept)


def select_channels(model: nn.Module, keep: float | dict[str, float], method: str = "correlation", activations: dict[str, torch.Tensor] | None = None,
                    min_channels: int = 8) -> dict[str, np.ndarray]:
    """Inner channels to keep per block: the same fraction `keep` in each, or {block: fraction}."""
    out = {}
    for u in units(model):
        b = u.block
        producer, consumer = model.get_submodule(f"{b}.{u.producer}"), model.get_submodule(f"{b}.{u.consumer}")
        c = producer.out_channels
        frac = keep[b] if isinstance(keep, dict) else keep
        n_keep = min(c, max(min_channels, int(round(frac * c))))
        if method == "magnitude":
            l1 = producer.weight.detach().abs().flatten(1).sum(1).numpy()
            out[b] = np.sort(np.argsort(-l1, kind="stable")[:n_keep])
        elif method == "correlation":
            if activations is None:
                raise ValueError("correlation channel selection needs activations (expansion_activations)")
            a = activations[b].double().numpy()
            std = a.std(0)
            col = consumer.weight.detach().transpose(0, 1).flatten(1).norm(dim=1).double().numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.corrcoef(a.T) if a.shape[0] > 1 else np.zeros((c, c))
            corr[~np.isfinite(corr)] = 0.0
            out[b] = greedy_select(std * col, corr, n_keep)
        else:
            raise ValueError(f"unknown channel selection method {method!r} (correlation | magnitude)")
    return out


def channel_masks(model: nn.Module, keep_idx: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Masks on each `project` weight that zero the removed channels' columns: the masked
    network computes exactly what the shrunk one does."""
    masks = {}
    consumer = {u.block: u.consumer for u in units(model)}
    for b, idx in keep_idx.items():
        w = model.get_submodule(f"{b}.{consumer[b]}").weight
        m = torch.zeros_like(w, dtype=torch.bool)
        m[:, torch.as_tensor(idx, dtype=torch.long)] = True
        masks[f"{b}.{consumer[b]}"] = m
    return masks


def _slice_bn(bn: nn.BatchNorm2d, idx: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum, affine=bn.affine, track_running_stats=bn.track_running_stats)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[idx])
            new.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[idx])
            new.running_var.copy_(bn.running_var[idx])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)


def _slice_act(act: nn.Module, idx: torch.Tensor) -> nn.Module:
    if isinstance(act, nn.PReLU) and act.num_parameters > 1:
        new = nn.PReLU(len(idx))
        with torch.no_grad():
            new.weight.copy_(act.weight[idx])
        return new
    return act


def _conv_like(conv: nn.Conv2d, cin: int, cout: int, groups: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups, conv.bias is not None, conv.padding_mode)


@torch.no_grad()
def shrink_bottlenecks(model: nn.Module, keep_idx: dict[str, np.ndarray]) -> nn.Module:
    """Physically remove the inner channels not in keep_idx (in place; returns model)."""
    kinds = {u.block: u.producer for u in units(model)}
    for b, idx in keep_idx.items():
        blk = model.get_submodule(b)
        idx = torch.as_tensor(np.sort(np.asarray(idx)), dtype=torch.long)
        k = len(idx)
        if kinds[b] == "conv1":  # residual basic block: conv1 -> bn1 -> relu -> conv2
            conv = _conv_like(blk.conv1, blk.conv1.in_channels, k, 1)
            conv.weight.copy_(blk.conv1.weight[idx])
            if blk.conv1.bias is not None:
                conv.bias.copy_(blk.conv1.bias[idx])
            blk.conv1, blk.bn1 = conv, _slice_bn(blk.bn1, idx)
            conv = _conv_like(blk.conv2, k, blk.conv2.out_channels, 1)
            conv.weight.copy_(blk.conv2.weight[:, idx])
            if blk.conv2.bias is not None:
                conv.bias.copy_(blk.conv2.bias)
            blk.conv2 = conv
            continue
        ex, dw, pj = blk.expand, blk.depthwise, blk.project
        conv = _conv_like(ex.conv, ex.conv.in_channels, k, 1)
        conv.weight.copy_(ex.conv.weight[idx])
        if ex.conv.bias is not None:
            conv.bias.copy_(ex.conv.bias[idx])
        ex.conv, ex.bn, ex.act = conv, _slice_bn(ex.bn, idx), _slice_act(ex.act, idx)
        conv = _conv_like(dw.conv, k, k, k)
        conv.weight.copy_(dw.conv.weight[idx])
        if dw.conv.bias is not None:
            conv.bias.copy_(dw.conv.bias[idx])
        dw.conv, dw.bn, dw.act = conv, _slice_bn(dw.bn, idx), _slice_act(dw.act, idx)
        conv = _conv_like(pj.conv, k, pj.conv.out_channels, 1)
        conv.weight.copy_(pj.conv.weight[:, idx])
        if pj.conv.bias is not None:
            conv.bias.copy_(pj.conv.bias)
        pj.conv = conv
    return model


def pruned_card(model: nn.Module, card: ModelCard, name: str, note: str) -> ModelCard:
    """Card of a channel-pruned model: the pruned architecture with its inner widths, measured params and MFLOPs,
    the new `name`, and `note` appended to the description."""
    from ..models.complexity import count_mflops, count_params

    kwargs = dict(card.arch_kwargs)
    if card.arch == "dlib_resnet":  # the ResNet builder takes inner widths itself
        kwargs["widths"], arch = mid_channels(model), "dlib_resnet"
    else:
        kwargs["mid_channels"], arch = mid_channels(model), "mobilefacenet_pruned"
    return card.replace(
        name=name,
        arch=arch,
        arch_kwargs=kwargs,
        params=count_params(model),
        mflops=round(count_mflops(model, card.input_size), 1),
        description=f"{card.description or card.name}; {note}".strip("; "),
    )
