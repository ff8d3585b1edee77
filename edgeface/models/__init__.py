"""Face embedding architectures, the registry and checkpoint I/O (training side: needs torch)."""
from __future__ import annotations

from ..card import ModelCard
from .mobilefacenet import MobileFaceNet
from .registry import build_from_card, get, names, register, register_arch

register_arch("mobilefacenet", lambda **kw: MobileFaceNet(input_size=tuple(kw.get("input_size", (112, 112))), embedding_size=kw.get("embedding_size", 128)))

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
