"""Saving and loading models with their cards, safely.

edgeface's own checkpoints are safetensors files whose metadata holds the model card:
no pickle is ever read. Foreign PyTorch checkpoints are opened with torch's weights-only
unpickler (tensors and plain containers only) and their tensors mapped onto our modules by
order and shape; a weights-only safetensors copy is cached outside the repository so the
foreign file is read once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..core.digest import file_sha256
from ..core.card import ModelCard
from ..core.cache import cache_dir
from . import registry

CARD_KEY = "edgeface_card"


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write weights + card (+ optional JSON-able extras such as pruning masks' summary)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {CARD_KEY: card.to_json(), "edgeface_version": __version__}
    if extra:
        meta["edgeface_extra"] = json.dumps(extra, sort_keys=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the real name
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelCard, dict]:
    """Read an edgeface .safetensors checkpoint: (state dict, ModelCard from its metadata, extra metadata dict).
    Raises FileNotFoundError for a missing file, ValueError naming the file when it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    card = _card_from_metadata(meta, path)
    extra = json.loads(meta["edgeface_extra"]) if "edgeface_extra" in meta else {}
    return state, card, extra


def read_checkpoint_card(path: str | os.PathLike) -> ModelCard:
    """The card in a checkpoint's metadata, without reading the weights."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    return _card_from_metadata(meta, path)


def _card_from_metadata(meta: dict, path) -> ModelCard:
    if CARD_KEY not in meta:
        raise ValueError(f"{path}: safetensors file has no edgeface model card in its metadata; pass --arch to load bare weights")
    return ModelCard.from_json(meta[CARD_KEY])


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ModelCard]:
    """The checkpoint's network (built from its card, weights loaded, eval mode) and its card; raises ValueError
    naming the file when the weights do not fit the architecture."""
    state, card, _ = read_checkpoint(path)
    model = registry.build_from_card(card)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit arch {card.arch!r} (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.eval(), card


def _find_state_dict(obj, path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in ("net_state_dict", "state_dict", "model_state_dict", "model", "net", "backbone"):
            if key in obj:
                return _find_state_dict(obj[key], path)
    raise ValueError(f"{path}: no state dict found (looked for a dict of tensors, or under net_state_dict/state_dict/model)")


def map_foreign_state_dict(model: nn.Module, foreign: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map another implementation's tensors onto `model` by order and shape.

    Architectures ported from other code keep the layer order but rename layers; we pair
    the i-th tensor of each side (BatchNorm's step counters aside) and insist every shape
    agrees, so a wrong architecture fails loudly instead of loading garbage.
    """
    ours = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    theirs = [(k.removeprefix("module."), v) for k, v in foreign.items() if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise ValueError(f"{source}: {len(theirs)} tensors do not match the {len(ours)} of our {type(model).__name__}")
    mapped = {}
    for (ko, vo), (kt, vt) in zip(ours, theirs):
        if tuple(vo.shape) != tuple(vt.shape):
            raise ValueError(f"{source}: tensor {kt} {tuple(vt.shape)} does not fit our {ko} {tuple(vo.shape)}")
        mapped[ko] = vt.to(vo.dtype)
    return mapped


@dataclass(frozen=True)
class KnownCheckpoint:
    sha256: str
    card: ModelCard


# Third-party checkpoints we know how to read. The weights are never shipped: users point at
# their own copy and we check it is byte-identical to the one the card describes.
KNOWN_CHECKPOINTS = [
    KnownCheckpoint(
        "e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
        ModelCard(
            name="mobilefacenet_casia_xiaoccer",
            arch="mobilefacenet",
            input_size=(112, 96),
            embedding_size=128,
            template="sphereface_112x96",
            color_order="RGB",
            mean=(127.5, 127.5, 127.5),
            std=(128.0, 128.0, 128.0),
            licence="none stated by its authors (Xiaoccer/MobileFaceNet_Pytorch): measurement only, do not redistribute",
            description="MobileFaceNet trained on CASIA-WebFace with ArcFace loss, 068.ckpt",
            source="github.com/Xiaoccer/MobileFaceNet_Pytorch model/best/068.ckpt",
            arch_kwargs={"input_size": [112, 96], "embedding_size": 128},
        ),
    ),
]


def import_torch_checkpoint(path: str | os.PathLike, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard, Path]:
    """Load a foreign .pt/.ckpt/.pth (weights-only unpickler), cache a safetensors copy.

    Without `card`, the file must be one of KNOWN_CHECKPOINTS (matched by sha256).
    Returns (model, card, path of the cached safetensors copy).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    digest = file_sha256(path)
    if card is None:
        known = {k.sha256: k.card for k in KNOWN_CHECKPOINTS}
        if digest not in known:
            raise ValueError(
                f"{path}: unknown checkpoint (sha256 {digest[:16]}…); pass --arch and --input-size so edgeface knows how to build it"
            )
        card = known[digest]
    cached = cache_dir("weights") / f"{card.name}-{digest[:12]}.safetensors"
    if cached.is_file():
        model, card = load_checkpoint(cached)
        return model, card, cached
    try:
        # weights_only=True: torch's restricted unpickler, which refuses arbitrary objects.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"{path}: cannot be read as a weights-only PyTorch checkpoint ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    model = registry.build_from_card(card)
    model.load_state_dict(map_foreign_state_dict(model, _find_state_dict(obj, path), str(path)), strict=False)
    model.eval()
    card = card.replace(source=card.source or str(path))
    save_checkpoint(model, card, cached, extra={"imported_from_sha256": digest})
    return model, card, cached
