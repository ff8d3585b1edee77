"""Bundles: a directory with the exported model file(s) and `edgeface.json`.

`edgeface.json` says everything a device needs to feed the model (input shape/dtype/layout,
colour order, whether normalisation is in the graph, alignment template and crop size),
what the output is, the similarity thresholds calibrated at FAR 1e-3 / 1e-4, quality-gate
thresholds, the sha256 of every model file, the source model and its hash, the parity
figures measured at export time, the source weights' licence, the kit version and the full
model card. It is validated against edgeface/schemas/bundle.schema.json.

load_bundle refuses (BundleError, a ValueError): a schema-invalid edgeface.json, a model
file whose sha256 differs from the recorded one, a bundle written by another major kit
version, and bundles whose export failed verification or whose engine was not built.
Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..card import ModelCard
from ..preprocess import check_faces, l2_normalize, normalize
from ..targets import target as lookup_target
from .backends import InferenceBackend, make_backend

BUNDLE_JSON = "edgeface.json"
SCHEMA_VERSION = 1
CONFORMANCE_DIR = "conformance"
RUNNABLE_STATUS = ("verified",)


class BundleError(ValueError):
    """A bundle that cannot be used, with the reason."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_schema() -> dict:
    from importlib import resources

    return json.loads(resources.files("edgeface").joinpath("schemas/bundle.schema.json").read_text())


def _minimal_check(meta: dict, schema: dict) -> list[str]:
    """Used only where jsonschema is not installed (small boards): required keys and top-level types."""
    errs = []
    types = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    for key in schema.get("required", []):
        if key not in meta:
            errs.append(f"missing required field {key!r}")
    for key, sub in schema.get("properties", {}).items():
        if key in meta and isinstance(sub.get("type"), str) and not isinstance(meta[key], types[sub["type"]]):
            errs.append(f"field {key!r} should be of type {sub['type']}")
        if key in meta and "enum" in sub and meta[key] not in sub["enum"]:
            errs.append(f"field {key!r} must be one of {sub['enum']}, got {meta[key]!r}")
    return errs


def validate_meta(meta: Any, where: str = BUNDLE_JSON) -> None:
    """Raise BundleError listing what is wrong with an edgeface.json document."""
    schema = load_schema()
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    try:
        import jsonschema
    except ImportError:
        errs = _minimal_check(meta, schema)
    else:
        validator = jsonschema.Draft202012Validator(schema)
        errs = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in sorted(validator.iter_errors(meta), key=lambda e: list(e.absolute_path))]
    if errs:
        shown = "; ".join(errs[:5]) + (f"; … {len(errs) - 5} more" if len(errs) > 5 else "")
        raise BundleError(f"{where} does not follow the bundle schema: {shown}")


def read_meta(bundle_dir: str | os.PathLike, validate: bool = True) -> dict:
    bundle_dir = Path(bundle_dir)
    meta_path = bundle_dir / BUNDLE_JSON if bundle_dir.is_dir() else bundle_dir
    if not meta_path.is_file():
        raise FileNotFoundError(f"{bundle_dir}: not a bundle (no {BUNDLE_JSON}); make one with `edgeface export`")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})") from None
    if validate:
        validate_meta(meta, str(meta_path))
    return meta


def _major(version: str) -> str:
    return str(version).split(".")[0]


def check_files(bundle_dir: Path, meta: dict) -> None:
    for name, digest in meta["files"].items():
        p = bundle_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{bundle_dir}: file entry {name!r} points outside the bundle")
        if not p.is_file():
            raise BundleError(f"{bundle_dir}: model file {name} listed in {BUNDLE_JSON} is missing")
        actual = file_sha256(p)
        if actual != digest:
            raise BundleError(
                f"{p}: sha256 {actual[:16]}… does not match {digest[:16]}… recorded in {BUNDLE_JSON}: the model file was altered "
                "or replaced after export; re-export it (or pass verify_hash=False only if you know why)"
            )


