"""`edgeface export`: a model -> a verified bundle for one target; `edgeface view`: Netron."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core import targets
from .eval import _size

HELP = """Export MODEL (registry name, checkpoint, or .onnx file) to one target of the table
below as a bundle directory: the model file(s) + edgeface.json (input contract, thresholds at
FAR 1e-3/1e-4, parity figures, hashes, card) + a conformance set. Every export is verified
against the source on real aligned faces and on LFW-dev in the bundle's own runtime; it exits
non-zero and marks the bundle 'failed' below the tolerance (fp32/fp16: min cosine >= 0.999;
int8: mean >= 0.99, min >= 0.97).

targets (this machine):
""" + targets.format_table()


def register(sub) -> None:
    """Add the `export` and `view` subcommands and their options to the subparsers `sub`."""
    p = sub.add_parser("export", help="export a model to ONNX / OpenVINO / TFLite / TensorRT as a verified bundle", description=HELP,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="registry name, .safetensors/.ckpt checkpoint, .onnx file, torch.export .pt2 file, or your module "
                   "by import path pkg.module:factory (foreign models need a card: `edgeface card new`)")
    p.add_argument("--target", choices=targets.FORMATS, help="export format")
    p.add_argument("--precision", choices=targets.PRECISIONS, help="fp32 (default), fp16 or int8 (int8 needs calibration faces)")
    p.add_argument("--graph", choices=("full", "core"), help="full (default where the target has it): uint8 NHWC faces in, normalisation and "
                   "L2 norm in the graph; core: the bare network (float32 NCHW, opset 11), the runtime normalises and L2-normalises "
                   "from the card (ncnn and Core ML take only core; column 'graph' below)")
    p.add_argument("--recipe", help="export recipe: a name (edgeface/configs/export/NAME.toml, or your own in ./export or $EDGEFACE_RECIPES) or a .toml path (flags override it)")
    p.add_argument("--out", help="bundle directory to write (replaced if it is already a bundle)")
    p.add_argument("--calib", help="folder of face photos for int8 calibration and the conformance set (default: fixed-seed CelebA-299 + AAF-8k from ../shared; never LFW)")
    p.add_argument("--card", help="model card JSON (or a bundle's edgeface.json) for a foreign MODEL (.onnx without edgeface metadata, .pt2, "
                   "import path); MODEL.card.json beside a file is found without it")
    p.add_argument("--weights", help="weights (.safetensors only) of a module given by import path (MODEL pkg.module:factory)")
    p.add_argument("--arch", help="architecture of a foreign checkpoint")
    p.add_argument("--input-size", type=_size, help="HxW of a foreign checkpoint")
    p.add_argument("--template", help="alignment template of a foreign checkpoint")
    p.add_argument("--embedding-size", type=int, default=128, help="embedding size of a foreign checkpoint (default 128)")
    p.add_argument("--n-calib", type=int, help="calibration faces (default 300)")
    p.add_argument("--n-verify", type=int, help="faces for the cosine-to-source check (default 200, disjoint from calibration)")
    p.add_argument("--n-impostor", type=int, help="AAF-8k photos whose pairs calibrate the thresholds when --lfw-folds 0 skips the benchmarks (default 2000)")
    p.add_argument("--benchmarks", default="all", help="verification records to measure through the bundle: lfw-dev, cfp-ff, cfp-fp, comma-separated or 'all' (default); "
                   "thresholds are calibrated on other people either way")
    p.add_argument("--lfw", help="LFW-style pairs folder for accuracy and thresholds (default ../shared/datasets/lfw-dev)")
    p.add_argument("--lfw-folds", type=int, help="use only the first N folds (0 skips LFW: quick checks only)")
    p.add_argument("--detector", metavar="PATH", help="ship this YuNet face detector ONNX file in the bundle (hashed like the model, licence "
                                                        "recorded; LICENSE beside it is copied too): the runtime uses it when no --detector is given")
    p.add_argument("--detector-licence", help="licence of a --detector file the kit does not know by hash (it is redistributed in the bundle)")
    p.add_argument("--qat", type=int, metavar="STEPS", help="onnx / openvino / tflite int8 only: quantization-aware training steps after PTQ "
                   "(retrains the fake-quantized network to the float one's embeddings of --qat-faces training faces disjoint from calibration and "
                   "verification; default 0: PTQ only)")
    p.add_argument("--quantizer", choices=("nncf", "pt2e"), help="int8 only: nncf (onnx, openvino: NNCF post-training quantization, the default) or pt2e "
                   "(tflite, openvino: PyTorch 2 export quantization calibrated layer by layer, the network tflite-int8 ships; for openvino "
                   "written through OpenVINO's TFLite frontend)")
    p.add_argument("--qat-lr", type=float, help="QAT learning rate (Adam; default 1e-5)")
    p.add_argument("--qat-faces", type=int, help="QAT training faces (default 1000)")
    p.add_argument("--verify", choices=("quick", "full"), help="verification level, written in the manifest: full (default) measures LFW-dev, "
                   "CFP-FF and CFP-FP through the bundle and calibrates thresholds on ~4,000 faces; quick: LFW-dev only, thresholds on ~1,000 faces")
    p.add_argument("--keep-going", action="store_true", help="after a failed parity check, still run the benchmarks and calibration "
                   "(a diagnosis; the bundle is marked failed either way). Default: stop at the first failed check")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--check", metavar="BUNDLE", help="instead of exporting: re-run BUNDLE's conformance set and hash checks")
    p.add_argument("--list-targets", action="store_true", help="print the target table and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)

    v = sub.add_parser("view", help="open a bundle's model in Netron", description="Serve a bundle's model file (or any model file) with Netron and open the browser.")
    v.add_argument("bundle", help="bundle directory or model file")
    v.add_argument("--no-browser", action="store_true", help="only serve and print the URL")
    v.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    v.add_argument("--host", default="localhost", help="address to serve on (default localhost)")
    v.set_defaults(handler=run_view)


def apply_recipe(args) -> None:
    """Recipe values fill what the command line left unset; then the built-in defaults."""
    recipe = {}
    if args.recipe:
        from ..core.profiles import load_recipe

        r = load_recipe(args.recipe)
        recipe = {"format": r.format, "precision": r.precision, **r.options}
    args.target = args.target or recipe.get("format")
    args.precision = args.precision or recipe.get("precision", "fp32")
    args.graph = getattr(args, "graph", None) or recipe.get("graph")
    args.quantizer = getattr(args, "quantizer", None) or recipe.get("quantizer")
    args.verify = getattr(args, "verify", None) or recipe.get("verify", "full")
    args.keep_going = getattr(args, "keep_going", False)
    for key, default in (("n_calib", 300), ("n_verify", 200), ("n_impostor", 2000), ("qat", 0), ("qat_faces", 1000), ("qat_lr", 1e-5)):
        if getattr(args, key) is None:
            setattr(args, key, recipe.get(key, default))
    if args.lfw_folds is None and "lfw_folds" in recipe:
        args.lfw_folds = recipe["lfw_folds"]


def run(args) -> int:
    """`edgeface export`: list the targets, check a bundle (--check) or export and verify one and print its summary.
    Returns 1 when verification failed, else 0; raises ValueError when MODEL, --target or --out is missing."""
    apply_recipe(args)
    if args.list_targets:
        print(targets.format_table())
        return 0
    if args.check:
        return run_check(args.check)
    if not args.model or not args.target or not args.out:
        raise ValueError("export needs MODEL, --target and --out (or --check BUNDLE / --list-targets)")
    targets.target(args.target, args.precision)  # a clear error for a combination the table lacks
    from ..eval.benchmarks import parse as parse_benchmarks
    from ..export import ExportOptions, export_bundle

    opts = ExportOptions(calib_dir=args.calib, n_calib=args.n_calib, n_verify=args.n_verify, n_impostor=args.n_impostor, lfw_dir=args.lfw,
                         lfw_folds=args.lfw_folds, threads=args.threads, show_progress=not args.quiet, benchmarks=parse_benchmarks(args.benchmarks), graph=args.graph,
                         detector=args.detector, detector_licence=args.detector_licence, quantizer=args.quantizer, qat_steps=args.qat, qat_lr=args.qat_lr,
                         qat_faces=args.qat_faces, verify=args.verify, keep_going=args.keep_going)
    kw = {"weights": args.weights} if getattr(args, "weights", None) else {}
    if args.arch:
        kw.update(arch=args.arch, input_size=args.input_size, template=args.template, embedding_size=args.embedding_size)
    meta = export_bundle(args.model, args.target, args.precision, args.out, opts, card_json=args.card, **kw)
    print(summary(meta, args.out))
    if meta["status"] == "failed":
        print(f"edgeface export: error: verification failed: {'; '.join(meta['verification']['failures'])}", file=sys.stderr)
        return 1
    if meta["status"] == "not-verified":
        print(f"edgeface export: the model file was NOT run here: {meta['verification'].get('reason', '')}", file=sys.stderr)
    if meta["status"] == "not-built":
        print("edgeface export: TensorRT is not installed here, so NO engine was built. The bundle holds the TensorRT-ready ONNX "
              "(verified through onnxruntime) and tensorrt_build.json; build the engine on the target machine.", file=sys.stderr)
    return 0


def summary(meta: dict, out) -> str:
    """Plain-text summary of an exported bundle's metadata: target, input, cosine parity, LFW-dev accuracy and thresholds."""
    par = meta["parity"]
    lines = [f"bundle      {out}  ({meta['status']})",
             f"target      {meta['format']}-{meta['precision']}  file {meta['model_file']}  backend {meta['backend']}",
             f"input       {meta['input']['dtype']} {meta['input']['layout']} {meta['input']['shape']}  {meta['input']['color_order']}  normalisation in graph: {meta['input']['normalization_in_graph']}",
             f"parity      cosine to source min {par['cosine_min']:.5f} mean {par['cosine_mean']:.5f} on {par['num_faces']} faces"]
    if par.get("lfw_dev"):
        lines.append(f"LFW-dev     {100 * par['lfw_dev']['accuracy_mean']:.2f} ± {100 * par['lfw_dev']['accuracy_std']:.2f} %  (source {100 * par['source_lfw_dev']['accuracy_mean']:.2f} %)")
    for k, v in meta["thresholds"]["at_far"].items():
        tar = v.get("tar_lfw_dev")
        lines.append(f"threshold   FAR {k}: cosine >= {v['threshold']:.4f}" + (f"  (TAR on LFW-dev {100 * tar:.2f} %)" if tar is not None else ""))
    lines += operating_point_lines(meta["thresholds"])
    return "\n".join(lines)


