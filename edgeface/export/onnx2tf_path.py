"""TFLite for models that arrive only as ONNX, through onnx2tf (the optional `onnx2tf` extra:
tensorflow + onnx2tf, about 2 GB, so it lives outside the `export` extra).

PyTorch models go through litert-torch (converters.tflite_*), which is better on every count we
measured; this path exists for an ONNX file with no PyTorch source (InsightFace's, a vendor's).
What onnx2tf needs, learned the hard way:
- a plain float NCHW network (our uint8-NHWC graph is refused: onnx2tf only calibrates float
  inputs and transposes 4-D inputs as if they were NCHW);
- onnxslim first (its own onnxsim step is skipped);
- calibration data as an .npy in the converted (NHWC) layout, already normalised here so the
  mean/std handed to onnx2tf are 0/1;
- <cwd>/calibration_image_sample_data_20x128x128x3_float32.npy, which it otherwise downloads
  from GitHub for its dummy inference: we write 20 of the user's calibration faces there.
onnx2tf is run in a child process: it imports TensorFlow, whose protobuf and thread pools we do
not want in the exporting process next to torch, and it needs that working directory.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

# onnx2tf's output file per precision (it names them <onnx stem>_<kind>.tflite).
OUTPUT_KIND = {"fp32": "float32", "fp16": "float16", "int8": "full_integer_quant"}
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
TIMEOUT_S = 3600


def available() -> bool:
    """True when onnx2tf and tensorflow are both importable here."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx2tf", "tensorflow"))


def _check_float_nchw(onnx_path: Path, inp: dict) -> None:
    if inp["normalization_in_graph"] or inp["dtype"] != "float32" or inp["layout"] != "NCHW":
        raise ValueError(
            f"{onnx_path}: onnx2tf converts a plain float32 NCHW network, this ONNX takes {inp['dtype']} {inp['layout']}"
            f"{' with preprocessing in the graph (an edgeface export)' if inp['normalization_in_graph'] else ''}; "
            "export TFLite from the PyTorch model instead, or pass the network's own ONNX"
        )


def convert(onnx_path: Path, card, calib: np.ndarray | None, work: Path, int8: bool, log=print) -> Path:
    """Run onnx2tf on a float NCHW ONNX into `work`; returns the folder holding
    <stem>_float32.tflite, _float16.tflite and, with int8, _full_integer_quant.tflite."""
    import onnx
    import onnxslim

    from ..core.preprocess import normalize
    from .converters import onnx_io

    if not available():
        raise RuntimeError("TFLite from an ONNX file needs onnx2tf and tensorflow: pip install 'edgeface[onnx2tf]'")
    inp, _ = onnx_io(onnx_path, card)
    _check_float_nchw(onnx_path, inp)
    if int8 and (calib is None or len(calib) == 0):
        raise ValueError("int8 needs calibration faces")
    if calib is None or len(calib) == 0:  # fp32/fp16: faces only feed onnx2tf's shape-checking dummy run
        calib = np.random.default_rng(0).integers(0, 256, (20, *card.input_size, 3), dtype=np.uint8)
    work.mkdir(parents=True, exist_ok=True)
    slim = work / "model.onnx"
    onnx.save(onnxslim.slim(onnx.load(str(onnx_path))), str(slim))
    faces = normalize(calib, card, "NHWC")  # (N, H, W, 3) float32, model colour order, (x - mean) / std
    if int8:
        np.save(work / "calib.npy", faces)
    sample = np.stack([_resize(f, 128, 128) for f in faces[:20]])
    if len(sample) < 20:
        sample = np.concatenate([sample] * (20 // len(sample) + 1))[:20]
    np.save(work / SAMPLE_FILE, sample.astype(np.float32))
    job = {"onnx": str(slim), "out": str(work / "tflite"), "input": inp["name"], "calib": str(work / "calib.npy"), "int8": bool(int8)}
    log(f"onnx2tf: converting {onnx_path.name} ({'fp32, fp16 and full int8 with ' + str(len(calib)) + ' calibration faces' if int8 else 'fp32 and fp16'})")
    proc = subprocess.run([sys.executable, "-m", "edgeface.export.onnx2tf_path", json.dumps(job)], cwd=work,
                          capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{onnx_path}: onnx2tf failed (exit {proc.returncode}):\n{tail}")
    return work / "tflite"


def output_file(folder: Path, precision: str) -> Path:
    """The .tflite file onnx2tf wrote for `precision` in `folder`; raises RuntimeError listing the .tflite files there when it is missing."""
    path = folder / f"model_{OUTPUT_KIND[precision]}.tflite"
    if not path.is_file():
        raise RuntimeError(f"{folder}: onnx2tf wrote no {path.name} (files: {sorted(p.name for p in folder.glob('*.tflite'))})")
    return path


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize (only feeds onnx2tf's shape-checking dummy run)."""
    ys = (np.arange(h) * img.shape[0] / h).astype(int)
    xs = (np.arange(w) * img.shape[1] / w).astype(int)
    return img[ys][:, xs]


def _worker(job: dict) -> None:
    import onnx2tf

    zeros, ones = np.zeros((1, 1, 1, 3), np.float32), np.ones((1, 1, 1, 3), np.float32)
    kwargs = {}
    if job["int8"]:
        # The faces are already normalised, so onnx2tf's (x - mean) / std is the identity.
        kwargs = dict(output_integer_quantized_tflite=True, quant_type="per-channel",
                      custom_input_op_name_np_data_path=[[job["input"], job["calib"], zeros, ones]],
                      input_quant_dtype="float32", output_quant_dtype="float32")
    onnx2tf.convert(input_onnx_file_path=job["onnx"], output_folder_path=job["out"], batch_size=1,
                    copy_onnx_input_output_names_to_tflite=True, non_verbose=True, **kwargs)
    # Only the files a bundle can use stay: SavedModel and the other quantized variants go.
    keep = {f"model_{k}.tflite" for k in OUTPUT_KIND.values()}
    for p in Path(job["out"]).iterdir():
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