@dataclass
class Bundle:
    path: Path
    meta: dict
    card: ModelCard
    backend: str
    runner: InferenceBackend | None = field(default=None, repr=False)
    batch_size: int = 64

    @property
    def format(self) -> str:
        return self.meta["format"]

    @property
    def precision(self) -> str:
        return self.meta["precision"]

    @property
    def model_file(self) -> Path:
        return self.path / self.meta["model_file"]

    @property
    def thresholds(self) -> dict[str, float]:
        """Cosine-similarity thresholds at FAR 1e-3 and 1e-4 ({"1e-3": t, "1e-4": t})."""
        t = self.meta.get("thresholds") or {}
        return {k: float(v["threshold"]) for k, v in t.get("at_far", {}).items()}

    def codec_thresholds(self, codec: str) -> dict[str, float]:
        """Thresholds for a gallery storing templates in `codec`: the cosine ones for float32 /
        fp16 / int8 (their scores are cosines), the codec's own for Hamming codecs ({} when the
        bundle predates them)."""
        from .codecs import CODECS

        if codec not in CODECS or not CODECS[codec].hamming_scores:
            return self.thresholds
        own = ((self.meta.get("thresholds") or {}).get("codecs") or {}).get(codec) or {}
        return {k: float(v["threshold"]) for k, v in own.get("at_far", {}).items()}

    @property
    def quality(self) -> dict:
        return dict(self.meta.get("quality") or {})

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB aligned crops -> (N, D) float32 unit vectors."""
        # Normalising again is harmless when the graph already did it (export verification
        # checks that it did: output norms within 1e-2 of 1).
        return l2_normalize(self.raw_output(faces))

    def raw_output(self, faces: np.ndarray) -> np.ndarray:
        """The model's output as float32 (N, D), exactly as an app reading it would get it."""
        if self.runner is None:
            raise BundleError(f"{self.path}: bundle was opened without a runtime")
        faces = check_faces(faces, self.card)
        inp = self.meta["input"]
        if len(faces) == 0:
            return np.zeros((0, self.card.embedding_size), np.float32)
        if inp["normalization_in_graph"]:
            x = faces
        else:
            x = normalize(faces, self.card, inp["layout"])
        outs = []
        for i in range(0, len(x), self.batch_size):
            outs.append(np.asarray(self.runner.run(x[i : i + self.batch_size]), dtype=np.float32).reshape(min(self.batch_size, len(x) - i), -1))
        emb = np.concatenate(outs)
        if emb.shape[1] != self.card.embedding_size:
            raise BundleError(f"{self.model_file}: produced {emb.shape[1]}-d embeddings, {BUNDLE_JSON} says {self.card.embedding_size}")
        return emb

    def same_person(self, a: np.ndarray, b: np.ndarray, far: str = "1e-3") -> np.ndarray:
        """Decisions for embedding pairs at the bundle's calibrated threshold."""
        return np.sum(a * b, axis=-1) >= self.thresholds[far]


def load_bundle(path: str | os.PathLike, backend: str | None = None, threads: int = 0, verify_hash: bool = True, require_verified: bool = True) -> Bundle:
    """Open a bundle directory and its runtime. backend=None picks the table's backend for the format."""
    bundle_dir = Path(path)
    if not bundle_dir.is_dir():
        raise FileNotFoundError(f"{bundle_dir}: bundle directory not found")
    meta = read_meta(bundle_dir)
    if _major(meta["kit_version"]) != _major(__version__):
        raise BundleError(
            f"{bundle_dir}: written by edgeface {meta['kit_version']}, this is edgeface {__version__}; bundles are only read by the same "
            "major version — re-export the model with this version"
        )
    status = meta["status"]
    if require_verified and status not in RUNNABLE_STATUS:
        why = {
            "failed": f"its export failed verification ({meta.get('verification', {}).get('failures')})",
            "not-built": "its engine was not built on the export machine (see build settings in the bundle)",
            "not-verified": f"its model file was not run at export ({meta.get('verification', {}).get('reason', 'no reason recorded')})",
            "unverified": "it has not been verified yet",
        }.get(status, f"its status is {status!r}")
        raise BundleError(f"{bundle_dir}: refusing to load this bundle: {why}")
    if verify_hash:
        check_files(bundle_dir, meta)
    card = ModelCard.from_dict(meta["card"])
    tgt = lookup_target(meta["format"], meta["precision"])
    name = backend or tgt.backend
    runner = make_backend(name, bundle_dir / meta["model_file"], threads)
    return Bundle(bundle_dir, meta, card, name, runner)
