"""Which int8 TFLite recipe keeps a face embedder's embeddings: ai-edge-quantizer (AEQ) on the
fp32 .tflite (as is / PReLU ops left float / int16 activations) vs PT2E quantization before
litert-torch conversion (histogram or min/max activation ranges; first conv / head float or int8) (what `edgeface export --target tflite --precision int8` uses).

Cosine to the PyTorch source on the export check's 200 verification faces (CelebA-299 + AAF-8k,
none used for calibration), 300 calibration faces, embedding projection in float for AEQ;
latency = mean of 40 single-face invokes on one thread (XNNPACK).

    PYTHONPATH=. python benchmarks/experiments/tflite_int8_methods.py MODEL [--methods aeq,aeq-prelu-float,aeq-a16,pt2e]
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: runtime_common
from runtime_common import save_result  # noqa: E402

from edgeface.compress.quantize import FloatScope
from edgeface.export.bundle_writer import ExportOptions, _make_faces, load_source, source_embedder
from edgeface.export.converters import _tflite_fp32


def op_names(path: Path) -> list[str]:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    m = tfu.read_model(str(path))
    return [str(getattr(tfu.TFL_OP_CODE_TO_NAME.get(m.operatorCodes[op.opcodeIndex].builtinCode, "?"), "value", "?")) for op in m.subgraphs[0].operators]


def op_scopes(path: Path, kinds: tuple[str, ...], start: int = 0) -> list[str]:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfu

    m = tfu.read_model(str(path))
    g = m.subgraphs[0]
    names = op_names(path)
    return [tfu.get_op_scope(g.operators[k], g.tensors) for k in range(start, len(names)) if names[k] in kinds]


def aeq(fp32: Path, out: Path, calib: np.ndarray, mode: str) -> Path:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    q = quantizer.Quantizer(str(fp32), recipe.static_wi8_ai16() if mode == "a16" else recipe.static_wi8_ai8())
    names = op_names(fp32)
    head = max(k for k, n in enumerate(names) if n in ("CONV_2D", "FULLY_CONNECTED"))
    float_scopes = op_scopes(fp32, tuple(set(names)), head)  # embedding projection + L2 norm
    if mode == "prelu-float":  # litert lowers PReLU to RELU / MUL / SUB; the first MUL is the input scaling
        float_scopes += op_scopes(fp32, ("RELU", "SUB", "MUL"), 1)[: -len(float_scopes) or None]
    for scope in float_scopes:
        q.update_quantization_recipe(regex="^" + re.escape(scope) + "$", operation_name=TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
    sig = Interpreter(model_path=str(fp32)).get_signature_list()
    name = next(iter(sig))
    arg = sig[name]["inputs"][0]
    result = q.quantize(q.calibrate({name: [{arg: calib[k : k + 1]} for k in range(len(calib))]}, num_threads=1))
    result.export_model(str(out), overwrite=True)
    return out


def pt2e(src, out: Path, calib: np.ndarray, **kw) -> Path:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    from edgeface.models.graph import sample_faces
    from edgeface.compress.pt2e import pt2e_int8

    m, quantizer, _ = pt2e_int8(src.net, src.card, calib, **kw)
    litert_torch.convert(m, (sample_faces(src.card, 1),), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out))
    return out


def measure(path: Path, faces: np.ndarray, ref: np.ndarray) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    embs = []
    for face in faces:
        it.set_tensor(i["index"], face[None])
        it.invoke()
        e = it.get_tensor(o["index"]).astype(np.float32)[0]
        embs.append(e / np.linalg.norm(e))
    t0 = time.perf_counter()
    for face in faces[:40]:
        it.set_tensor(i["index"], face[None])
        it.invoke()
    cos = np.sum(np.stack(embs) * ref, axis=1)
    ops = Counter(op_names(path))
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "ms_per_face_1thread": 1000 * (time.perf_counter() - t0) / 40,
            "size_mb": path.stat().st_size / 1e6, "dequantize_ops": ops.get("DEQUANTIZE", 0), "quantize_ops": ops.get("QUANTIZE", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--methods", default="fp32,aeq,aeq-prelu-float,aeq-a16,pt2e-int8first-int8head,pt2e-int8first,pt2e-minmax,pt2e,pt2e-tail3,pt2e-flip,pt2e-flip-tail3")
    ap.add_argument("--n-calib", type=int, default=300, help="calibration faces (the export's default: 300)")
    ap.add_argument("--out", default=None, help="result name under benchmarks/results (default tflite_int8_methods_<model stem>.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = load_source(args.model)
    calib, _, verify, _ = _make_faces(src.card, ExportOptions(n_calib=args.n_calib, show_progress=False))
    ref = source_embedder(src).embed(verify.crops)
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        fp32 = _tflite_fp32(src, d / "fp32.tflite")
        for method in args.methods.split(","):
            t0 = time.time()
            out = d / f"{method}.tflite"
            if method == "fp32":
                out = fp32
            elif method.startswith("pt2e"):  # pt2e[-minmax][-int8first][-int8head][-nofold][-flip][-tailN]; pt2e-flip-tail3 = what export uses
                faces = np.concatenate([calib.crops, calib.crops[:, :, ::-1]]) if "flip" in method else calib.crops  # mirrored copies
                tail = 0 if "int8head" in method else int(method.split("tail")[1].split("-")[0]) if "tail" in method else 1
                pt2e(src, out, faces, float_scope=FloatScope(first="int8first" not in method, last=tail), mirror_calibration=False,
                     activation_observer="minmax" if "minmax" in method else "histogram", fold_bn="nofold" not in method)
            elif method.startswith("aeq"):
                aeq(fp32, out, calib.crops, {"aeq": "int8", "aeq-prelu-float": "prelu-float", "aeq-a16": "a16"}[method])
            else:
                raise SystemExit(f"unknown method {method!r}")
            rows[method] = dict(measure(out, verify.crops, ref), build_s=time.time() - t0)
            r = rows[method]
            print(f"{method:>16}: cosine min {r['cos_min']:.4f} mean {r['cos_mean']:.4f}  {r['ms_per_face_1thread']:6.2f} ms  {r['size_mb']:.2f} MB", flush=True)
    name = args.out or f"tflite_int8_methods_{Path(args.model).stem}.json"
    print(f"saved {save_result(name, {'model': src.card.name, 'calibration_faces': len(calib), 'verification_faces': len(verify), 'rows': rows})}")


if __name__ == "__main__":
    main()
