"""Parameter and multiply-accumulate counts, measured by running the model once."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements of every parameter tensor)."""
    return sum(p.numel() for p in model.parameters())


def count_mflops(model: nn.Module, input_size: tuple[int, int]) -> float:
    """Millions of multiply-accumulates for one face (the MobileNet papers' 'MFLOPs').

    torch's FlopCounterMode counts a multiply-add as 2 FLOPs; we halve it to match the
    convention in which MobileFaceNet is quoted at ~220 M.
    """
    # each module's own mode is restored, not the root's: model.train(True) would also switch a
    # network's frozen batch norms back to training (a distillation run counting MACs mid-way then
    # drifts their running statistics)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, *input_size))
    finally:
        for m, training in modes.items():
            m.training = training
    return counter.get_total_flops() / 2 / 1e6
