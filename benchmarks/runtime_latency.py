"""Time per face for each runtime stage, import time and peak memory — measured in a
process where torch cannot be imported (the runtime as an app runs it).

Stages on LFW-dev images: read (decode file), detect (YuNet, ONNX Runtime), align (5-point
similarity warp), quality (numpy measures; the flip-consistency score's extra embedding is
timed separately), embed (batch 1 and batch 32), match (exact search in a 1,000-identity
gallery), and the whole FaceRecognizer.identify() call.

The embedder is an exported bundle (--bundle, loaded with edgeface.runtime.bundle) or, by
default, the reference MobileFaceNet exported to ONNX by this script (torch is used for
that export in the parent process only).

    PYTHONPATH=. python benchmarks/runtime_latency.py [--bundle DIR] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WORKER = textwrap.dedent(
    r"""
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith(("torch.", "edgeface.models", "edgeface.zoo")):
                raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    import json, os, resource, time, glob
    def peak_mb():
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so it would report the
        # parent's (torch-loaded) peak; VmHWM belongs to this process image only.
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    import numpy as np
    import onnxruntime
    from edgeface.runtime.face import FaceRecognizer
    from edgeface.runtime.gallery import Gallery
    import_s = time.perf_counter() - t0
    rss_after_import = peak_mb()
    cfg = json.loads(sys.argv[1])
    from edgeface.core.align import align_face
    from edgeface.core.detect import YuNetDetector, pick_primary
    from edgeface.core.imageio import read_image
    from edgeface.runtime.quality import measure, QualityGate
    from edgeface.core.preprocess import l2_normalize, normalize
    from edgeface.core.card import ModelCard
    threads = cfg["threads"]
    if cfg.get("bundle"):
        from edgeface.runtime.bundle import load_bundle
        emb = load_bundle(cfg["bundle"], threads=threads)
    else:
        class OrtEmbedder:
            backend = "onnxruntime"
            def __init__(self, path, card):
                o = onnxruntime.SessionOptions(); o.intra_op_num_threads = threads
                self.sess = onnxruntime.InferenceSession(path, o, providers=["CPUExecutionProvider"])
                self.card = card
            def embed(self, faces):
                return l2_normalize(self.sess.run(None, {"faces": normalize(faces, self.card)})[0])
        emb = OrtEmbedder(cfg["onnx"], ModelCard.from_json(cfg["card"]))
    det = YuNetDetector(cfg["yunet"], threads=threads)
    files = cfg["files"]
    T = {k: [] for k in ["read", "detect", "align", "quality_measures", "embed_b1", "flip_embed_b1", "match_1k", "identify_total"]}
    def tick(): return time.perf_counter()
    crops, lms = [], []
    emb.embed(np.zeros((1,) + tuple(emb.card.input_size) + (3,), np.uint8))  # warm-up
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, emb.card.embedding_size)).astype(np.float32)
    gpath = cfg["gallery"]
    g = Gallery(gpath, card=emb.card)
    g.add_many([(f"id{i}", x[i], 1, 1.0) for i in range(1000)])
    for f in files:
        t = tick(); img = read_image(f).pixels; T["read"].append(tick() - t)
        t = tick(); d = pick_primary(det.detect(img), img.shape); T["detect"].append(tick() - t)
        if d is None: continue
        t = tick(); c = align_face(img, d.landmarks, emb.card.template, emb.card.input_size); T["align"].append(tick() - t)
        t = tick(); m = measure(c, d.landmarks, d.score, d.box); T["quality_measures"].append(tick() - t)
        t = tick(); e = emb.embed(c[None]); T["embed_b1"].append(tick() - t)
        t = tick(); emb.embed(np.ascontiguousarray(c[None, :, ::-1])); T["flip_embed_b1"].append(tick() - t)
        t = tick(); g.search(e[0], top_k=5, use_index=False); T["match_1k"].append(tick() - t)
        crops.append(c)
    rec = FaceRecognizer(emb, gallery=g, detector=det, thresholds={"1e-3": 0.5})
    for f in files:
        t = tick(); rec.identify(f); T["identify_total"].append(tick() - t)
    batch = np.stack(crops[:32])
    reps = 5
    t = tick()
    for _ in range(reps): emb.embed(batch)
    embed_b32 = (tick() - t) / reps / len(batch)
    out = {k: 1000 * float(np.median(v)) for k, v in T.items() if v}
    out["embed_b32_per_face"] = 1000 * embed_b32
    out["faces"] = len(crops)
    out["import_s"] = import_s
    out["peak_rss_mb_after_import"] = rss_after_import
    out["peak_rss_mb"] = peak_mb()
    out["backend"] = emb.backend
    out["torch_loaded"] = "torch" in sys.modules
    print(json.dumps(out))
    """
)


def installed_size_mb() -> dict:
    """On-disk size of what the `runtime` extra installs here (numpy, onnxruntime, edgeface core)."""
    import importlib.util

    sizes = {}
    for mod in ("numpy", "onnxruntime", "edgeface", "cv2"):
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(list(spec.submodule_search_locations)[0])
        total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        libs = root.parent / f"{mod}.libs"  # auditwheel-vendored shared libraries
        if libs.is_dir():
            total += sum(f.stat().st_size for f in libs.rglob("*") if f.is_file())
        sizes[mod] = round(total / 2**20, 1)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=60)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from runtime_common import onnx_reference, save_result

    from edgeface.core import paths
    from edgeface.core.cache import cache_dir
    from edgeface.eval.datasets import identity_folder

    files = [p for p, _ in identity_folder(paths.lfw_dev())][:: 6922 // args.images][: args.images]
    cfg = {"threads": args.threads, "yunet": str(paths.yunet_model()), "files": files, "gallery": str(cache_dir("bench") / "latency-gallery.db")}
    if os.path.exists(cfg["gallery"]):
        os.remove(cfg["gallery"])
    if args.bundle:
        cfg["bundle"] = args.bundle
    else:
        ort_emb = onnx_reference(args.threads)
        cfg["onnx"] = str(cache_dir("bench") / "mobilefacenet-ref.onnx")
        cfg["card"] = ort_emb.card.to_json()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", WORKER, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["installed_mb"] = installed_size_mb()
    res["load_average_1min"] = os.getloadavg()[0]
    res["threads"] = args.threads
    print(f"runtime process (torch blocked; torch loaded: {res['torch_loaded']}), backend {res['backend']}, {res['faces']} LFW faces, {args.threads} threads")
    for k in ["read", "detect", "align", "quality_measures", "embed_b1", "flip_embed_b1", "embed_b32_per_face", "match_1k", "identify_total"]:
        print(f"  {k:20s} {res[k]:8.2f} ms / face (median)")
    print(f"  import edgeface.runtime + onnxruntime: {res['import_s']:.2f} s; peak RSS {res['peak_rss_mb']:.0f} MB (after import {res['peak_rss_mb_after_import']:.0f} MB)")
    print(f"  installed size: {res['installed_mb']} MB; load average {res['load_average_1min']:.1f} on this shared machine")
    print(f"saved {save_result('runtime_latency.json', res)}")


if __name__ == "__main__":
    main()
