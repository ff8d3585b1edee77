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
    p.add_argument("--eval-folds", type=int, default=5, help="LFW-dev folds for accuracy before/after (0: skip)")
    p.add_argument("--out", help="output folder (default out/<name>_<precision>)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np

    from ..compress import faces
    from ..compress.quantize import compare_embeddings, embed_file, export_precision
    from ..compress.report import write_report
    from ..models.complexity import count_mflops, count_params
    from ..zoo import load_torch_model

    t0 = time.time()
    model, card = load_torch_model(args.model, arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size)
    out = Path(args.out or Path("out") / f"{card.name}_{args.precision}")
    calib = None
    if args.precision == "int8":
        if args.calib:
            calib = faces.align_folder(args.calib, card, args.calib_count)
        else:
            calib = faces.training_faces(card, max(1, (args.calib_count + 1) // 2))[: args.calib_count]
    path = export_precision(model, card, args.precision, out, calib, keep_float_ends=args.keep_float == "ends", compact=not args.plain_storage)
    qcard = card.replace(name=f"{card.name}_{args.precision}", description=f"{card.description or card.name}; {args.precision}" + (f" NNCF PTQ on {len(calib)} faces" if calib is not None else ""),
                         params=count_params(model), mflops=round(count_mflops(model, card.input_size), 1))
    (out / "card.json").write_text(qcard.to_json())
    ref = export_precision(model, card, "fp32", out / "fp32")
    report = {"model": card.name, "precision": args.precision, "keep_float": args.keep_float, "calibration_faces": 0 if calib is None else int(len(calib)),
              "calibration_source": args.calib or "shared CelebA-299 + AAF-8k",
              "before": {"file_bytes": ref.stat().st_size, "params": qcard.params, "mflops": qcard.mflops},
              "after": {"file_bytes": path.stat().st_size, "model": str(path)}}
    report["size_ratio"] = round(report["before"]["file_bytes"] / report["after"]["file_bytes"], 3)
    plots = []
    if args.eval_folds:
        pairs = faces.lfw_pairs(card)
        if args.eval_folds < 5:
            pairs = pairs.subset(args.eval_folds)
        e32 = embed_file(ref, pairs.crops, args.threads)
        eq = embed_file(path, pairs.crops, args.threads)
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
