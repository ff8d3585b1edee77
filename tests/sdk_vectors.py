"""The reference bundle + shared SDK vectors, built once per machine and cached (never committed).

    python tests/sdk_vectors.py      # prints {"bundle": PATH, "vectors": PATH}, building them if needed

Used by every SDK's tests (tests/test_sdk_*.py): the reference MobileFaceNet exported to ONNX fp32
with the reduced calibration of tests/test_runtime_bundle.py but 50 calibration faces (the least that
calibrates min_flip_similarity and the quality.nonface prototypes, so every SDK meets the non-face check), and
`edgeface.runtime.vectors.write_vectors` on it. The cache key covers the checkpoint (size, mtime)
and every Python source of the kit, so a change to the runtime rewrites the vectors.

The product path too (issue 34): `build(shared, "default-fp32")` / `"default-int8"` export the kit's own
`default` model (`edgeface export default --target onnx --precision fp32|int8`) with the same reduced
calibration and write vectors for it, cached under `.../sdk-vectors/default-<precision>-<key>/`.

    python tests/sdk_vectors.py [SHARED] [reference|default-fp32|default-int8]
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(n_calib=50, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False)


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeface" / "sdk-vectors"


def cache_key(checkpoint: Path) -> str:
    h = hashlib.sha256()
    st = checkpoint.stat()
    h.update(f"{checkpoint.resolve()} {st.st_size} {int(st.st_mtime)}\n".encode())
    h.update(json.dumps(SMALL, sort_keys=True).encode())
    for p in sorted((REPO / "edgeface").rglob("*.py")) + sorted((REPO / "edgeface" / "schemas").glob("*.json")):
        h.update(p.relative_to(REPO).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# the vector sets every SDK suite runs: the reference (a user's trained model) and the shipped default's ONNX bundles
SETS = ("reference", "default-fp32", "default-int8")


def _source(name: str) -> tuple[str, Path, str]:
    """(export spec, file the cache key covers, precision) of a vector set."""
    from edgeface.core import paths

    if name == "reference":
        ckpt = paths.reference_mobilefacenet()
        return str(ckpt), ckpt, "fp32"
    model, _, precision = name.partition("-")
    if model != "default" or precision not in ("fp32", "int8"):
        raise ValueError(f"unknown vector set {name!r}; the sets are {SETS}")
    from edgeface.models import get

    return "default", Path(get("default").weights), precision


def build(shared: Path | None = None, name: str = "reference") -> dict[str, str]:
    """{"bundle": dir, "vectors": dir}: cached, or exported + written now (under a file lock)."""
    if shared is not None:
        os.environ["EDGEFACE_SHARED"] = str(shared)
    spec, keyed, precision = _source(name)
    root = cache_root() / (cache_key(keyed) if name == "reference" else f"{name}-{cache_key(keyed)}")
    done = root / "complete"
    if done.is_file():
        return {"bundle": str(root / "bundle"), "vectors": str(root / "vectors")}
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions: one builds, the others wait
        if not done.is_file():
            import time

            from edgeface.export import ExportOptions, export_bundle
            from edgeface.runtime.vectors import write_vectors

            t0 = time.time()
            shutil.rmtree(root / "bundle", ignore_errors=True)
            meta = export_bundle(spec, "onnx", precision, root / "bundle", ExportOptions(**SMALL))
            if meta["status"] != "verified":
                raise RuntimeError(f"{name} bundle export failed verification: {meta.get('verification')}")
            t1 = time.time()
            write_vectors(root / "bundle", root / "vectors")
            (root / "timing.json").write_text(json.dumps({"export_s": round(t1 - t0, 1), "vectors_s": round(time.time() - t1, 1)}) + "\n")
            done.write_text("ok\n")
    return {"bundle": str(root / "bundle"), "vectors": str(root / "vectors")}


if __name__ == "__main__":
    print(json.dumps(build(Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None, sys.argv[2] if len(sys.argv) > 2 else "reference")))
