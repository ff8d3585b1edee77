"""Face embedding architectures, the registry and checkpoint I/O (training side: needs torch)."""
from __future__ import annotations

from pathlib import Path

from ..core.card import ModelCard
from .dlib_resnet import CARD as DLIB_RESNET_CARD
from .dlib_resnet import build_dlib_resnet, dlib_resnet_weights
from .lightcnn import LightCNN
from .mobilefacenet import MobileFaceNet, build_pruned_mobilefacenet
from .mobilenet import MobileNetV1
from .checkpoints import read_checkpoint_card
from .registry import build_from_card, get, names, register, register_arch

register_arch("mobilefacenet", lambda **kw: MobileFaceNet(input_size=tuple(kw.get("input_size", (112, 112))), embedding_size=kw.get("embedding_size", 128)))
# Channel-pruned MobileFaceNet (edgeface prune --level channel): per-bottleneck widths in arch_kwargs["mid_channels"].
register_arch("mobilefacenet_pruned", build_pruned_mobilefacenet)


def _untrained(name: str, arch: str, side: int, embedding_size: int, paper: str, description: str, **arch_kwargs) -> ModelCard:
    """The card of an architecture without weights (trained with `edgeface train`): square input on the ArcFace template."""
    return ModelCard(name=name, arch=arch, input_size=(side, side), embedding_size=embedding_size, template="arcface_112x112",
                     licence=f"architecture: {paper}; untrained (train with `edgeface train`)", description=description,
                     arch_kwargs={**arch_kwargs, "input_size": [side, side], "embedding_size": embedding_size})


register(_untrained("mobilefacenet", "mobilefacenet", 112, 128, "Chen et al. 2018", "MobileFaceNet, ArcFace 112x112 crop, 128-d (untrained)"))

register_arch("mobilenet_v1", lambda **kw: MobileNetV1(alpha=kw.get("alpha", 1.0), input_size=tuple(kw.get("input_size", (112, 112))), embedding_size=kw.get("embedding_size", 128)))
register_arch(
    "lightcnn",
    lambda **kw: LightCNN(depth=kw.get("depth", 9), input_size=tuple(kw.get("input_size", (112, 112))), embedding_size=kw.get("embedding_size", 256), mfm=kw.get("mfm", "2/1")),
)

# MobileNet v1: width alpha x resolution rho (the input side; the crop is the ArcFace
# template scaled to that side, so every variant sees the same face framing).
for _alpha in (1.0, 0.75, 0.5, 0.25):
    for _side in (112, 96, 80, 64):
        register(_untrained(f"mobilenet_v1_a{_alpha:g}_r{_side}", "mobilenet_v1", _side, 128, "Howard et al. 2017",
                            f"MobileNet v1, width {_alpha:g}, {_side}x{_side} input, 128-d (untrained)", alpha=_alpha))

for _depth in (9, 29):
    for _mfm, _suffix in (("2/1", ""), ("3/2", "_mfm32")):
        register(_untrained(f"lightcnn{_depth}{_suffix}", "lightcnn", 112, 256, "Wu et al. 2018",
                            f"Light CNN-{_depth}, MFM {_mfm}, 112x112 RGB, 256-d (untrained)", depth=_depth, mfm=_mfm))

# dlib's CC0 ResNet: weights converted on first use from the installed face-recognition-models
# package (nothing downloaded, nothing committed).
register_arch("dlib_resnet", build_dlib_resnet)
register(DLIB_RESNET_CARD, weights=dlib_resnet_weights)

# The edge model of issue 15: dlib's ResNet with its inner channels pruned in stages by correlation
# (`edgeface distill --recipe default-edge`, edgeface/train/staged.py) and retrained by distillation from the dense network. The weights are
# derived from the CC0 dlib model by this kit, so they ship in the package (fp16 storage: 3.3 MB;
# the network computes in fp32, and its int8 bundles are under 2 MB). Card from the file itself.
_EDGE_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "dlib_resnet_edge.safetensors"
_EDGE_CARD = read_checkpoint_card(_EDGE_WEIGHTS)
register(_EDGE_CARD, weights=str(_EDGE_WEIGHTS))

# `default`: the model edgeface ships, the edge model above (since 2026-12-03; LFW-dev 97.90 % fp32,
# int8 98.03 % on OpenVINO (1.9 MB) and 97.93 % on TFLite (1.8 MB) with the export recipes
# x86-openvino-int8-qat and android-tflite-int8-qat; docs/results/default-model.md). Before it: the dense dlib_resnet (98.63 %, but
# 5.5-9 MB as int8), and before that the MobileFaceNet trained here (84.4 % on LFW-dev, trained on
# non-commercial research data), kept only as history in benchmarks/results/train_report.md and
# reproduced by `edgeface train --recipe edgeface/configs/train/default.toml`. An alias: loading it gives
# the checkpoint's own card, so its bundles name the network they hold (dlib_resnet_edge).
register(
    _EDGE_CARD.replace(name="default", description="edgeface's default model (dlib_resnet_edge; int8 bundles: export recipes "
                       "x86-openvino-int8-qat, android-tflite-int8-qat): " + _EDGE_CARD.description),
    weights=str(_EDGE_WEIGHTS),
)

__all__ = ["LightCNN", "MobileNetV1", "MobileFaceNet", "ModelCard", "build_from_card", "get", "names", "register", "register_arch"]
