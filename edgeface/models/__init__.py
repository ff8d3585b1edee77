"""Face embedding architectures, the registry and checkpoint I/O (training side: needs torch)."""
from __future__ import annotations

from ..card import ModelCard
from .mobilefacenet import MobileFaceNet
from .registry import build_from_card, get, names, register, register_arch

register_arch("mobilefacenet", lambda **kw: MobileFaceNet(input_size=tuple(kw.get("input_size", (112, 112))), embedding_size=kw.get("embedding_size", 128)))


def _build_pruned_mobilefacenet(**kw):
    # Channel-pruned MobileFaceNet (edgeface prune --level channel): per-bottleneck widths in
    # arch_kwargs["mid_channels"]. Imported lazily: the compress package imports this one.
    from ..compress.channel import build_pruned_mobilefacenet

    return build_pruned_mobilefacenet(**kw)


register_arch("mobilefacenet_pruned", _build_pruned_mobilefacenet)

register(
    ModelCard(
        name="mobilefacenet",
        arch="mobilefacenet",
        input_size=(112, 112),
        embedding_size=128,
        template="arcface_112x112",
        licence="architecture: Chen et al. 2018; untrained (train with `edgeface train`)",
        description="MobileFaceNet, ArcFace 112x112 crop, 128-d (untrained)",
        arch_kwargs={"input_size": [112, 112], "embedding_size": 128},
    )
)

__all__ = ["MobileFaceNet", "ModelCard", "build_from_card", "get", "names", "register", "register_arch"]
