"""Bundles: a directory with the exported model file(s) and `edgeface.json`.

`edgeface.json` says everything a device needs to feed the model (input shape/dtype/layout,
colour order, whether normalisation is in the graph, alignment template and crop size),
what the output is, the similarity thresholds calibrated at FAR 1e-3 / 1e-4, quality-gate
thresholds, the sha256 of every model file, the source model and its hash, the parity
figures measured at export time, the source weights' licence, the kit version and the full
model card, and the sha256 of every conformance file. It is validated against
edgeface/schemas/bundle.schema.json plus the rules in edgeface.runtime.manifest.

Integrity: `edgeface.json.sha256` (sha256sum format) holds the digest of edgeface.json's bytes;
since edgeface.json holds the hash of every other file (model_file must be one of `files`),
that one digest covers the whole bundle. It is a checksum, not a signature: it stops a
corrupted, half-copied or hand-edited bundle, not someone who can rewrite both files; the
semantic rules and the load-time self-test (run_self_test) are the second line.

load_bundle refuses with BundleError (a ValueError) whose `.kind` names the rule broken;
docs/runtime.md "Bundle refusal rules" lists them. Torch-free.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from dataclasses import fields as _fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core.digest import file_sha256
from ..core.card import ModelCard
from ..core.preprocess import check_faces, l2_normalize, normalize
from ..core.targets import target as lookup_target
from . import manifest as M
from .backends import BackendError, InferenceBackend, make_backend

BUNDLE_JSON = "edgeface.json"
MANIFEST_DIGEST_FILE = "edgeface.json.sha256"
SCHEMA_VERSION = 1
CONFORMANCE_DIR = "conformance"
RUNNABLE_STATUS = ("verified",)


class BundleError(ValueError):
    """A bundle that cannot be used, with the reason; `kind` is one of manifest.KINDS."""

    def __init__(self, message: str, kind: str = M.SCHEMA):
        super().__init__(message)
        self.kind = kind


class BundleNotFoundError(BundleError, FileNotFoundError):
    """No bundle directory, or no edgeface.json in it (kind "not_found")."""

    def __init__(self, message: str):
        BundleError.__init__(self, message, M.NOT_FOUND)


def table_enums() -> dict[str, list[str]]:
    """The schema's `format` and `precision` values as the target table gives them (edgeface.core.targets,
    in table order): the table is their one source; the shipped schema file repeats them for tools outside
    the kit, and tests/test_bundle.py fails when the two differ."""
    from ..core.targets import TARGETS

    return {"format": list(dict.fromkeys(t.format for t in TARGETS)), "precision": list(dict.fromkeys(t.precision for t in TARGETS))}


def load_schema() -> dict:
    """The edgeface.json JSON Schema shipped in the package (schemas/bundle.schema.json), as a dict, its
    `format` and `precision` enums taken from the target table."""
    from importlib import resources

    schema = json.loads(resources.files("edgeface").joinpath("schemas/bundle.schema.json").read_text())
    for key, values in table_enums().items():
        schema["properties"][key]["enum"] = values
    return schema


def validate_meta(meta: Any, where: str = BUNDLE_JSON) -> None:
    """Raise BundleError listing what is wrong with an edgeface.json document: the schema
    (edgeface.runtime.manifest's validator, no optional dependency), then the rules a schema
    cannot express (manifest.semantic_errors). The error's kind is the first problem's."""
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(meta).__name__}", M.SCHEMA)
    errs = M.validate_schema(meta, load_schema())
    if errs:
        raise BundleError(f"{where} does not follow the bundle schema: {_shown(errs)}", M.SCHEMA)
    sem = M.semantic_errors(meta)
    if sem:
        raise BundleError(f"{where}: refused: {_shown([m for _, m in sem])}", sem[0][0])


def _listed(v: Any) -> Any:
    """JSON form of a manifest value: tuples back to lists (nested), everything else as it is."""
    if isinstance(v, tuple):
        return [_listed(x) for x in v]
    if isinstance(v, dict):
        return {k: _listed(x) for k, x in v.items()}
    return v


def _tupled(v: Any) -> Any:
    return tuple(_tupled(x) for x in v) if isinstance(v, list) else v


@dataclass(frozen=True)
class TensorContract:
    """The manifest's `input` or `output` section: how to feed the model / what it returns.
    Fields the schema names are typed; any other key (a converter's note on quantised outputs,
    say) rides along in `extra`."""

    name: str
    shape: tuple
    dtype: str
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "TensorContract":
        return cls(d["name"], _tupled(d["shape"]), d["dtype"], {k: v for k, v in d.items() if k not in ("name", "shape", "dtype")})

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": _listed(self.shape), "dtype": self.dtype, **_listed(self.extra)}

    def get(self, key: str, default: Any = None) -> Any:
        return self.extra.get(key, default)


@dataclass(frozen=True)
class Manifest:
    """edgeface.json as a typed, immutable value (the writer builds it stage by stage with
    dataclasses.replace; `from_dict` validates exactly as load_bundle does: schema + semantic rules).
    Sections the schema leaves open (thresholds, quality, parity, ...) stay mappings."""

    schema_version: int
    kit_version: str
    status: str
    format: str
    precision: str
    backend: str
    model_file: str
    files: dict
    input: TensorContract
    output: TensorContract
    alignment: dict
    embedding_size: int
    thresholds: dict
    quality: dict
    source: dict
    parity: dict
    licence: str
    card: dict
    export: dict
    conformance: dict | None = None
    detector: dict | None = None
    verification: dict | None = None
    extra: dict = field(default_factory=dict)  # keys a later kit version may add

    @classmethod
    def from_dict(cls, meta: Any, where: str = BUNDLE_JSON, validate: bool = True) -> "Manifest":
        if validate:
            validate_meta(meta, where)
        elif not isinstance(meta, dict):
            raise BundleError(f"{where}: expected a JSON object, got {type(meta).__name__}", M.SCHEMA)
        names = {f.name for f in _fields(cls)} - {"extra", "input", "output"}
        kw = {k: v for k, v in meta.items() if k in names}
        return cls(**kw, input=TensorContract.from_dict(meta["input"]), output=TensorContract.from_dict(meta["output"]),
                   extra={k: v for k, v in meta.items() if k not in names | {"input", "output"}})

    def to_dict(self) -> dict:
        """The JSON document, keys in the schema's order (optional sections only when present)."""
        d: dict[str, Any] = {}
        for f in _fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if f.name in ("detector", "verification") and v is None:
                continue
            d[f.name] = v.to_dict() if isinstance(v, TensorContract) else _listed(v)
        d.update(_listed(self.extra))
        return d


def _shown(errs: list[str]) -> str:
    return "; ".join(errs[:5]) + (f"; … {len(errs) - 5} more" if len(errs) > 5 else "")


def _manifest_path(bundle_dir: Path) -> Path:
    meta_path = bundle_dir / BUNDLE_JSON if bundle_dir.is_dir() else bundle_dir
    if not meta_path.is_file():
        raise BundleNotFoundError(f"{bundle_dir}: not a bundle (no {BUNDLE_JSON}); make one with `edgeface export`")
    return meta_path


def _read_manifest_bytes(meta_path: Path) -> bytes:
    try:
        with open(meta_path, "rb") as fh:
            raw = fh.read(M.MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise BundleError(f"{meta_path}: cannot read it ({exc.strerror or exc})", M.MANIFEST_UNREADABLE) from None
    if len(raw) > M.MAX_MANIFEST_BYTES:
        raise BundleError(f"{meta_path}: larger than {M.MAX_MANIFEST_BYTES >> 20} MB, not a bundle manifest", M.MANIFEST_UNREADABLE)
    return raw


class DuplicateKeyError(ValueError):
    """A JSON object naming the same key twice (json.loads would silently keep the last one)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKeyError(f"key {dup!r} appears more than once in one object")
    return d


def strict_json_loads(text: str | bytes) -> Any:
    """json.loads refusing duplicate keys (DuplicateKeyError): two readers of the same file must not
    see two documents (Python keeps the last value of a repeated key, other parsers the first)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def _parse_manifest(raw: bytes, meta_path: Path) -> Any:
    try:
        return strict_json_loads(raw.decode("utf-8"))
    except DuplicateKeyError as exc:
        raise BundleError(f"{meta_path}: {exc}: refusing an ambiguous manifest", M.MANIFEST_UNREADABLE) from None
    except UnicodeDecodeError:
        raise BundleError(f"{meta_path}: not UTF-8 text", M.MANIFEST_UNREADABLE) from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: not valid JSON ({exc})", M.MANIFEST_UNREADABLE) from None
    except RecursionError:
        raise BundleError(f"{meta_path}: JSON nested too deeply", M.MANIFEST_UNREADABLE) from None


def read_meta(bundle_dir: str | os.PathLike, validate: bool = True) -> dict:
    """A bundle's edgeface.json as a dict, validated against the schema and its rules unless `validate` is False.
    Does not check the digest or file hashes (load_bundle does); raises BundleError for a missing or invalid manifest."""
    meta_path = _manifest_path(Path(bundle_dir))
    meta = _parse_manifest(_read_manifest_bytes(meta_path), meta_path)
    if validate:
        validate_meta(meta, str(meta_path))
    return meta


def manifest_digest_line(manifest_bytes: bytes) -> str:
    """The content of edgeface.json.sha256: `sha256sum` format, so `sha256sum -c` checks it too."""
    return f"{hashlib.sha256(manifest_bytes).hexdigest()}  {BUNDLE_JSON}\n"


def write_manifest_digest(bundle_dir: str | os.PathLike) -> str:
    """Seal a bundle: write edgeface.json.sha256 over the bytes of edgeface.json as they are now.
    edgeface.json names the sha256 of every model and conformance file, so this one digest
    covers the whole bundle. The exporter calls it after every write of edgeface.json."""
    bundle_dir = Path(bundle_dir)
    line = manifest_digest_line((bundle_dir / BUNDLE_JSON).read_bytes())
    tmp = bundle_dir / (MANIFEST_DIGEST_FILE + ".tmp")
    tmp.write_text(line)
    os.replace(tmp, bundle_dir / MANIFEST_DIGEST_FILE)
    return line.split()[0]


def check_manifest_digest(bundle_dir: Path, manifest_bytes: bytes) -> None:
    """Raise BundleError (kind manifest_digest) unless edgeface.json.sha256 exists and matches the sha256 of
    `manifest_bytes`: catches a manifest edited after export."""
    f = bundle_dir / MANIFEST_DIGEST_FILE
    if not f.is_file():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_DIGEST_FILE}: the manifest is not sealed (a bundle from before digests, or "
                          "edited by hand); re-export it", M.MANIFEST_DIGEST)
    try:
        recorded = f.read_bytes()[:256].decode("ascii").split()[0].lower()
    except (UnicodeDecodeError, IndexError, OSError):
        recorded = ""
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if recorded != actual:
        raise BundleError(f"{bundle_dir}: {BUNDLE_JSON} does not match its digest in {MANIFEST_DIGEST_FILE} (sha256 {actual[:16]}…): the "
                          "manifest was changed after export; re-export the bundle", M.MANIFEST_DIGEST)


def _major(version: str) -> str:
    return str(version).split(".")[0]


def _resolve(p: Path, bundle_dir: Path, what: str) -> Path:
    """p.resolve(), with a symlink loop (RuntimeError before Python 3.13, OSError ELOOP after) or an
    unreadable link refused as a BundleError instead of a traceback."""
    try:
        return p.resolve()
    except (RuntimeError, OSError) as exc:
        raise BundleError(f"{bundle_dir}: {what} cannot be resolved ({type(exc).__name__}: {exc}): a symlink loop or a broken "
                          "link inside the bundle; re-export it", M.MODEL_FILE) from None


def _check_hashed(bundle_dir: Path, entries: dict, what: str) -> None:
    root = _resolve(bundle_dir, bundle_dir, "the bundle directory")
    for name, digest in entries.items():
        if not M.safe_relative(name):
            raise BundleError(f"{bundle_dir}: {what} entry {name!r} points outside the bundle", M.MODEL_FILE)
        p = bundle_dir / name
        real = _resolve(p, bundle_dir, f"{what} {name}")
        try:
            real.relative_to(root)
        except ValueError:
            raise BundleError(f"{bundle_dir}: {what} {name} is a link to outside the bundle", M.MODEL_FILE) from None
        if not p.is_file():
            raise BundleError(f"{bundle_dir}: {what} {name} listed in {BUNDLE_JSON} is missing", M.FILE_HASH)
        actual = file_sha256(p)
        if actual != digest:
            raise BundleError(
                f"{p}: sha256 {actual[:16]}… does not match {digest[:16]}… recorded in {BUNDLE_JSON}: the {what} was altered "
                "or replaced after export; re-export it (or pass verify_hash=False only if you know why)", M.FILE_HASH
            )


def model_files(meta: dict) -> dict[str, str]:
    """The hashed files of the embedding model itself: `files` less a bundled detector's (its ONNX
    and licence), so sizes reported for a model do not count the detector."""
    det = meta.get("detector") if isinstance(meta.get("detector"), dict) else {}
    extra = {det.get("file"), det.get("licence_file")}
    return {k: v for k, v in meta["files"].items() if k not in extra}


def check_files(bundle_dir: Path, meta: dict) -> None:
    """Every model file and conformance file has the sha256 recorded in edgeface.json."""
    _check_hashed(bundle_dir, meta["files"], "model file")
    _check_hashed(bundle_dir, ((meta.get("conformance") or {}).get("files") or {}), "conformance file")
    package = bundle_dir / meta["model_file"]
    if package.is_dir():  # a model package directory: nothing inside it may go unhashed
        for p in sorted(package.rglob("*")):
            name = p.relative_to(bundle_dir).as_posix()
            if (p.is_file() or p.is_symlink()) and name not in meta["files"]:
                raise BundleError(f"{bundle_dir}: {name} inside the model package {meta['model_file']} is not hashed in {BUNDLE_JSON}: "
                                  "it would be loaded unchecked", M.MODEL_FILE)


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
    def detector_file(self) -> Path | None:
        """The face detector shipped in the bundle (manifest `detector`, hashed in `files`), or None."""
        det = self.meta.get("detector")
        return self.path / det["file"] if isinstance(det, dict) else None

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


def load_bundle(path: str | os.PathLike, backend: str | None = None, threads: int = 0, verify_hash: bool = True, require_verified: bool = True,
                self_test: bool = True) -> Bundle:
    """Open a bundle directory and its runtime. backend=None picks the table's backend for the format.

    Refuses (BundleError with .kind, see docs/runtime.md "Bundle refusal rules"): a missing or
    unreadable manifest, a manifest not matching its digest, schema or semantic violations,
    another major kit version, an unverified/failed bundle, a file not matching its hash, a
    model the backend cannot load, and (self_test) a model whose outputs on the bundle's own
    conformance faces are non-finite, not unit-length, constant, or not the recorded ones.
    verify_hash=False skips the digest and file hashes (development only)."""
    bundle_dir = Path(path)
    if not bundle_dir.is_dir():
        raise BundleNotFoundError(f"{bundle_dir}: bundle directory not found")
    meta_path = _manifest_path(bundle_dir)
    raw = _read_manifest_bytes(meta_path)
    if verify_hash:
        check_manifest_digest(bundle_dir, raw)
    meta = _parse_manifest(raw, meta_path)
    validate_meta(meta, str(meta_path))
    if _major(meta["kit_version"]) != _major(__version__):
        raise BundleError(
            f"{bundle_dir}: written by edgeface {meta['kit_version']}, this is edgeface {__version__}; bundles are only read by the same "
            "major version — re-export the model with this version", M.VERSION
        )
    status = meta["status"]
    if require_verified and status not in RUNNABLE_STATUS:
        why = {
            "failed": f"its export failed verification ({(meta.get('verification') or {}).get('failures')})",
            "not-built": "its engine was not built on the export machine (see build settings in the bundle)",
            "not-verified": f"its model file was not run at export ({meta.get('verification', {}).get('reason', 'no reason recorded')})",
            "unverified": "it has not been verified yet",
        }.get(status, f"its status is {status!r}")
        raise BundleError(f"{bundle_dir}: refusing to load this bundle: {why}", M.STATUS)
    if verify_hash:
        check_files(bundle_dir, meta)
    try:
        card = ModelCard.from_dict(meta["card"])
        tgt = lookup_target(meta["format"], meta["precision"])
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{meta_path}: {exc}", M.SCHEMA) from None
    name = backend or tgt.backend
    try:
        runner = make_backend(name, bundle_dir / meta["model_file"], threads)
    except BackendError:
        raise  # a runtime missing on this machine: the message says what to install
    except Exception as exc:  # noqa: BLE001 - any backend's own parse error means the same thing
        raise BundleError(f"{bundle_dir / meta['model_file']}: {name} cannot load this model ({type(exc).__name__}: {str(exc)[:200]})",
                          M.MODEL_LOAD) from None
    if (np.dtype(runner.input_dtype) == np.uint8) != (meta["input"]["dtype"] == "uint8"):
        raise BundleError(f"{bundle_dir}: the model takes {np.dtype(runner.input_dtype).name} input but {BUNDLE_JSON} says "
                          f"{meta['input']['dtype']} (normalization_in_graph {meta['input']['normalization_in_graph']})", M.INPUT_CONTRACT)
    bundle = Bundle(bundle_dir, meta, card, name, runner)
    if self_test and (status in RUNNABLE_STATUS or meta.get("conformance")):
        run_self_test(bundle)
    return bundle


# Below this mean cosine between the conformance faces (different photos, mostly different
# people) a model is answering; above it, it returns one vector whatever the face.
CONSTANT_OUTPUT_COSINE = 0.98
OUTPUT_NORM_TOLERANCE = 0.02  # export verification allows 0.01; int8 kernels on other CPUs drift a little


def run_self_test(bundle: Bundle) -> dict:
    """At load: run the bundle's conformance faces and refuse a model whose outputs are
    non-finite, not unit-length (when the graph says it L2-normalises), constant across
    faces, or not the embeddings recorded at export (within the set's tolerance); and a
    conformance record whose thresholds differ from the manifest's."""
    from .conformance import load_conformance_set

    try:
        crops, exp = load_conformance_set(bundle.path)
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError) as exc:
        raise BundleError(f"{bundle.path}: its conformance set cannot be used ({exc}); a verified bundle carries one — re-export it",
                          M.CONFORMANCE) from None
    try:
        raw = bundle.raw_output(crops)
    except BundleError as exc:
        raise BundleError(str(exc), M.MODEL_OUTPUT) from None
    except Exception as exc:  # noqa: BLE001 - a model that loads but cannot run
        raise BundleError(f"{bundle.model_file}: running the model failed ({type(exc).__name__}: {str(exc)[:200]})", M.MODEL_OUTPUT) from None
    if not np.all(np.isfinite(raw)):
        raise BundleError(f"{bundle.model_file}: the model returns NaN or infinite embeddings", M.MODEL_OUTPUT)
    norms = np.linalg.norm(raw, axis=1)
    if norms.min() < 1e-6:
        raise BundleError(f"{bundle.model_file}: the model returns all-zero embeddings", M.MODEL_OUTPUT)
    if bundle.meta["output"]["l2_normalized_in_graph"] and np.abs(norms - 1).max() > OUTPUT_NORM_TOLERANCE:
        raise BundleError(f"{bundle.model_file}: output norms {norms.min():.3f}..{norms.max():.3f}, but {BUNDLE_JSON} says the graph "
                          "L2-normalises", M.MODEL_OUTPUT)
    emb = l2_normalize(raw)
    if len(emb) > 1:
        sims = emb @ emb.T
        mean_off = float((sims.sum() - np.trace(sims)) / (len(emb) * (len(emb) - 1)))
        if mean_off > CONSTANT_OUTPUT_COSINE:
            raise BundleError(f"{bundle.model_file}: the model returns (nearly) the same embedding for every face (mean cosine {mean_off:.4f} "
                              f"between {len(emb)} different conformance photos)", M.MODEL_OUTPUT)
    try:  # a ragged, missing or non-numeric record is a damaged conformance set, not a crash
        ref = np.asarray(exp["embeddings"], np.float32)
        need = float(exp["tolerance"]["min_cosine_to_expected"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{bundle.path}: its conformance record is damaged ({type(exc).__name__}: {str(exc)[:200]}); re-export the bundle",
                          M.CONFORMANCE) from None
    if ref.shape != emb.shape:
        raise BundleError(f"{bundle.path}: conformance embeddings have shape {ref.shape}, the model gives {emb.shape}", M.CONFORMANCE)
    cos = np.sum(emb * l2_normalize(ref), axis=1)
    if cos.min() < need:
        raise BundleError(f"{bundle.path}: the model does not reproduce its conformance embeddings (min cosine {cos.min():.4f} < {need}); "
                          "the model file, the input contract or the runtime differ from what was exported", M.CONFORMANCE)
    live = bundle.thresholds
    recorded = {str(k): float(v) for k, v in (exp.get("thresholds") or {}).items()}
    if recorded and any(k not in live or abs(live[k] - v) > 1e-6 for k, v in recorded.items()):
        raise BundleError(f"{bundle.path}: thresholds {live} differ from those recorded with the conformance set {recorded}", M.THRESHOLDS)
    from .conformance import check_quality_gate

    gate_errors = check_quality_gate(bundle, exp)
    if gate_errors:
        raise BundleError(f"{bundle.path}: its quality gate does not reproduce what it was sealed with: {_shown(gate_errors)}", M.QUALITY)
    return {"faces": len(emb), "cosine_min": float(cos.min()), "output_norm_min": float(norms.min()), "output_norm_max": float(norms.max())}
