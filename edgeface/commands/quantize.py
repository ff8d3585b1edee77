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
    import json
    import time
    from pathlib import Path

    import numpy as np

    from .. import face_sets as faces
    from ..compress.quantize import FloatScope, compare_embeddings
    from ..export.converters import onnx_at_precision
    from ..runtime.model_file import ModelFile
    from ..compress.report import write_report
    from ..models.complexity import count_mflops, count_params
    from ..zoo import load_torch_model

    t0 = time.time()
    if args.qat and args.precision != "int8":
        raise ValueError("--qat is quantization-aware training to int8: use it with --precision int8")
    if args.qat < 0:
        raise ValueError(f"--qat must be >= 0 steps, got {args.qat}")
    model, card = load_torch_model(args.model, arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size)
    out = Path(args.out or Path("out") / (f"{card.name}_{args.precision}" + ("_qat" if args.qat else "")))
    calib = train = None
    if args.precision == "int8":
        if args.qat:
            pool = faces.training_faces(card, 1000)
            train = pool if args.calib else pool[: -args.calib_count]
        if args.calib:
            calib = faces.align_folder(args.calib, card, args.calib_count)
        elif args.qat:
            calib = pool[-args.calib_count :]
        else:
            calib = faces.training_faces(card, max(1, (args.calib_count + 1) // 2))[: args.calib_count]
    qat_info = None
    if args.qat:
        from ..compress.qat import export_qat_onnx, quantization_aware_training

        qnet, qat_info = quantization_aware_training(model, card, calib, train, steps=args.qat, lr=args.qat_lr, float_scope=FloatScope.ends(args.keep_float == "ends"))
        path = out / "model.onnx"
        qat_info["storage"] = export_qat_onnx(qnet, card, path, compact=not args.plain_storage)
        how = f" NNCF PTQ on {len(calib)} faces + {qat_info['steps']} QAT steps on {len(train)}"
    else:
        path = onnx_at_precision(model, card, args.precision, out, calib, float_scope=FloatScope.ends(args.keep_float == "ends"), compact=not args.plain_storage)
        how = f" NNCF PTQ on {len(calib)} faces" if calib is not None else ""
    qcard = card.replace(name=f"{card.name}_{args.precision}" + ("_qat" if args.qat else ""), description=f"{card.description or card.name}; {args.precision}{how}",
                         params=count_params(model), mflops=round(count_mflops(model, card.input_size), 1))
    (out / "card.json").write_text(qcard.to_json())
    ref = onnx_at_precision(model, card, "fp32", out / "fp32")
    report = {"model": card.name, "precision": args.precision, "keep_float": args.keep_float, "calibration_faces": 0 if calib is None else int(len(calib)),
              "calibration_source": args.calib or "shared CelebA-299 + AAF-8k",
              "before": {"file_bytes": ref.stat().st_size, "params": qcard.params, "mflops": qcard.mflops},
              "after": {"file_bytes": path.stat().st_size, "model": str(path)}}
    if qat_info:
        report["qat"] = qat_info
    report["size_ratio"] = round(report["before"]["file_bytes"] / report["after"]["file_bytes"], 3)
    plots = []
    if args.eval_folds:
        pairs = faces.lfw_pairs(card)
        if args.eval_folds < 5:
            pairs = pairs.subset(args.eval_folds)
        e32 = ModelFile(ref, card, args.threads).embed(pairs.crops)
        eq = ModelFile(path, card, args.threads).embed(pairs.crops)
        for key, e in (("before", e32), ("after", eq)):
            r = pairs.evaluate(e)
            report[key].update(accuracy=round(r["accuracy_mean"], 5), accuracy_std=round(r["accuracy_std"], 5), auc=round(r["auc"], 5), eer=round(r["eer"], 5), lfw_pairs=r["num_pairs"])
        report["accuracy_drop_pt"] = round(100 * (report["before"]["accuracy"] - report["after"]["accuracy"]), 3)
        report.update(compare_embeddings(e32, eq))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(np.sum(e32 * eq, axis=1), bins=60)
        ax.set_xlabel(f"cosine({args.precision}, fp32) per face")
        ax.set_ylabel("faces")
        ax.set_title(f"{qcard.name}: mean {report['mean_cosine']:.4f}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "report_cosine.png", dpi=110)
        plt.close(fig)
        plots.append(str(out / "report_cosine.png"))
        print(f"LFW-dev ({pairs.folds.max() + 1} folds): {100 * report['before']['accuracy']:.2f} % -> {100 * report['after']['accuracy']:.2f} %, mean cosine to fp32 {report['mean_cosine']:.4f}")
    import shutil

    shutil.rmtree(out / "fp32", ignore_errors=True)
    report["plots"] = plots
    report["seconds"] = round(time.time() - t0)
    js, md = write_report(out / "report", report, f"edgeface quantize: {qcard.name}")
    print(f"wrote {path} ({report['after']['file_bytes'] / 1e6:.2f} MB, {report['size_ratio']:.2f}x smaller than fp32) + {out / 'card.json'}, {js}, {md}")
    return 0
