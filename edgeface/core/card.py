"""Model cards: everything needed to feed a face embedder without guessing.

A card travels with every model (registry entry, checkpoint, exported bundle), so the
preprocessing that produced the reported accuracy is the preprocessing the device uses.
This module is numpy-free and torch-free: the on-device runtime reads cards too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

COLOR_ORDERS = ("RGB", "BGR", "GRAY")
# The tensor names of every exported face-embedding graph (uint8 faces in, embedding out).
INPUT_NAME = "faces"
OUTPUT_NAME = "embedding"


@dataclass(frozen=True)
class ModelCard:
    """How to feed a face embedder and what it returns.

    input_size is (height, width) of the aligned crop; pixels are normalised as
    (x - mean) / std per channel in `color_order`; `template` names an alignment template
    in :mod:`edgeface.core.align`.
    """

    name: str
    arch: str
    input_size: tuple[int, int]
    embedding_size: int
    template: str
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    licence: str = "unknown"
    description: str = ""
    source: str = ""
    params: int | None = None
    mflops: float | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    # The conv / linear layers an int8 export keeps in float, when this architecture needs its own
    # rule: {"first": bool, "last": int} (compress.float_scope.FloatScope). None: each quantizer's
    # default, measured on MobileFaceNet (PT2E keeps its last three layers: expand, GDC, projection).
    int8_float_scope: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.color_order not in COLOR_ORDERS:
            raise ValueError(f"card {self.name!r}: color_order must be one of {COLOR_ORDERS}, got {self.color_order!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"card {self.name!r}: input_size must be (height, width) > 0, got {self.input_size!r}")
        if self.embedding_size <= 0:
            raise ValueError(f"card {self.name!r}: embedding_size must be > 0, got {self.embedding_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"card {self.name!r}: mean/std need 3 values with std > 0, got {self.mean}/{self.std}")
        if self.int8_float_scope is not None:
            scope = self.int8_float_scope
            ok = isinstance(scope, dict) and not set(scope) - {"first", "last"}
            if ok:
                first, last = scope.get("first", True), scope.get("last", 1)
                ok = isinstance(first, bool) and isinstance(last, int) and not isinstance(last, bool) and last >= 0
            if not ok:
                raise ValueError(f"card {self.name!r}: int8_float_scope must be {{'first': bool, 'last': int >= 0}}, got {scope!r}")
        # Normalise containers so cards read back from JSON compare equal to the originals.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if d["int8_float_scope"] is None:  # cards without their own rule read and hash as before the field existed
            del d["int8_float_scope"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model card has unknown fields {sorted(unknown)}; expected a subset of {sorted(known)}")
        missing = {"name", "arch", "input_size", "embedding_size", "template"} - set(data)
        if missing:
            raise ValueError(f"model card is missing required fields {sorted(missing)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "ModelCard":
        return dataclasses.replace(self, **changes)


def read_card_file(path) -> ModelCard:
    """A model card from a JSON file: a bare card (`edgeface card new` writes one) or a bundle's
    edgeface.json (its "card" section). Raises FileNotFoundError / ValueError naming the file."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: card file not found")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a JSON model card ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: not a JSON model card (expected an object)")
    try:
        return ModelCard.from_dict(data.get("card", data) if isinstance(data.get("card"), dict) else data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None
