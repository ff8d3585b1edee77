"""Fold BatchNorm into the convolution / linear layer that feeds it (inference-time identity).

Quantizers then see one weight tensor per layer, the one that runs on the device (the
TFLite int8 path folds before PT2E quantization; litert-torch's conv+BN QAT pattern matcher
fails on the torchao we pin, so folding is also what QAT would need). Pairs are found by
running the network once and matching each BatchNorm's input tensor to the output tensor of a Conv2d/Linear, so no architecture needs
to name its layers in any particular way.
"""
from __future__ import annotations

import torch
from torch import nn

_LAYERS = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d)


def _run_hooked(net: nn.Module, sample: torch.Tensor, hooks: list) -> None:
    """One no-grad forward pass with the given forward hooks installed, then removed."""
    try:
        with torch.no_grad():
            net(sample)
    finally:
        for h in hooks:
            h.remove()


def execution_order(net: nn.Module, sample: torch.Tensor, types=_LAYERS) -> list[str]:
    """Names of the modules of `types` in the order a forward pass calls them."""
    order: list[str] = []
    _run_hooked(net, sample, [m.register_forward_hook(lambda mod, i, o, n=n: order.append(n)) for n, m in net.named_modules() if isinstance(m, types)])
    return order


def conv_bn_pairs(net: nn.Module, sample: torch.Tensor) -> list[tuple[str, str]]:
    """(layer name, batchnorm name) for every BatchNorm whose input is exactly a layer's output."""
    produced: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, _LAYERS):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: produced.__setitem__(id(o), n)))
        elif isinstance(m, _NORMS):
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: pairs.append((produced[id(i[0])], n)) if id(i[0]) in produced else None))
    _run_hooked(net, sample, hooks)
    return pairs


def fold_batchnorm(net: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, int]:
    """Fold in place (net is put in eval mode); returns (net, number of BatchNorms folded).
    BatchNorms that follow anything else (an activation, an add) are left as they are."""
    net.eval()
    modules = dict(net.named_modules())
    folded = 0
    for layer_name, bn_name in conv_bn_pairs(net, sample):
        layer, bn = modules[layer_name], modules[bn_name]
        if bn.running_var is None or not bn.track_running_stats:
            continue
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
        with torch.no_grad():
            layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            layer.bias = nn.Parameter(bias * scale + shift)
        parent, _, leaf = bn_name.rpartition(".")
        setattr(modules[parent] if parent else net, leaf, nn.Identity())
        folded += 1
    return net, folded
