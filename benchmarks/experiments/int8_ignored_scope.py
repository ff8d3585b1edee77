"""Does keeping layers in float help NNCF int8 on the reference MobileFaceNet? Quantizes the
edgeface ONNX graph with NNCF under several ignored scopes and measures cosine to the fp32
graph on verification faces (CelebA/AAF, disjoint from calibration).

    PYTHONPATH=. python benchmarks/experiments/int8_ignored_scope.py FP32_BUNDLE_OR_ONNX [--n-calib 300 --n-verify 200]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import nncf
    import onnx

    from edgeface.export import load_source
    from edgeface.eval.faces import align_files, default_split
    from edgeface.runtime.backends import make_backend
    from edgeface.core.preprocess import l2_normalize

    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("--n-calib", type=int, default=300)
    ap.add_argument("--n-verify", type=int, default=200)
    args = ap.parse_args()
    path = Path(args.onnx)
    path = path / "model.onnx" if path.is_dir() else path
    src = load_source(str(path))
    split = default_split(args.n_calib, args.n_verify, 0)
    calib = align_files(split.calib_files, src.card, show_progress=False).crops
    verify = align_files(split.verify_files, src.card, show_progress=False).crops
    ref = make_backend("onnxruntime", path).run(verify)
    model = onnx.load(str(path))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    scopes = {
        "nothing": [],
        "last conv (embedding)": convs[-1:],
        "first conv": convs[:1],
        "first + last conv": convs[:1] + convs[-1:],
        "last two convs (GDC + embedding)": convs[-2:],
    }
    rows = []
    for label, names in scopes.items():
        t = time.time()
        ds = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))], lambda x: {"faces": x})
        q = nncf.quantize(model, ds, subset_size=len(calib), ignored_scope=nncf.IgnoredScope(names=names) if names else None)
        with tempfile.TemporaryDirectory() as d:
            onnx.save(q, f"{d}/q.onnx")
            emb = make_backend("onnxruntime", f"{d}/q.onnx").run(verify)
            size = Path(f"{d}/q.onnx").stat().st_size
        cos = np.sum(l2_normalize(emb) * l2_normalize(ref), axis=1)
        rows.append({"kept_in_float": label, "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "size_bytes": size, "seconds": round(time.time() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
    out = ROOT / "benchmarks" / "results" / "int8_ignored_scope_reference.json"
    out.write_text(json.dumps({"model": src.name, "n_calib": len(calib), "n_verify": len(verify), "nncf": nncf.__version__,
                               "command": "PYTHONPATH=. python " + " ".join(sys.argv), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
