"""Which op of a converted network diverges: when an ncnn or MNN bundle fails parity, the ONNX
graph it was converted from is cut after one op at a time (bisection over the ops in execution
order), each cut converted by the same tool and run by the engine beside onnxruntime on the same
inputs; the first op whose output differs is named in the bundle's failures.

Assumes divergence persists: once an op's output is wrong, the outputs computed from it are too
(what a wrong conversion does; a wrong value that later ops happen to cancel is not found)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

# Ops that compute shapes or constants, not activations: never a cut point.
_NOT_ACTIVATIONS = {"Constant", "ConstantOfShape", "Shape", "Size", "Range", "Unsqueeze", "Squeeze", "Concat", "Gather", "Slice", "Cast", "Identity",
                    "Reshape", "Transpose", "Flatten", "Split", "Expand"}


def cut_points(model) -> list[tuple[str, str, str]]:
    """(node name, op type, output tensor) of the ops whose first output is a float activation of
    rank >= 2, in execution order (ONNX graphs are stored topologically sorted)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    points = []
    for k, n in enumerate(model.graph.node):
        if n.op_type in _NOT_ACTIVATIONS or not n.output:
            continue
        t = types.get(n.output[0])
        if t is None or t.elem_type != onnx.TensorProto.FLOAT or len(t.shape.dim) < 2:
            continue
        points.append((n.name or f"node_{k}", n.op_type, n.output[0]))
    return points


def cut_model(path: Path, tensor: str, out: Path) -> Path:
    """The graph of `path` up to `tensor` (its only output), written to `out`."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    known = {v.name for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    if tensor not in known:  # the Extractor needs a type for every output it cuts at
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    sub = Extractor(model).extract_model(inputs, [tensor])
    onnx.save(sub, str(out))
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    if a.shape != b.shape:
        return np.full(len(a), np.nan)
    return np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def first_diverging_op(onnx_path: Path, run_engine: Callable[[Path, np.ndarray], np.ndarray], x: np.ndarray, min_cosine: float = 0.999,
                       log=None) -> dict | None:
    """Bisect `onnx_path`'s ops for the first whose output, converted and run by `run_engine(cut onnx
    path, x) -> outputs` (conversion included), differs from onnxruntime's on `x` (cosine per input
    below `min_cosine`, or another shape, or a conversion error). Returns {"op", "type", "index",
    "of", "cosine_min", "cuts_tried", "error"?} or None when even the last op matches."""
    import onnx

    from ..core.ort_session import onnxruntime_session

    points = cut_points(onnx.load(str(onnx_path)))
    if not points:
        return None
    work = Path(tempfile.mkdtemp(prefix="edgeface-diagnose-"))
    tried: dict[int, tuple[bool, float, str]] = {}

    def diverges(k: int) -> bool:
        if k not in tried:
            name, op, tensor = points[k]
            cut = cut_model(onnx_path, tensor, work / f"cut{k}.onnx")
            sess = onnxruntime_session(str(cut))
            ref = np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])
            err = ""
            try:
                got = np.asarray(run_engine(cut, x))
                cos = _cosines(got, ref)
                c = float(np.nanmin(cos)) if not np.isnan(cos).all() else float("nan")
                bad = bool(np.isnan(cos).any() or cos.min() < min_cosine)
                if np.isnan(cos).any():
                    err = f"output shape {list(got.shape)} vs {list(ref.shape)} in onnxruntime"
            except Exception as exc:  # noqa: BLE001 - the engine failing on the cut is a divergence too
                c, bad, err = float("nan"), True, f"{type(exc).__name__}: {str(exc)[:160]}"
            tried[k] = (bad, c, err)
            if log:
                log(f"diagnose: cut after {op} {name!r} ({k + 1}/{len(points)}): {'DIFFERS' if bad else 'matches'} (cosine min {c:.5f}{', ' + err if err else ''})")
        return tried[k][0]

    try:
        lo, hi = 0, len(points) - 1
        if not diverges(hi):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if diverges(mid):
                hi = mid
            else:
                lo = mid + 1
        name, op, _ = points[lo]
        _, c, err = tried[lo]  # lo == hi, which was run
        res = {"op": name, "type": op, "index": lo, "of": len(points), "cosine_min": None if np.isnan(c) else round(c, 5), "cuts_tried": len(tried)}
        if err:
            res["error"] = err
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def describe(res: dict | None, engine: str) -> str:
    """One line for the bundle's failures."""
    if res is None:
        return f"{engine}: every op's output matches onnxruntime on its own; the divergence is in how the bundle feeds or reads the model"
    what = f"cosine {res['cosine_min']:.4f} to onnxruntime" if res.get("cosine_min") is not None else res.get("error", "no comparable output")
    return (f"{engine}: first diverging op is {res['type']} {res['op']!r} (op {res['index'] + 1} of {res['of']} activations; {what}; "
            f"every op before it matches)")