def operating_point_lines(th: dict) -> list[str]:
    """What each threshold measured: FAR / TAR on every reported set, FAR within each calibration source, and the
    population the thresholds were calibrated (or re-calibrated) on."""
    lines = []
    for k, v in th["at_far"].items():
        for pop, a in (v.get("achieved") or {}).items():
            far = "n/a" if a.get("far") is None else f"{a['far']:.2e} ({a.get('impostors_accepted')}/{a.get('num_impostor')})"
            tar = "n/a" if a.get("tar") is None else f"{100 * a['tar']:.2f} %"
            lines.append(f"  at {k} on {pop}: FAR {far}, TAR {tar}")
    for src, e in (th.get("by_source") or {}).items():
        cells = [f"FAR {a['far']:.2e} at the {k} threshold ({a['far'] / float(k):.2g}x)" for k, a in e["at_far"].items() if a.get("far") is not None]
        lines.append(f"  within {src} ({e['num_impostor']:,} impostor pairs): " + ", ".join(cells))
    cs = th.get("calibration_set") or {}
    if cs.get("population"):
        lines.append(f"calibrated  on {cs['population']!r} ({cs.get('kind', '')}), {th.get('num_impostor', 0):,} impostor pairs, {cs.get('date', '')}")
    elif cs.get("description"):
        lines.append(f"calibrated  on {cs['description']}")
    return lines


