"""The C++ core (sdk/cpp) and its Java front (sdk/java) next to the Python runtime on the same faces,
in one run: ms per face for align, quality (measures + both gate modes, no embedding), embed (one
crop, ONNX Runtime, 1 thread) and match (exact search of one query in a 1,000-identity float32
gallery), peak memory of each process, and library sizes. The Java front exposes only the app's
calls, so its row is analyze (FaceRecognizer.embed: align + crop and mirror embedded + quality)
and match (identify - analyze); see sdk/java/test/com/edgeface/sdk/Bench.java.

    $V/bin/python benchmarks/sdk_bench.py [--repeats 5] [--out benchmarks/results/sdk_bench.json]

Faces: the shared vectors' 21 faces (tests/sdk_vectors.py builds the reference bundle + vectors once).
Each runtime runs in its own process (peak RSS is per process). Timings on a shared 2-core machine
are noisy: compare the two columns of one run, not runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

PY_RUNTIME = r"""
import json, resource, sys, time
import numpy as np
from edgeface.core.align import align_face
from edgeface.runtime.bundle import load_bundle
from edgeface.runtime.gallery import Gallery
from edgeface.runtime.quality import QualityGate, measure

bundle_dir, vdir, gallery_path, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
b = load_bundle(bundle_dir, threads=1)
open_ms = (time.perf_counter() - t) * 1e3
doc = json.load(open(f"{vdir}/vectors.json"))
gate = QualityGate(b.quality)
g = Gallery(gallery_path, card=b.card, readonly=True)
g.search(np.ones(b.card.embedding_size, np.float32), top_k=5, use_index=False)  # load its cache once, as an app would
T = dict(align=0.0, quality=0.0, embed=0.0, match=0.0)
n = 0
for _ in range(repeats):
    for f in doc["faces"]:
        px = np.fromfile(f"{vdir}/{f['pixels']}", np.uint8).reshape(f["height"], f["width"], 3)
        lm = np.array(f["landmarks"])
        t0 = time.perf_counter()
        crop = align_face(px, lm, b.card.template, b.card.input_size)
        t1 = time.perf_counter()
        m = measure(crop, lm)
        gate.assess(m, "verify"); gate.assess(m, "enroll")
        t2 = time.perf_counter()
        e = b.embed(crop[None])
        t3 = time.perf_counter()
        hits = g.search(e[0], top_k=5, use_index=False)
        t4 = time.perf_counter()
        assert hits[0]
        T["align"] += t1 - t0; T["quality"] += t2 - t1; T["embed"] += t3 - t2; T["match"] += t4 - t3
        n += 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"faces": n, **{f"{k}_ms": v / n * 1e3 for k, v in T.items()}, "open_bundle_ms": open_ms, "peak_rss_mb": peak, "gallery_size": len(g)}))
"""


def make_gallery(bundle_dir: str, path: Path, n: int = 1000) -> Path:
    """n random unit templates in a float32 gallery written by the Python runtime."""
    import numpy as np

    from edgeface.runtime.bundle import read_meta
    from edgeface.core.card import ModelCard
    from edgeface.runtime.gallery import Gallery

    card = ModelCard.from_dict(read_meta(bundle_dir)["card"])
    if path.exists():
        path.unlink()
    rng = np.random.default_rng(0)
    t = rng.standard_normal((n, card.embedding_size)).astype(np.float32)
    with Gallery(path, card=card, codec="float32") as g:
        g.add_many([(f"id{i:05d}", t[i], 1, 1.0) for i in range(n)])
    return path


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sdk_bench.json"))
    a = ap.parse_args()
    import onnxruntime
    import sdk_vectors

    from test_sdk_cpp import build_core

    vec = sdk_vectors.build()
    core = build_core()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "edgeface-sdk-bench"
    work.mkdir(parents=True, exist_ok=True)
    gallery = make_gallery(vec["bundle"], work / "gallery-1k.db")
    args = [vec["bundle"], vec["vectors"], str(gallery), str(a.repeats)]
    load_before = os.getloadavg()
    cpp = json.loads(subprocess.run([str(core / "edgeface_bench"), *args], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    py = json.loads(subprocess.run([sys.executable, "-c", PY_RUNTIME, *args], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    java = None
    if shutil.which("java") and (core / "libedgeface_jni.so").exists() and (core / "java-test").is_dir():
        cp = f"{core / 'java'}:{core / 'java-test'}"
        out = subprocess.run(["java", f"-Djava.library.path={core}", "-cp", cp, "com.edgeface.sdk.Bench", *args], capture_output=True, text=True, check=True)
        java = json.loads(out.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()
    ort_dir = Path(onnxruntime.__file__).parent
    sizes = {
        "libedgeface.so": (core / "libedgeface.so").stat().st_size,
        "libedgeface_jni.so": (core / "libedgeface_jni.so").stat().st_size if (core / "libedgeface_jni.so").exists() else None,
        "java classes": dir_size(core / "java"),
        "libonnxruntime.so (wheel's, needed by both)": (ort_dir / "capi").joinpath(next(p.name for p in (ort_dir / "capi").glob("libonnxruntime.so*"))).stat().st_size,
        "onnxruntime Python package": dir_size(ort_dir),
        "edgeface Python package": dir_size(REPO / "edgeface"),
    }
    result = {"command": f"python benchmarks/sdk_bench.py --repeats {a.repeats}", "cpp": cpp, "java": java, "python": py, "sizes_bytes": sizes,
              "load_average_1_5_15": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
              "cpus": os.cpu_count(),
              "note": "each runtime in its own process, ONNX Runtime with 1 thread; on a shared machine the load average above says how "
                      "much the timings are worth (compare the columns of one run, not runs)"}
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"{'stage':<14}{'C++ core':>12}{'Python':>12}")
    for k in ("align_ms", "quality_ms", "embed_ms", "match_ms", "open_bundle_ms", "peak_rss_mb"):
        print(f"{k:<14}{cpp[k]:>12.3f}{py[k]:>12.3f}")
    if java:
        print("Java front: " + ", ".join(f"{k} {v:.3f}" for k, v in java.items() if k != "faces"))
    print(f"load average before {load_before}, after {load_after} ({os.cpu_count()} CPUs)")
    for k, v in sizes.items():
        print(f"{k:<46}{(v or 0) / 1e6:>8.2f} MB")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
