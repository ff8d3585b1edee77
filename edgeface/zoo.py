"""Turning what a user names on the command line into an embedder.

MODEL may be a registry name (`edgeface models`), an edgeface checkpoint (.safetensors with
its card), or a foreign PyTorch checkpoint (.ckpt/.pt/.pth: a known one is recognised by its
sha256, any other needs --arch/--input-size/--template).
"""
from __future__ import annotations

from pathlib import Path

from .core.card import ModelCard

TORCH_SUFFIXES = {".ckpt", ".pt", ".pth", ".tar"}


def load_torch_model(spec: str, arch: str | None = None, input_size: tuple[int, int] | None = None, template: str | None = None, embedding_size: int = 128,
                     allow_untrained: bool = False, card: str | ModelCard | None = None, weights: str | None = None):
    """Return (nn.Module in eval mode, ModelCard). `card` (a ModelCard or JSON path) and `weights`
    (.safetensors) are for foreign models: a module by import path, a .pt2 file."""
    from . import models
    from .models import foreign
    from .models.checkpoints import import_torch_checkpoint, load_checkpoint

    if foreign.is_foreign_torch(spec):
        return foreign.load_foreign_torch(spec, weights, card)
    if weights:
        raise ValueError(f"--weights is for a module given by import path (pkg.module:factory), not {spec}")
    path = Path(spec)
    if path.suffix == ".safetensors":
        return load_checkpoint(path)
    if path.suffix in TORCH_SUFFIXES:
        card = None
        if arch:
            size = tuple(input_size or (112, 112))
            card = ModelCard(
                name=path.stem,
                arch=arch,
                input_size=size,
                embedding_size=embedding_size,
                template=template or ("sphereface_112x96" if size == (112, 96) else "arcface_112x112"),
                licence="user-supplied weights",
                source=str(path),
                arch_kwargs={"input_size": list(size), "embedding_size": embedding_size},
            )
        model, card, _ = import_torch_checkpoint(path, card)
        return model, card
    if path.exists():
        raise ValueError(f"{spec}: unsupported model file type {path.suffix!r} (expected .safetensors, .ckpt/.pt/.pth, or a registry name)")
    entry = models.get(spec)
    if entry.weights:
        wpath = Path(entry.weights_path())
        if not wpath.is_absolute():
            wpath = Path(models.__file__).parent / wpath
        return load_checkpoint(wpath)
    if not allow_untrained:
        raise ValueError(f"model {spec!r} has no trained weights; pass a checkpoint file, or train one with `edgeface train`")
    return models.build_from_card(entry.card).eval(), entry.card


def load_embedder(spec: str, device: str | None = None, **kwargs):
    """A TorchEmbedder for a model spec (registry name or checkpoint, as load_torch_model takes) on `device`."""
    from .models.embedder import TorchEmbedder

    model, card = load_torch_model(spec, **kwargs)
    return TorchEmbedder(model, card, device=device)