def run_check(path: str) -> int:
    """`edgeface export --check BUNDLE`: load the bundle (hashes checked) and re-run its conformance set; prints the
    report and returns 1 if it does not reproduce, else 0. A not-verified bundle is accepted: this check is its verification."""
    from ..runtime.bundle import load_bundle
    from ..runtime.conformance import check_conformance

    from ..runtime.bundle import read_meta

    # A not-verified bundle (Core ML exported off the device) is checked exactly here, on the
    # device: the conformance set is its verification.
    pending = read_meta(path)["status"] == "not-verified"
    bundle = load_bundle(path, require_verified=not pending)  # refuses altered files, invalid JSON, other major versions
    rep = check_conformance(bundle)
    print(json.dumps(rep, indent=2))
    print("\n".join(f"threshold   FAR {k}: cosine >= {v['threshold']:.4f}" for k, v in bundle.meta["thresholds"]["at_far"].items()))
    print("\n".join(operating_point_lines(bundle.meta["thresholds"])))
    if not rep["passed"]:
        print(f"edgeface export --check: error: {path} does not reproduce its conformance set", file=sys.stderr)
        return 1
    print(f"{path}: conformance passed ({rep['faces']} faces, min cosine {rep['cosine_min']:.6f}, {rep['pairs']} pair decisions)")
    return 0


def view_plan(path: str, browse: bool = True, host: str = "localhost", port: int = 8080) -> dict:
    """What `edgeface view` serves: the bundle's model file (from edgeface.json) or the file given."""
    p = Path(path)
    if p.is_dir():
        from ..runtime.bundle import read_meta

        meta = read_meta(p)
        model = p / meta["model_file"]
    else:
        model = p
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    return {"file": str(model), "address": (host, port), "browse": browse, "url": f"http://{host}:{port}"}


def run_view(args) -> int:
    """`edgeface view`: serve the model file with Netron until stopped; raises ValueError when Netron is not installed."""
    plan = view_plan(args.bundle, not args.no_browser, args.host, args.port)
    try:
        import netron
    except ImportError:
        raise ValueError("Netron is not installed: pip install netron") from None
    print(f"serving {plan['file']} at {plan['url']} (Ctrl-C to stop)")
    netron.serve(plan["file"], None, plan["address"], plan["browse"])
    netron.wait()
    return 0
