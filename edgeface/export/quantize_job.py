"""`edgeface quantize` as a library job: `quantize_model(QuantizeJob) -> QuantizeResult`.

A torch face embedder quantized (compress.quantize: NNCF PTQ, optionally QAT) and written as the
ONNX graph `edgeface export --target onnx` writes (uint8 aligned faces in, unit embeddings out),
with its card and a report: size, LFW-dev accuracy before/after, cosine to fp32. It writes an
ONNX file, so it lives in export (compress never imports export).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval import benchmarks, faces
from ..core.card import ModelCard
from ..core.config import JobResult, ModelJob
from ..compress.quantize import FloatScope, compare_embeddings
from ..compress.report import write_report
from ..runtime.model_file import ModelFile
from .converters import onnx_at_precision


@dataclass(kw_only=True)
class QuantizeJob(ModelJob):
    """What to quantize and how (the fields are `edgeface quantize`'s options)."""

    precision: str  # fp16 | int8
    calib: str | None = None  # folder of face photos (default: shared CelebA-299 + AAF-8k)
    calib_count: int = 300
    keep_float: str = "ends"  # ends | none: FloatScope.ends(keep_float == "ends")
    plain_storage: bool = False
    qat: int = 0
    qat_lr: float = 1e-5
    threads: int = 2


@dataclass(kw_only=True)
class QuantizeResult(JobResult):
    model_file: Path
    card_file: Path
    card: ModelCard

    def summary(self) -> str:
        r = self.report
        return (f"wrote {self.model_file} ({r['after']['file_bytes'] / 1e6:.2f} MB, {r['size_ratio']:.2f}x smaller than fp32) + "
                f"{self.card_file}, {self.report_files[0]}, {self.report_files[1]}")


def quantize_model(job: QuantizeJob, log=print) -> QuantizeResult:
    """Quantize, write OUT/model.onnx + card.json + report; `log` gets the LFW-dev line."""
    from ..compress.qat import export_qat_onnx, quantization_aware_training
    from ..models.complexity import count_mflops, count_params
    from ..zoo import load_torch_model

    t0 = time.time()
    if job.qat and job.precision != "int8":
        raise ValueError("--qat is quantization-aware training to int8: use it with --precision int8")
    if job.qat < 0:
        raise ValueError(f"--qat must be >= 0 steps, got {job.qat}")
    model, card = load_torch_model(job.model, arch=job.arch, input_size=job.input_size, template=job.template, embedding_size=job.embedding_size,
                        card=job.card, weights=job.weights)
    out = Path(job.out or Path("out") / (f"{card.name}_{job.precision}" + ("_qat" if job.qat else "")))
    calib = train = None
    if job.precision == "int8":
        if job.qat:
            pool = faces.training_faces(card, 1000)
            train = pool if job.calib else pool[: -job.calib_count]
        if job.calib:
            calib = faces.align_folder(job.calib, card, job.calib_count)
        elif job.qat:
            calib = pool[-job.calib_count :]
        else:
            calib = faces.training_faces(card, max(1, (job.calib_count + 1) // 2))[: job.calib_count]
    qat_info = None
    if job.qat:
        qnet, qat_info = quantization_aware_training(model, card, calib, train, steps=job.qat, lr=job.qat_lr, float_scope=FloatScope.ends(job.keep_float == "ends"))
        path = out / "model.onnx"
        qat_info["storage"] = export_qat_onnx(qnet, card, path, compact=not job.plain_storage)
        how = f" NNCF PTQ on {len(calib)} faces + {qat_info['steps']} QAT steps on {len(train)}"
    else:
        path = onnx_at_precision(model, card, job.precision, out, calib, float_scope=FloatScope.ends(job.keep_float == "ends"), compact=not job.plain_storage)
        how = f" NNCF PTQ on {len(calib)} faces" if calib is not None else ""
    qcard = card.replace(name=f"{card.name}_{job.precision}" + ("_qat" if job.qat else ""), description=f"{card.description or card.name}; {job.precision}{how}",
                         params=count_params(model), mflops=round(count_mflops(model, card.input_size), 1))
    (out / "card.json").write_text(qcard.to_json())
    ref = onnx_at_precision(model, card, "fp32", out / "fp32")
    report = {"model": card.name, "precision": job.precision, "keep_float": job.keep_float, "calibration_faces": 0 if calib is None else int(len(calib)),
              "calibration_source": job.calib or "shared CelebA-299 + AAF-8k",
              "before": {"file_bytes": ref.stat().st_size, "params": qcard.params, "mflops": qcard.mflops},
              "after": {"file_bytes": path.stat().st_size, "model": str(path)}}
    if qat_info:
        report["qat"] = qat_info
    report["size_ratio"] = round(report["before"]["file_bytes"] / report["after"]["file_bytes"], 3)
    plots = []
    if job.eval_folds:
        pairs = benchmarks.get("lfw-dev").pair_set(card, job.eval_folds)
        e32 = ModelFile(ref, card, job.threads).embed(pairs.crops)
        eq = ModelFile(path, card, job.threads).embed(pairs.crops)
        for key, e in (("before", e32), ("after", eq)):
            report[key].update(pairs.headline(e))
        report["accuracy_drop_pt"] = round(100 * (report["before"]["accuracy"] - report["after"]["accuracy"]), 3)
        report.update(compare_embeddings(e32, eq))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(np.sum(e32 * eq, axis=1), bins=60)
        ax.set_xlabel(f"cosine({job.precision}, fp32) per face")
        ax.set_ylabel("faces")
        ax.set_title(f"{qcard.name}: mean {report['mean_cosine']:.4f}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "report_cosine.png", dpi=110)
        plt.close(fig)
        plots.append(str(out / "report_cosine.png"))
        log(f"LFW-dev ({pairs.folds.max() + 1} folds): {100 * report['before']['accuracy']:.2f} % -> {100 * report['after']['accuracy']:.2f} %, mean cosine to fp32 {report['mean_cosine']:.4f}")
    shutil.rmtree(out / "fp32", ignore_errors=True)
    report["plots"] = plots
    report["seconds"] = round(time.time() - t0)
    js, md = write_report(out / "report", report, f"edgeface quantize: {qcard.name}")
    return QuantizeResult(model_file=path, card_file=out / "card.json", card=qcard, report=report, report_files=(Path(js), Path(md)))
