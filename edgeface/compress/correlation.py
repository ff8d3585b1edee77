"""Correlation between each connection's input and output neuron (Sun, Wang & Tang, CVPR 2016).

For a convolution with weight W[j, i, ky, kx], the connection (j, i, ky, kx) links output
neuron j at position p with input neuron i at position p + offset(ky, kx). Following the
paper, its correlation coefficient is computed over faces at each position of the feature
map and then averaged over positions (the weights are shared across positions). Positions
where either neuron is constant over the faces (zero padding, dead units) have no defined
correlation and are left out of the average; a connection with none left gets 0.

The output neuron's activation is the layer's output after BatchNorm and the non-linearity
(the ConvBNAct block's output, what the next layer sees); the input neuron's activation is
the convolution's input. Statistics are accumulated in float64 over batches, so any number
of faces fits in memory.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def prunable_convs(model: nn.Module) -> list[str]:
    """Names of the convolutions whose connections are pruned: all but depthwise ones.

    A depthwise filter has one input neuron per output neuron (3x3 taps of the same
    channel, or the 7x6 global depthwise 'GDC'): there is no set of input neurons to
    choose between, so these layers (3 % of MobileFaceNet's weights) are left dense.
    """
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]


def top_down_order(model: nn.Module) -> list[str]:
    """Prunable layers from the embedding (top) down to the stem, the paper's order."""
    return list(reversed(prunable_convs(model)))


def _activation_module(model: nn.Module, conv_name: str) -> nn.Module:
    """The module whose output is the conv's output neurons' activation (post BN + act)."""
    parent_name = conv_name.rpartition(".")[0]
    if not parent_name:
        return model.get_submodule(conv_name)
    parent = model.get_submodule(parent_name)
    if hasattr(parent, "conv") and parent.conv is model.get_submodule(conv_name) and hasattr(parent, "bn"):
        return parent
    return model.get_submodule(conv_name)


class CorrelationAccumulator:
    """Running sums for per-position correlations between a conv's inputs and outputs."""

    def __init__(self, conv: nn.Conv2d):
        if conv.groups != 1:
            raise ValueError(f"correlation statistics need a dense conv (groups=1), got groups={conv.groups}")
        self.conv = conv
        self.n = 0
        self.sx = self.sxx = self.sy = self.syy = self.sxy = None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        c = self.conv
        xu = F.unfold(x.double(), c.kernel_size, dilation=c.dilation, padding=c.padding, stride=c.stride)  # (N, Cin*kk, P)
        yf = y.double().flatten(2)  # (N, Cout, P)
        if xu.shape[2] != yf.shape[2]:
            raise ValueError(f"unfolded input has {xu.shape[2]} positions but output has {yf.shape[2]}")
        sums = (xu.sum(0), (xu * xu).sum(0), yf.sum(0), (yf * yf).sum(0), torch.einsum("nip,nop->poi", xu, yf))
        if self.sx is None:
            self.sx, self.sxx, self.sy, self.syy, self.sxy = sums
        else:
            for name, s in zip(("sx", "sxx", "sy", "syy", "sxy"), sums):
                getattr(self, name).add_(s)
        self.n += x.shape[0]

    def result(self, eps: float = 1e-8) -> np.ndarray:
        """(Cout, Cin, kh, kw) correlation coefficients averaged over valid positions."""
        if self.n < 2:
            raise ValueError("need activations of at least 2 faces to compute correlations")
        n = self.n
        mx, my = self.sx / n, self.sy / n  # (I, P), (O, P)
        vx = (self.sxx / n - mx * mx).clamp_min(0)
        vy = (self.syy / n - my * my).clamp_min(0)
        cov = self.sxy / n - my.T[:, :, None] * mx.T[:, None, :]  # (P, O, I)
        sdx, sdy = vx.sqrt().T, vy.sqrt().T  # (P, I), (P, O)
        denom = sdy[:, :, None] * sdx[:, None, :]
        valid = (sdy[:, :, None] > eps) & (sdx[:, None, :] > eps)
        r = torch.where(valid, cov / denom.clamp_min(eps * eps), torch.zeros_like(cov)).clamp(-1, 1)
        count = valid.sum(0)
        mean = r.sum(0) / count.clamp_min(1)
        c = self.conv
        return mean.reshape(c.out_channels, c.in_channels, *c.kernel_size).float().numpy()


def run_hooked(model: nn.Module, batches, handles: list) -> None:
    """One eval-mode pass of `model` over `batches` for the forward hooks in `handles`
    (already registered): the hooks are removed and the training flag restored afterwards,
    also when the pass fails."""
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def connection_correlations(model: nn.Module, layer_names: list[str], batches) -> dict[str, np.ndarray]:
    """Correlation of every connection of the named convs, from one pass over `batches`
    (an iterable of normalised (N, 3, H, W) float tensors)."""
    accs, handles, pending = {}, [], {}
    try:
        for name in layer_names:
            conv = model.get_submodule(name)
            accs[name] = CorrelationAccumulator(conv)

            def pre(mod, args, name=name):
                pending[name] = args[0]

            def post(mod, args, out, name=name):
                accs[name].add(pending.pop(name), out)

            handles.append(conv.register_forward_pre_hook(pre))
            handles.append(_activation_module(model, name).register_forward_hook(post))
    except BaseException:  # a wrong layer name: leave no hook behind on the caller's model
        for h in handles:
            h.remove()
        raise
    run_hooked(model, batches, handles)
    return {n: a.result() for n, a in accs.items()}


@torch.no_grad()
def channel_activations(model: nn.Module, module_name: str, batches, use_input: bool = True, max_samples: int = 200_000, seed: int = 0) -> torch.Tensor:
    """Activations of a module's input (or output) channels as (samples, C): every face at
    every position is one sample (sub-sampled to max_samples)."""
    chunks = []
    mod = model.get_submodule(module_name)

    def hook(m, args, out):
        t = args[0] if use_input else out
        chunks.append(t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).float())

    run_hooked(model, batches, [mod.register_forward_hook(hook)])
    a = torch.cat(chunks)
    if len(a) > max_samples:
        a = a[torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))[:max_samples]]
    return a
