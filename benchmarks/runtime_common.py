"""Shared pieces of the runtime benchmarks: the reference embedder and LFW-dev faces with
embeddings, mirrored-crop embeddings and quality measurements (cached, since three
benchmarks use them). Torch is fine here: benchmarks are not the runtime."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgeface.core import paths  # noqa: E402
from edgeface.core.cache import cache_dir  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def reference_embedder(threads: int = 2):
    import torch

    from edgeface.zoo import load_embedder

    torch.set_num_threads(threads)
    return load_embedder(str(paths.reference_mobilefacenet()), device="cpu")


def onnx_reference(threads: int = 2):
    """The reference model exported to ONNX and run by onnxruntime (the runtime's backend)."""
    import onnxruntime as ort
    import torch

    from edgeface.core.preprocess import l2_normalize, normalize
    from edgeface.zoo import load_torch_model

    model, card = load_torch_model(str(paths.reference_mobilefacenet()))
    out = cache_dir("bench") / "mobilefacenet-ref.onnx"
    if not out.is_file():
        h, w = card.input_size
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, h, w),), str(out), input_names=["faces"], output_names=["emb"],
                          dynamic_axes={"faces": {0: "n"}, "emb": {0: "n"}}, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])

    class OrtEmbedder:
        backend = "onnxruntime"

        def __init__(self):
            self.card = card

        def embed(self, faces):
            return l2_normalize(sess.run(None, {"faces": normalize(faces, card)})[0])

    return OrtEmbedder()


def bundle_quality(embedder) -> dict:
    """The quality section `edgeface export` writes into a bundle of this model: kit defaults
    with min_flip_similarity calibrated on the export's default calibration faces (CelebA-299
    + AAF-8k, never LFW)."""
    from edgeface.export import ExportOptions
    from edgeface.export.bundle_writer import _faces, calibrated_quality

    calib = _faces(embedder.card, ExportOptions(show_progress=False))[0]
    return calibrated_quality(embedder, calib.crops, "the export's default calibration set")


def save_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / name
    p.write_text(json.dumps(data, indent=2, sort_keys=True))
    return p


def lfw_faces(embedder, show_progress: bool = True, flip: bool = True) -> dict:
    """Every LFW-dev image: see folder_faces."""
    return folder_faces(embedder, paths.lfw_dev(), show_progress, flip)


def folder_faces(embedder, root, show_progress: bool = True, flip: bool = True) -> dict:
    """Every image of an identity folder (LFW-dev, CelebA-299, ...): path, identity, detection
    status, embedding, mirrored-crop similarity and quality measurements. Images without a
    detection use the evaluation's fallback (dataset mean landmarks) and are marked
    detected=False. flip=False skips the mirrored-crop embeddings (half the time; no
    flip-consistency quality score)."""
    from edgeface.eval.datasets import identity_folder
    from edgeface.core.detect import YuNetDetector
    from edgeface.eval.faces import aligned_crops, detect_all
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.runtime.quality import flip_similarity, measure

    items = identity_folder(root)
    files = [p for p, _ in items]
    key = hashlib.sha256((embedder.card.to_json() + "\n".join(files) + f"flip={flip}").encode()).hexdigest()[:12]
    prefix = "lfw" if Path(root) == Path(paths.lfw_dev()) else Path(root).name  # "lfw-": the name caches already have
    cache = cache_dir("bench") / f"{prefix}-runtime-{key}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return {k: z[k] for k in z.files} | {"paths": np.array(files), "ids": np.array([i for _, i in items])}
    det = YuNetDetector(paths.yunet_model())
    faces = detect_all(files, LandmarkStore(det, LandmarkStore.default_cache_file(det)), show_progress)
    crops, ok = aligned_crops(files, faces, embedder.card, "fallback", show_progress)
    emb = np.zeros((len(files), embedder.card.embedding_size), np.float32)
    fs = np.full(len(files), np.nan, np.float32)
    # batches of 64 crops (128 with the mirrors): onnxruntime ran 512-image batches at half the speed
    for i in range(0, len(files), 64):
        sel = np.flatnonzero(ok[i : i + 64]) + i
        if len(sel) and flip:
            f, e = flip_similarity(embedder, crops[sel])
            emb[sel], fs[sel] = e, f
        elif len(sel):
            emb[sel] = embedder.embed(crops[sel])
        if show_progress:
            print(f"\rembed {min(i + 64, len(files))}/{len(files)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    names = ["interocular", "sharpness", "brightness", "contrast", "abs_yaw", "abs_pitch", "abs_roll", "detector_score"]
    meas = np.full((len(files), len(names)), np.nan, np.float32)
    detected = np.zeros(len(files), bool)
    for i, p in enumerate(files):
        if not ok[i]:
            continue
        r = faces.records[p]
        detected[i] = r.status == "ok"
        m = measure(crops[i], faces.landmarks_for(p), r.score)
        meas[i] = [m.get(n, np.nan) for n in names]
    out = {"emb": emb, "flip": fs, "meas": meas, "meas_names": np.array(names), "usable": ok, "detected": detected}
    np.savez(cache, **out)
    return out | {"paths": np.array(files), "ids": np.array([i for _, i in items])}


def measurements(data: dict, i: int) -> dict:
    m = {str(n): float(v) for n, v in zip(data["meas_names"], data["meas"][i]) if np.isfinite(v)}
    if np.isfinite(data["flip"][i]):
        m["flip_similarity"] = float(data["flip"][i])
    return m
