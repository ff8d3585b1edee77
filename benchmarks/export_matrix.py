"""Export the reference MobileFaceNet (or MODEL) to every (format, precision) that can be
exported here and measure each bundle: file size, cosine to the source on real faces
(min/mean), LFW-dev 5-fold accuracy through the bundle's own runtime, thresholds at FAR
1e-3/1e-4, export time. Writes benchmarks/results/export_matrix_<name>.{json,md}.

    PYTHONPATH=. python benchmarks/export_matrix.py [--model SPEC] [--name reference] [--only onnx-fp32,tflite-int8]
    PYTHONPATH=. python benchmarks/export_matrix.py --name default --collect benchmarks/results/bundles/default
      (tabulate bundles already exported, e.g. by `edgeface export` or `edgeface bench`, without re-exporting)

Full run (300 calibration faces, 200 verification faces, 2,000 AAF impostors, 3,000 LFW-dev
pairs per target) takes roughly 20-30 min on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from edgeface import __version__
    from edgeface.core import paths
    from edgeface.core import targets
    from edgeface.export import ExportOptions, export_bundle, load_source

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(paths.reference_mobilefacenet()))
    ap.add_argument("--name", default="reference")
    ap.add_argument("--only", help="comma-separated target keys (default: every target exportable here)")
    ap.add_argument("--bundles", default=str(ROOT / "out" / "export_matrix"), help="where the bundles go")
    ap.add_argument("--n-calib", type=int, default=300)
    ap.add_argument("--n-verify", type=int, default=200)
    ap.add_argument("--n-impostor", type=int, default=2000)
    ap.add_argument("--lfw-folds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--benchmarks", help="comma-separated verification records measured per target (default: the export's own, "
                    "LFW-dev + CFP-FF + CFP-FP); 'lfw-dev' alone saves time on a busy machine")
    ap.add_argument("--qat", type=int, default=0, metavar="STEPS", help="int8 by quantization-aware training (export --qat; onnx/openvino/tflite int8 only)")
    ap.add_argument("--qat-faces", type=int, default=1000, help="QAT training faces (export --qat-faces)")
    ap.add_argument("--collect", help="folder of existing bundles (one sub-folder per target): tabulate them, export nothing")
    ap.add_argument("--redo", action="store_true", help="re-export targets that already have a row in this --name's results "
                    "(default: keep those rows and export only the missing targets, so an interrupted run resumes)")
    args = ap.parse_args()
    if args.collect:
        return collect(Path(args.collect), args.name)

    # Most-used targets first, so an interrupted run still has the rows that matter most.
    order = ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8", "openvino-fp32", "openvino-int8", "tflite-fp16", "openvino-fp16",
             "onnx-fp16", "tensorrt-fp16", "tensorrt-int8"]
    chosen = sorted(targets.available_targets("export"), key=lambda t: order.index(t.key) if t.key in order else len(order))
    if args.only:
        keys = args.only.split(",")
        chosen = [targets.target(*k.split("-")) for k in keys]
    src = load_source(args.model)
    opts = ExportOptions(n_calib=args.n_calib, n_verify=args.n_verify, n_impostor=args.n_impostor, lfw_folds=args.lfw_folds,
                         threads=args.threads, show_progress=False, qat_steps=args.qat, qat_faces=args.qat_faces,
                         **({"benchmarks": tuple(args.benchmarks.split(","))} if args.benchmarks else {}))
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    command = "PYTHONPATH=. python " + " ".join(sys.argv)
    rows, commands = previous_rows(res_dir / f"export_matrix_{args.name}.json", src.sha256, [t.key for t in chosen], args.redo)
    commands = [c for c in commands if c != command] + [command]

    def save():
        result = {
            "model": src.name, "source_sha256": src.sha256, "kit_version": __version__,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": args.threads, "n_calib": args.n_calib,
            "n_verify": args.n_verify, "n_impostor": args.n_impostor,
            "lfw": "LFW-dev folds 1-5 (3,000 pairs), YuNet + 5-point alignment" if args.lfw_folds is None else f"LFW-dev first {args.lfw_folds} folds",
            "command": command, "commands": commands, "complete": {t.key for t in chosen} <= {r["target"] for r in rows}, "rows": rows,
        }
        (res_dir / f"export_matrix_{args.name}.json").write_text(json.dumps(result, indent=2))
        (res_dir / f"export_matrix_{args.name}.md").write_text(to_markdown(result))
        return result

    for t in chosen:
        if any(r["target"] == t.key for r in rows):
            print(f"{t.key}: already measured in export_matrix_{args.name}.json, kept (--redo exports it again)", flush=True)
            continue
        out = Path(args.bundles) / args.name / t.key
        t0 = time.time()
        try:
            meta = export_bundle(args.model, t.format, t.precision, out, opts, src=src)
        except Exception as exc:  # noqa: BLE001 - a target that cannot be exported here is a row, not a crash
            traceback.print_exc()
            rows.append({"target": t.key, "status": "error", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            save()
            continue
        row = row_from_meta(t.key, out, meta, round(time.time() - t0, 1))
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("target", "status", "size_bytes", "cosine_min", "cosine_mean", "lfw_accuracy_mean", "convert_seconds")}), flush=True)
        save()
    print(to_markdown(save()))
    return 0


def previous_rows(path: Path, source_sha256: str, keys: list[str], redo: bool) -> tuple[list[dict], list[str]]:
    """Rows already measured for this model under this --name (errors are always retried; with
    --redo, the targets of this run are too), and the commands that measured them."""
    if not path.is_file():
        return [], []
    old = json.loads(path.read_text())
    if old.get("source_sha256") != source_sha256:
        print(f"{path.name}: measured another model (sha256 {str(old.get('source_sha256'))[:12]}), its rows are replaced", flush=True)
        return [], []
    rows = [r for r in old.get("rows", []) if r.get("status") != "error" and not (redo and r["target"] in keys)]
    return rows, old.get("commands") or [old["command"]]


def row_from_meta(key: str, out: Path, meta: dict, total_seconds: float | None) -> dict:
    par = meta["parity"]
    return {
        "target": key,
        "status": meta["status"],
        "model_file": meta["model_file"],
        "size_bytes": sum((out / f).stat().st_size for f in meta["files"] if f.startswith("model")),
        "cosine_min": par["cosine_min"],
        "cosine_mean": par["cosine_mean"],
        "num_faces": par["num_faces"],
        "lfw_accuracy_mean": (par.get("lfw_dev") or {}).get("accuracy_mean"),
        "lfw_accuracy_std": (par.get("lfw_dev") or {}).get("accuracy_std"),
        "source_lfw_accuracy_mean": (par.get("source_lfw_dev") or {}).get("accuracy_mean"),
        "threshold_far_1e-3": meta["thresholds"]["at_far"]["1e-3"]["threshold"],
        "threshold_far_1e-4": meta["thresholds"]["at_far"]["1e-4"]["threshold"],
        "tar_at_threshold_1e-3": meta["thresholds"]["at_far"]["1e-3"].get("tar_lfw_dev"),
        "threshold_method": meta["thresholds"].get("method"),
        "convert_seconds": meta["export"]["seconds"],
        "total_seconds": total_seconds,
        "runtime": par.get("runtime"),
        "failures": meta["verification"]["failures"],
        "details": meta["export"]["details"],
    }


def collect(folder: Path, name: str) -> int:
    from edgeface import __version__

    rows, metas = [], []
    for d in sorted(p for p in folder.iterdir() if (p / "edgeface.json").is_file()):
        meta = json.loads((d / "edgeface.json").read_text())
        if "parity" not in meta or "verification" not in meta:
            print(f"{d}: not verified yet (export still running?), left out", file=sys.stderr)
            continue
        rows.append(row_from_meta(d.name, d, meta, None))
        metas.append(meta)
    if not rows:
        print(f"{folder}: no bundles (sub-folders with edgeface.json)", file=sys.stderr)
        return 2
    first = metas[0]
    cal = next((m["export"]["calibration"] for m in metas if m["export"].get("calibration")), None)
    result = {"model": first["source"].get("name", name), "kit_version": __version__, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "threads": "see each bundle", "n_calib": (cal or {}).get("faces", "?"),
              "n_verify": rows[0]["num_faces"], "n_impostor": "LFW-dev cross-identity pairs", "lfw": "LFW-dev folds 1-5 (3,000 pairs), YuNet + 5-point alignment",
              "command": "PYTHONPATH=. python " + " ".join(sys.argv), "complete": True, "rows": rows}
    res_dir = ROOT / "benchmarks" / "results"
    (res_dir / f"export_matrix_{name}.json").write_text(json.dumps(result, indent=2))
    (res_dir / f"export_matrix_{name}.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


def to_markdown(result: dict) -> str:
    lines = [f"# Export matrix: {result['model']}", "",
             f"kit {result['kit_version']}, {result['machine']}, {result['threads']} threads; parity on {result['n_verify']} CelebA/AAF faces "
             f"not used for calibration ({result['n_calib']} calibration faces); {result['lfw']}; thresholds: "
             + (result["rows"][0].get("threshold_method") or f"LFW-dev + {result['n_impostor']} AAF-8k impostor photos") + ".", "",
             *[f"`{c}`" for c in (result.get("commands") or [result["command"]])], "",
             "| target | status | size (MB) | cos min | cos mean | LFW-dev acc (source) | thr@FAR1e-3 | thr@FAR1e-4 | TAR@1e-3 | convert s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["status"] == "error":
            lines.append(f"| {r['target']} | error: {r['error'][:80]} | | | | | | | | |")
            continue
        acc = "n/a" if r["lfw_accuracy_mean"] is None else f"{100 * r['lfw_accuracy_mean']:.2f} ± {100 * r['lfw_accuracy_std']:.2f} % ({100 * r['source_lfw_accuracy_mean']:.2f} %)"
        tar = "n/a" if r["tar_at_threshold_1e-3"] is None else f"{100 * r['tar_at_threshold_1e-3']:.2f} %"
        lines.append(f"| {r['target']} | {r['status']} | {r['size_bytes'] / 1e6:.2f} | {r['cosine_min']:.5f} | {r['cosine_mean']:.5f} | {acc} | "
                     f"{r['threshold_far_1e-3']:.4f} | {r['threshold_far_1e-4']:.4f} | {tar} | {r['convert_seconds']:.0f} |")
    notes = [r for r in result["rows"] if r.get("failures")]
    if notes:
        lines += ["", "Failures: " + "; ".join(f"{r['target']}: {', '.join(r['failures'])}" for r in notes)]
    if not result.get("complete", True):
        lines += ["", "**Incomplete run**: the rows above are the targets finished so far."]
    lines.append("")
    lines.append("tensorrt rows: TensorRT is not installed here, so the engine was not built; the row is the TensorRT-ready ONNX verified through onnxruntime (status not-built).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
