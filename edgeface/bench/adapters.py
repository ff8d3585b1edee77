"""Open what `edgeface bench` is asked to measure: a bundle directory (through the runtime's
`load_bundle`, the code apps use) or a plain model file (.onnx, OpenVINO .xml, .tflite) through
the same runtime backends (edgeface.runtime.model_file.ModelFile), so models that did not come out
of `edgeface export` can be measured too, under the same settings as a bundle.

Torch-free: this runs on the device. A plain file needs a model card (how to feed it): a
`--card` JSON, `<model>.card.json` beside it, or an `edgeface.json` in its folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..core.card import ModelCard, read_card_file
from ..runtime.model_file import SUFFIX_BACKENDS, ModelFile


def resolve_threads(threads: int) -> int:
    """Inference threads to use: `threads` when positive, else every usable core (0 = all)."""
    from .machine import usable_cores

    return threads if threads and threads > 0 else usable_cores()


def find_card(model_path: Path, card_path: str | os.PathLike | None = None) -> ModelCard:
    """The model card for a plain model file: `card_path` if given, else MODEL.card.json or an edgeface.json beside
    the model. Raises FileNotFoundError for a missing `card_path`, ValueError for invalid JSON or when no card is found."""
    if card_path:
        return read_card_file(card_path)
    for cand in (model_path.with_suffix(".card.json"), model_path.parent / "edgeface.json"):
        if cand.is_file():
            return read_card_file(cand)
    raise ValueError(f"{model_path}: a plain model file needs a model card; pass --card CARD.json or put {model_path.with_suffix('.card.json').name} beside it")


def open_model(path: str | os.PathLike, backend: str | None = None, threads: int = 0, card: str | None = None):
    """A bundle directory (runtime API) or a plain model file (its runtime directly)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such bundle or model file")
    if p.is_dir():
        try:
            from ..runtime import load_bundle
            from ..runtime.bundle import read_meta
        except ImportError as exc:
            raise ValueError(f"{p}: is a bundle directory but edgeface.runtime is not available here ({exc})") from None
        # A not-verified bundle (Core ML, exported where it cannot run) is measured on the device it was made for.
        pending = read_meta(p)["status"] == "not-verified"
        return load_bundle(p, backend=backend, threads=resolve_threads(threads), require_verified=not pending)
    if p.suffix not in SUFFIX_BACKENDS:
        raise ValueError(f"{p}: unsupported model file {p.suffix!r}; expected a bundle directory or one of {sorted(SUFFIX_BACKENDS)}")
    return ModelFile(p, find_card(p, card), resolve_threads(threads))


def model_file_of(model) -> Path:
    """The file that holds the weights (what goes on the device), for its size."""
    if isinstance(model, ModelFile):
        return model.path
    meta = getattr(model, "meta", {}) or {}
    base = Path(getattr(model, "path", "."))
    for key in ("model_file", "file", "model"):
        name = meta.get(key)
        if isinstance(name, dict):
            name = name.get("file") or name.get("path")
        if isinstance(name, str) and (base / name).is_file():
            return base / name
    files = [f for f in base.iterdir() if f.suffix in (".onnx", ".xml", ".tflite", ".engine", ".plan")] if base.is_dir() else []
    if not files:
        raise ValueError(f"{base}: cannot find the model file of this bundle")
    return max(files, key=lambda f: f.stat().st_size)


def model_size_bytes(model) -> int:
    """Bytes on disk of what the device needs: every model file a bundle lists (an OpenVINO
    .xml with its .bin), or the plain file."""
    meta = getattr(model, "meta", {}) or {}
    base = Path(getattr(model, "path", "."))
    if isinstance(meta.get("files"), dict) and base.is_dir():
        from ..runtime.bundle import model_files

        return sum((base / name).stat().st_size for name in model_files(meta))  # a bundled detector is not the model
    f = model_file_of(model)
    size = f.stat().st_size
    if f.suffix == ".xml" and f.with_suffix(".bin").is_file():  # OpenVINO IR: weights live in the .bin
        size += f.with_suffix(".bin").stat().st_size
    return size
