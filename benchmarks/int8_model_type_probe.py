"""NNCF int8 settings on a foreign (transformer-like) face embedder's full ONNX graph: the model type
compress.quantize picks from the graph against NNCF's CNN defaults and a few float scopes. Cosine of
each int8 graph to the fp32 graph on the export's own verification faces (CelebA-299 + AAF-8k, none
used for calibration), through onnxruntime.

    PYTHONPATH=. python benchmarks/int8_model_type_probe.py FP32_BUNDLE VARIANT [VARIANT ...] > out.jsonl

FP32_BUNDLE: an onnx-fp32 bundle (`edgeface export MODEL --target onnx`); VARIANT: one of VARIANTS.
Measured on EdgeFace-XXS (issue 38; results/int8_model_type_probe_edgeface_xxs.jsonl).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("cnn_default", "transformer", "transformer_no_smoothquant", "transformer_attention_float", "transformer_first10_float",
            "transformer_mid_float", "transformer_last8_float", "transformer_all_matmul_float")


def main(argv: list[str]) -> int:
    import nncf
    import onnx

    from edgeface.compress.quantize import FloatScope, nncf_ignored_scope
    from edgeface.core.card import read_card_file
    from edgeface.core.ort_session import onnxruntime_session
    from edgeface.export.bundle_writer import ExportOptions, _faces

    bundle, names = Path(argv[0]), argv[1:]
    card = read_card_file(bundle / "edgeface.json")
    calib, _, verify, _ = _faces(card, ExportOptions(show_progress=False))
    m = onnx.load(str(bundle / "model.onnx"))
    ref = onnxruntime_session(str(bundle / "model.onnx"), 2).run(None, {"faces": verify.crops})[0]
    scope, _ = nncf_ignored_scope("onnx", m, FloatScope())
    ds = nncf.Dataset([calib.crops[i : i + 1] for i in range(len(calib))], lambda x: {"faces": x})
    inits = {t.name for t in m.graph.initializer}
    act_x_act = [n.name for n in m.graph.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)]
    weighted = [n.name for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.name not in act_x_act]
    matmuls = [n.name for n in m.graph.node if n.op_type == "MatMul"]
    tr = {"model_type": nncf.ModelType.TRANSFORMER}
    variants = {
        "cnn_default": ({}, []),
        "transformer": (tr, []),
        "transformer_no_smoothquant": ({**tr, "advanced_parameters": nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1))}, []),
        "transformer_attention_float": (tr, act_x_act),
        "transformer_first10_float": (tr, weighted[:10]),
        "transformer_mid_float": (tr, weighted[10:30]),
        "transformer_last8_float": (tr, nncf_ignored_scope("onnx", m, FloatScope(first=True, last=8))[1]),
        "transformer_all_matmul_float": (tr, matmuls),
    }
    for name in names:
        kw, extra = variants[name]
        t = time.time()
        q = nncf.quantize(m, ds, subset_size=len(calib), ignored_scope=nncf.IgnoredScope(names=list(scope.names) + extra, validate=False), **kw)
        e = onnxruntime_session(q.SerializeToString(), 2).run(None, {"faces": verify.crops})[0]
        c = np.sum(e * ref, axis=1)
        print(json.dumps({"variant": name, "float_extra": len(extra), "calibration_faces": len(calib), "verification_faces": len(verify),
                          "cos_mean": round(float(c.mean()), 5), "cos_min": round(float(c.min()), 5), "p01": round(float(np.quantile(c, 0.01)), 5),
                          "worst_face": int(c.argmin()), "seconds": round(time.time() - t)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
