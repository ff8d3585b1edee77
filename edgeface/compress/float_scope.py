"""The int8 "keep in float" rule, in one place: which conv / linear layers of an int8 model compute
in float. Every quantizer (compress.quantize: NNCF on ONNX / OpenVINO, PT2E, QAT) reads its own
layers in execution order and asks FloatScope which of them to leave alone."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FloatScope:
    """Which conv / linear layers of an int8 model compute in float.

    first: the first layer, which sees raw pixels (OpenVINO, reference MobileFaceNet: min cosine
    0.967 with only the head float, 0.971 with the first conv too). last: the last `last` layers,
    whose rounding lands straight in the embedding (ONNX: min cosine 0.912 with the projection
    int8, 0.973 float; PT2E keeps three: expand 1x1, GDC, projection, compress.pt2e says why).
    Everything after the last layer (the L2 normalisation) is always float: see nncf_ignored_scope."""

    first: bool = True
    last: int = 1

    @classmethod
    def none(cls) -> "FloatScope":
        return cls(first=False, last=0)

    @classmethod
    def ends(cls, keep: bool = True, last: int = 1) -> "FloatScope":
        """The first and the last `last` layers (keep=True), or nothing (keep=False)."""
        return cls(first=True, last=last) if keep else cls.none()

    @classmethod
    def for_card(cls, card, default: "FloatScope") -> "FloatScope":
        """The card's own rule (ModelCard.int8_float_scope) when it has one, else the quantizer's
        `default`. dlib's ResNet ends in one 256x128 linear after the pool: PT2E's default of three
        float layers kept two 3x3 convs of its widest stage in float (dense TFLite int8 8.98 MB
        for 5.6 M parameters)."""
        spec = getattr(card, "int8_float_scope", None)  # validated by ModelCard: keys first / last only
        return cls(**spec) if spec else default

    def head(self, layers: list[str]) -> list[str]:
        return list(layers[:1]) if self.first and layers else []

    def tail(self, layers: list[str]) -> list[str]:
        return list(layers[len(layers) - min(self.last, len(layers)) :]) if self.last and layers else []

    def select(self, layers: list[str]) -> list[str]:
        """The names among `layers` (execution order) kept in float."""
        return list(dict.fromkeys(self.head(layers) + self.tail(layers)))


def torch_ignored_scope(module_names: list[str], float_scope: FloatScope):
    """NNCF's ignored scope on a torch model for the layers float_scope names (module paths in
    execution order). NNCF's torch graph names a conv call by its module path with "/" for ".",
    then the op: "embedding/conv/conv2d/0" for module "embedding.conv"."""
    import nncf

    keep = float_scope.select(module_names)
    scope = nncf.IgnoredScope(patterns=[f"^{re.escape(name.replace('.', '/'))}/" for name in keep]) if keep else None
    return scope, keep
