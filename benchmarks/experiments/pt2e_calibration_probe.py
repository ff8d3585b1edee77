"""Where PT2E int8 loses accuracy: in the torch simulation, or in the TFLite file, and with which calibration.

For one model, PT2E post-training int8 (no QAT) calibrated two ways on the export's own 300
calibration faces (and their mirror images):
  - float: every activation range measured on the float model (PT2E's plain prepare_pt2e);
  - sequential: each range measured with every earlier layer already fake-quantized (the default
    since 2026-12-03, compress.pt2e.pt2e_int8(sequential_calibration=True)).
Each is measured as the converted torch module (the simulation) and as the .tflite file litert-torch
writes from it (XNNPACK), by cosine to the float model's embeddings of the export's 200 held-out
verification faces (never calibration faces, never LFW).

    PYTHONPATH=. python benchmarks/experiments/pt2e_calibration_probe.py --model dlib_resnet_edge \
        --out benchmarks/results/dlib/pt2e_calibration_probe.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def cosine_stats(out: np.ndarray, ref: np.ndarray) -> dict:
    c = np.sum(out * ref, 1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    return {"cosine_min": round(float(c.min()), 5), "cosine_mean": round(float(c.mean()), 5), "faces": int(len(c))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="dlib_resnet_edge")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    from edgeface.compress.float_scope import FloatScope
    from edgeface.compress.pt2e import DEFAULT_FLOAT_SCOPE, pt2e_int8
    from edgeface.export import ExportOptions
    from edgeface.export.bundle_writer import _faces, load_source
    from edgeface.models.graph import FaceEmbeddingGraph, sample_faces
    from edgeface.runtime.backends import LiteRTBackend

    src = load_source(args.model)
    card = src.card
    calib, _, verify, _ = _faces(card, ExportOptions(show_progress=False))
    with torch.no_grad():
        ref = FaceEmbeddingGraph(src.net.float().eval(), card).eval()(torch.from_numpy(verify.crops)).numpy()
    scope = FloatScope.for_card(card, DEFAULT_FLOAT_SCOPE)
    rows = []
    for sequential in (False, True):
        t0 = time.time()
        module, quantizer, info = pt2e_int8(src.net, card, calib.crops, float_scope=scope, sequential_calibration=sequential, show_progress=False)
        with torch.no_grad():
            sim = torch.cat([module(torch.from_numpy(np.ascontiguousarray(verify.crops[k : k + 50]))) for k in range(0, len(verify.crops), 50)]).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            litert_torch.convert(module, (sample_faces(card, 1),), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
            lite = LiteRTBackend().load(path, threads=args.threads)
            file_out = np.concatenate([lite.run(verify.crops[k : k + 1]) for k in range(len(verify.crops))])
            size = path.stat().st_size
        rows.append({"calibration": "sequential" if sequential else "float", "torch_simulation": cosine_stats(sim, ref),
                     "tflite_file": cosine_stats(file_out, ref), "tflite_bytes": size, "calibration_faces": info["calibration_faces"],
                     "seconds": round(time.time() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"model": card.name, "command": "PYTHONPATH=. python benchmarks/experiments/pt2e_calibration_probe.py "
                                          f"--model {args.model} --out {args.out}", "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
