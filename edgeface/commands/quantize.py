"""`edgeface quantize`: fp16 or int8 (NNCF post-training quantization on aligned faces) ONNX model
with its card and a report (size, LFW-dev accuracy before/after, cosine to fp32)."""
from __future__ import annotations

import argparse

from .eval import add_model_args

HELP = """Quantize a face embedder to an ONNX model (uint8 aligned faces in, unit embeddings out), the
same conversion as `edgeface export` (onnx fp16 / NNCF int8 QDQ with per-channel weights).
int8 is calibrated on faces from --calib (a folder of face photos; they are detected with YuNet
and aligned with the model card's template) or, by default, on the shared CelebA-299 + AAF-8k
faces. By default the first conv and the embedding projection stay in float (--keep-float none
quantizes them too).
--qat STEPS (int8) adds quantization-aware training after that: NNCF's torch fake-quantized model,
BatchNorms folded, retrained STEPS steps to reproduce the float model's own embeddings of
training faces (CelebA-299 + AAF-8k, disjoint from the calibration faces), exported with int8
weights. For models where PTQ loses too much; on the reference MobileFaceNet it did not help LFW.
Writes OUT/model.onnx, OUT/card.json and OUT/report.{json,md,png}."""


def register(sub) -> None:
    """Add the `quantize` subcommand and its options to the subparsers `sub`."""
    p = sub.add_parser("quantize", help="fp16 / int8 PTQ (NNCF) of a model, with accuracy report", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--precision", choices=["fp16", "int8"], required=True)
    p.add_argument("--calib", help="folder of face images for int8 calibration (default: ../shared CelebA-299 + AAF-8k)")
    p.add_argument("--calib-count", type=int, default=300, help="calibration faces (default 300, NNCF's default subset size)")
    p.add_argument("--keep-float", choices=["ends", "none"], default="ends", help="keep the first conv and the embedding projection in float (default) or quantize everything")
    p.add_argument("--plain-storage", action="store_true", help="int8: store what stays float as NNCF leaves it (float32, long names) instead of compacted "
                   "(float head weight-only int8, other float params fp16, short names)")
    p.add_argument("--qat", type=int, default=0, metavar="STEPS", help="int8: quantization-aware training steps after PTQ (default 0: PTQ only; ~150 is a start)")
    p.add_argument("--qat-lr", type=float, default=1e-5, help="QAT learning rate (Adam; default 1e-5)")
    p.add_argument("--eval-folds", type=int, default=5, help="LFW-dev folds for accuracy before/after (0: skip)")
    p.add_argument("--out", help="output folder (default out/<name>_<precision>)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(handler=run)


def run(args) -> int:
    """`edgeface quantize`: run the quantization job and print its summary; returns 0."""
    from ..export.quantize_job import QuantizeJob, quantize_model

    print(quantize_model(QuantizeJob.from_namespace(args)).summary())
    return 0
