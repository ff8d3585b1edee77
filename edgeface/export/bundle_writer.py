"""`export_bundle`: source model -> converted file(s) -> edgeface.json -> verification ->
conformance set, in a staging directory that replaces BUNDLE_DIR only at the end. Each stage
(plan_export, convert, draft_manifest, check_parity, calibrate_thresholds, calibrated_quality,
write_conformance_set, seal) is a function of typed values.

A bundle that fails verification is still written (status "failed", with the failures and
figures, so it can be inspected) and load_bundle refuses it; the CLI exits non-zero.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.align import template_landmarks
from ..core.card import ModelCard
from ..core.preprocess import l2_normalize
from ..runtime.codecs import HAMMING_CODECS, get_codec
from ..runtime.bundle import BUNDLE_JSON, SCHEMA_VERSION, Bundle, Manifest, file_sha256, model_files, validate_meta, write_manifest_digest
from ..core.targets import TARGETS, Target
from ..core.targets import target as lookup_target
from . import verify as V
from .converters import CONVERTERS, INT8_QUANTIZERS, Converted, default_quantizer, ExportSource, onnx_io

def quality_defaults() -> dict:
    """The bundle's quality section: the runtime's own thresholds under the runtime's own key
    names, per mode (one naming across export and runtime; the runtime still reads the
    older "*_deg"/"*_px" spellings of bundles written before)."""
    from ..runtime.quality import DEFAULT_THRESHOLDS

    return {"source": "kit defaults (not calibrated for this model); a quality gate should tune them on its own data",
            **{mode: dict(th) for mode, th in DEFAULT_THRESHOLDS.items()}}


def calibrated_quality(bundle, crops: np.ndarray, faces_desc: str, landmarks: np.ndarray | None = None) -> dict:
    """quality_defaults with min_flip_similarity set from the exported model's own flip
    similarity over calibration faces (the measure is model-dependent; the others are not), and
    max_landmark_residual from the detector's landmarks on those faces against the card's template."""
    from ..core.align import landmark_residual
    from ..runtime.quality import (FLIP_PERCENTILES, LANDMARK_PERCENTILES, MIN_FACES_TO_CALIBRATE, calibrate_flip_thresholds,
                                   calibrate_landmark_thresholds, flip_similarity)

    q = quality_defaults()
    if len(crops) < MIN_FACES_TO_CALIBRATE:
        q["notes"] = (f"min_flip_similarity and max_landmark_residual not calibrated: {len(crops)} calibration faces, "
                      f"need {MIN_FACES_TO_CALIBRATE}")
        return q
    lm_note = "max_landmark_residual: kit default (no calibration landmarks)"
    if landmarks is not None and len(landmarks) >= MIN_FACES_TO_CALIBRATE:
        card = bundle.card
        tpl = template_landmarks(card.template, tuple(card.input_size))
        res = [landmark_residual(lm, tpl) for lm in landmarks]
        for mode, t in calibrate_landmark_thresholds(res).items():
            q[mode]["max_landmark_residual"] = t
        lm_note = ("max_landmark_residual = " + " / ".join(f"{f:g} x the {p:g}th percentile ({mode})" for mode, (p, f) in LANDMARK_PERCENTILES.items())
                   + f" of the landmark residual of the detector's landmarks on {len(res)} calibration faces against {card.template}")
    fs = np.concatenate([flip_similarity(bundle, crops[i : i + 64])[0] for i in range(0, len(crops), 64)])
    for mode, t in calibrate_flip_thresholds(fs).items():
        q[mode]["min_flip_similarity"] = t
    from ..runtime.quality import calibrate_nonface

    # non-face prototypes: with app landmarks nothing else stops noise passing as a face (issue 20)
    q["nonface"] = calibrate_nonface(bundle.embed, crops)
    q["source"] = "kit defaults, with min_flip_similarity and max_landmark_residual calibrated for this model and template"
    q["notes"] = (f"min_flip_similarity = the {FLIP_PERCENTILES['verify']:g}th (verify) / {FLIP_PERCENTILES['enroll']:g}th (enroll) "
                  f"percentile of this exported model's flip similarity over {len(fs)} calibration faces ({faces_desc}); {lm_note}")
    return q


# Detectors whose provenance the kit knows, by sha256 of the file (edgeface export --detector).
KNOWN_DETECTORS = {
    "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4": {
        "kind": "yunet",
        "name": "YuNet 2023mar (face_detection_yunet_2023mar.onnx)",
        "licence": "Apache-2.0",
        "source": "OpenCV Zoo models/face_detection_yunet, byte-identical to ShiqiYu/libfacedetection.train onnx/yunet_s_640_640.onnx",
    },
}
DETECTOR_DIR = "detector"


def add_detector(bundle_dir: Path, detector: str | os.PathLike, licence: str | None = None) -> tuple[dict, dict[str, str]]:
    """Copy a YuNet ONNX detector (and a LICENSE file beside it, if any) into BUNDLE_DIR/detector/.
    Returns (the manifest's `detector` section, {bundle-relative name: sha256} to add to `files`).

    The file must load as YuNet (1x3x640x640 input). Provenance comes from KNOWN_DETECTORS by hash;
    another file needs `licence` (the exporter redistributes it inside every bundle)."""
    from ..core.detect import YuNetDetector

    src = Path(detector)
    if not src.is_file():
        raise FileNotFoundError(f"--detector {src}: file not found (YuNet's face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
    try:
        YuNetDetector(src)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own parse errors: not a YuNet model either way
        raise ValueError(f"--detector {src}: not a YuNet ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    digest = file_sha256(src)
    known = KNOWN_DETECTORS.get(digest)
    if known is None and not licence:
        raise ValueError(f"--detector {src}: not the OpenCV Zoo YuNet file the kit knows (sha256 {digest[:16]}…); it is copied into "
                         "every bundle, so say under which licence with --detector-licence")
    section = dict(known or {"kind": "yunet", "name": src.name, "source": f"user file {src.name}"})
    if licence:
        section["licence"] = licence
    d = bundle_dir / DETECTOR_DIR
    d.mkdir(parents=True, exist_ok=True)
    name = f"{DETECTOR_DIR}/{src.name}"
    shutil.copyfile(src, bundle_dir / name)
    files = {name: digest}
    section["file"] = name
    lic = src.parent / "LICENSE"
    if lic.is_file():
        shutil.copyfile(lic, d / "LICENSE")
        section["licence_file"] = f"{DETECTOR_DIR}/LICENSE"
        files[section["licence_file"]] = file_sha256(d / "LICENSE")
    return section, files


@dataclass
class ExportOptions:
    calib_dir: str | None = None
    n_calib: int = 300
    n_verify: int = 200
    n_impostor: int = 2000
    lfw_dir: str | None = None
    lfw_folds: int | None = None  # None: all folds; 0: skip LFW and the other benchmarks (tests, quick checks)
    benchmarks: tuple[str, ...] = ("lfw-dev", "cfp-ff", "cfp-fp")  # verification records (edgeface.eval.benchmarks); lfw_folds limits each
    n_threshold_faces: int = 4000  # threshold calibration photos (face_sets.threshold_calibration_population)
    n_conformance: int = 8
    threads: int = 2
    show_progress: bool = True
    seed: int = 0
    graph: str | None = None  # "full" | "core"; None: the target's default (edgeface.core.targets graphs[0])
    detector: str | None = None  # a YuNet ONNX file to ship in the bundle (the runtime's default detector)
    detector_licence: str | None = None  # needed for a detector file the kit does not know (KNOWN_DETECTORS)
    quantizer: str | None = None  # int8 only: one of converters.INT8_QUANTIZERS[target] (None: the target's default)
    qat_steps: int = 0  # int8 only: > 0 quantizes by quantization-aware training (the quantizer's QAT route)
    qat_lr: float = 1e-5
    qat_faces: int = 1000  # training faces for QAT (../shared CelebA-299 + AAF-8k, none of the calibration or verification photos)
    keep_going: bool = False  # after a failed parity check, still run the benchmarks and calibration (a diagnosis); default: stop there
    verify: str = "full"  # "full": LFW-dev + CFP-FF + CFP-FP and the full threshold population; "quick": see VERIFY_LEVELS


# Verification levels (`edgeface export --verify`), written in the manifest (verification.level). Both check parity on the
# verification faces, calibrate the thresholds on people none of the reported sets holds and write the conformance set.
# full: LFW-dev, CFP-FF and CFP-FP through the bundle, thresholds on ~4,000 faces. quick: LFW-dev only, thresholds on
# ~1,000 faces (~500 k impostor pairs: FAR 1e-4 rests on ~50 of them, so its threshold is coarser).
VERIFY_LEVELS = {"full": {}, "quick": {"benchmarks": ("lfw-dev",), "n_threshold_faces": 1000}}


def verification_options(opts: ExportOptions) -> ExportOptions:
    """opts narrowed to its verification level (VERIFY_LEVELS); refuses an unknown level."""
    if opts.verify not in VERIFY_LEVELS:
        raise ValueError(f"--verify {opts.verify!r}: choose one of {', '.join(VERIFY_LEVELS)}")
    level = VERIFY_LEVELS[opts.verify]
    changes = {}
    if "benchmarks" in level:
        changes["benchmarks"] = tuple(b for b in opts.benchmarks if b in level["benchmarks"]) or level["benchmarks"]
    if "n_threshold_faces" in level:
        changes["n_threshold_faces"] = min(opts.n_threshold_faces, level["n_threshold_faces"])
    return replace(opts, **changes)


def log(msg: str) -> None:
    """Print an export progress message to stderr, prefixed with [export]."""
    print(f"[export] {msg}", file=sys.stderr, flush=True)


def load_source(spec: str, card_json: str | None = None, **model_kwargs) -> ExportSource:
    """A registry name / checkpoint (torch) or an .onnx file (card from --card or the ONNX metadata)."""
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        from ..core.card import read_card_file
        from ..models.foreign import sidecar_card

        card = None
        if card_json:
            card = read_card_file(card_json)  # a bare card, or an edgeface.json
        else:
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            if "edgeface_card" in props:
                card = ModelCard.from_json(props["edgeface_card"])
            elif sidecar_card(path).is_file():
                card = read_card_file(sidecar_card(path))
        if card is None:
            raise ValueError(f"{path}: no model card in its ONNX metadata or beside it ({sidecar_card(path).name}); pass --card CARD.json "
                             f"(a model card or a bundle's edgeface.json), or write one with `edgeface card new {path} --template T --mean M --std S`")
        return ExportSource(card, card.name, file_sha256(path), "onnx", str(path), onnx_path=path)
    from ..zoo import load_torch_model

    if card_json:
        model_kwargs["card"] = card_json
    net, card = load_torch_model(spec, **model_kwargs)
    if path.is_file():
        digest = file_sha256(path)
    else:
        import hashlib


        h = hashlib.sha256()
        for k, v in net.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        digest = h.hexdigest()
    return ExportSource(card, card.name, digest, "torch", str(spec), net=net)


def source_embedder(src: ExportSource):
    """The source model as an embedder, the reference for parity: its torch network on the CPU, or its ONNX file
    through onnxruntime (wrapped as a Bundle)."""
    if src.kind == "torch":
        from ..models.embedder import TorchEmbedder

        return TorchEmbedder(src.net, src.card, device="cpu")
    from ..runtime.backends import make_backend

    i, o = onnx_io(src.onnx_path, src.card)
    return Bundle(src.onnx_path.parent, {"input": i, "format": "onnx", "precision": "fp32"}, src.card, "onnxruntime",
                  make_backend("onnxruntime", src.onnx_path))


_FACES: dict = {}


def _faces(card: ModelCard, opts: ExportOptions):
    """Calibration / verification / impostor faces, aligned once per process for a card."""
    key = (card.template, tuple(card.input_size), opts.calib_dir, opts.n_calib, opts.n_verify, opts.n_impostor, opts.lfw_folds == 0, opts.seed)
    if key not in _FACES:
        _FACES.clear()
        _FACES[key] = _make_faces(card, opts)
    return _FACES[key]


def _make_faces(card: ModelCard, opts: ExportOptions):
    from ..eval.faces import align_files, default_split, folder_faces

    # 10 % spare verification photos: a few have no detectable face, and the check promises n_verify faces.
    split = default_split(opts.n_calib, opts.n_verify + max(4, opts.n_verify // 10), opts.n_impostor, opts.seed)
    if opts.calib_dir:
        calib = folder_faces(opts.calib_dir, card, opts.n_calib, opts.seed, opts.show_progress)
        calib_desc = {"source": f"user folder {opts.calib_dir}", "faces": len(calib)}
    else:
        calib = align_files(split.calib_files, card, split.calib_ids, show_progress=opts.show_progress)
        calib_desc = {"source": "../shared: CelebA-299 (2 photos each of fixed-seed people) + AAF-8k, fixed seed", "seed": opts.seed, "faces": len(calib)}
    verify = align_files(split.verify_files, card, split.verify_ids, show_progress=opts.show_progress)
    calib_set = set(calib.paths)
    keep = [k for k, p in enumerate(verify.paths) if p not in calib_set]
    verify = verify.take(keep[: opts.n_verify])
    impostors = None
    if opts.n_impostor and opts.lfw_folds == 0:  # only used where the benchmarks are skipped (thresholds then come from AAF-8k alone)
        impostors = align_files([f for f in split.impostor_files if f not in calib_set], card, show_progress=opts.show_progress)
    return calib, calib_desc, verify, impostors


def _conformance_pick(calib, n: int) -> list[int]:
    """Prefer pairs of photos of the same person so the set has genuine and impostor pairs."""
    by_id: dict[str, list[int]] = {}
    for k, ident in enumerate(calib.identities):
        if ident:
            by_id.setdefault(ident, []).append(k)
    pick: list[int] = []
    for ident in sorted(by_id):
        if len(by_id[ident]) >= 2 and len(pick) + 2 <= n // 2 + n // 4:
            pick += by_id[ident][:2]
    rest = [k for k in range(len(calib)) if k not in pick]
    return (pick + rest)[:n]


def _staging(out: Path) -> Path:
    if out.exists() and not (out / BUNDLE_JSON).is_file() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not an edgeface bundle; refusing to overwrite it (choose another --out)")
    stage = out.parent / f".{out.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


@dataclass(frozen=True)
class ExportPlan:
    """What an export makes: the loaded source, its target row and graph variant, where it goes."""

    source: ExportSource
    target: Target
    graph: str
    out: Path


@dataclass(frozen=True)
class ParityCheck:
    """The converted model against its source on the verification faces, and what failed."""

    parity: dict
    failures: tuple[str, ...]


def plan_export(spec: str, format: str, precision: str, out: str | os.PathLike, opts: ExportOptions, card_json: str | None = None,
                src: ExportSource | None = None, **model_kwargs) -> ExportPlan:
    """Stage 0: the target row, the graph variant and the loaded source; every refusal happens here, before any work."""
    tgt = lookup_target(format, precision)
    graph = opts.graph or tgt.graphs[0]
    if graph not in tgt.graphs:
        raise ValueError(f"{tgt.key} writes the {' or '.join(tgt.graphs)} graph, not {graph!r}")
    if opts.qat_steps < 0:
        raise ValueError(f"--qat must be >= 0 steps, got {opts.qat_steps}")
    if opts.qat_steps and tgt.key not in INT8_QUANTIZERS:
        raise ValueError(f"--qat (quantization-aware training) exports {', '.join(INT8_QUANTIZERS)} only, not {tgt.key}")
    if opts.quantizer is not None and opts.quantizer not in INT8_QUANTIZERS.get(tgt.key, {}):
        choices = INT8_QUANTIZERS.get(tgt.key)
        raise ValueError(f"--quantizer {opts.quantizer}: {tgt.key} " + (f"quantizes with {' or '.join(choices)}" if choices else
                         f"is not quantized here (int8 targets: {', '.join(INT8_QUANTIZERS)})"))
    src = src or load_source(spec, card_json, **model_kwargs)
    if opts.qat_steps and src.kind != "torch":
        raise ValueError(f"{src.path}: --qat needs a PyTorch model (it retrains the network), not an ONNX file")
    if src.kind != "torch" and opts.quantizer and opts.quantizer != default_quantizer(tgt.key):
        raise ValueError(f"{src.path}: --quantizer {opts.quantizer} quantizes the PyTorch network; from an ONNX file {tgt.key} "
                         f"quantizes with {default_quantizer(tgt.key)}")
    if src.kind == "onnx" and tgt.format == "tflite":
        from . import onnx2tf_path

        if not onnx2tf_path.available():
            raise ValueError(f"{src.path}: TFLite from an ONNX file needs onnx2tf and tensorflow (pip install 'edgeface[onnx2tf]', about 2 GB), "
                             "not installed here; from the PyTorch model (a .pt2 file, or your module by import path pkg.module:factory "
                             "--weights W.safetensors) TFLite is converted by litert-torch, no TensorFlow")
    if src.kind == "onnx" and not tgt.from_onnx:
        raise ValueError(f"{src.path}: {tgt.key} is exported from a PyTorch model only; from an ONNX file the targets are "
                         f"{', '.join(t.key for t in TARGETS if t.from_onnx)}")
    return ExportPlan(src, tgt, graph, Path(out))


def qat_training_faces(card: ModelCard, opts: ExportOptions, exclude: set[str]) -> np.ndarray:
    """opts.qat_faces aligned faces from the shared training sets (fixed seed), none of them a
    photo in `exclude` (the export's calibration and verification photos)."""
    from ..core import paths
    from ..eval.faces import TRAIN_SOURCES, align_files, list_images

    skip = {os.path.realpath(f) for f in exclude}
    files = [f for s in TRAIN_SOURCES for f in list_images(paths.shared_dir() / "datasets" / s / "images", "QAT training")
             if os.path.realpath(f) not in skip]
    rng = np.random.default_rng(opts.seed + 1)
    pick = [files[i] for i in np.sort(rng.choice(len(files), min(opts.qat_faces, len(files)), replace=False))]
    return align_files(pick, card, show_progress=opts.show_progress).crops


def convert(plan: ExportPlan, stage: Path, calib, opts: ExportOptions | None = None, verify=None) -> tuple[Converted, float]:
    """Stage 1: the target's converter writes the model file(s) into the staging folder (with
    opts.quantizer, an int8 target quantized by that quantizer of INT8_QUANTIZERS; with opts.qat_steps,
    by its quantization-aware training on faces disjoint from `calib` and `verify`)."""
    tgt = plan.target
    t0 = time.time()
    quantizer = (opts.quantizer if opts is not None else None) or default_quantizer(tgt.key)
    if opts is not None and opts.qat_steps:
        train = qat_training_faces(plan.source.card, opts, set(calib.paths) | set(verify.paths if verify is not None else []))
        conv = INT8_QUANTIZERS[tgt.key][quantizer][1](plan.source, stage, calib.crops, train, opts.qat_steps, opts.qat_lr)
    elif quantizer != default_quantizer(tgt.key):  # another quantizer's post-training route; the default is the table row's converter
        conv = INT8_QUANTIZERS[tgt.key][quantizer][0](plan.source, stage, calib.crops)
    else:
        conv = CONVERTERS[tgt.converter](plan.source, stage, calib.crops if tgt.needs_calibration else None,
                                         **({"graph": plan.graph} if len(tgt.graphs) > 1 else {}))
    seconds = time.time() - t0
    log(f"converted in {seconds:.1f} s -> {conv.model_file}")
    return conv, seconds


def draft_manifest(plan: ExportPlan, conv: Converted, files: dict[str, str], seconds: float, calib_desc: dict, detector_section: dict | None) -> Manifest:
    """Stage 2: edgeface.json before verification (status "unverified", thresholds that accept nothing)."""
    src, tgt, card = plan.source, plan.target, plan.source.card
    h, w = card.input_size
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kit_version": __version__,
        "status": "unverified",
        "format": tgt.format,
        "precision": tgt.precision,
        "backend": tgt.backend,
        "model_file": conv.model_file,
        "files": files,
        "input": conv.input,
        "output": conv.output,
        "alignment": {
            "template": card.template,
            "crop_size": [h, w],
            "landmarks": np.round(template_landmarks(card.template, (h, w)), 4).tolist(),
            "landmark_order": "right eye, left eye, nose tip, right mouth corner, left mouth corner (subject's right = image left)",
            "transform": "least-squares similarity (rotation, uniform scale, translation) from the 5 detected landmarks onto these, bilinear warp",
        },
        "embedding_size": card.embedding_size,
        "thresholds": {"metric": "cosine", "at_far": {k: {"threshold": 1.0} for k in V.FARS}, "method": "pending verification"},
        "quality": quality_defaults(),
        "source": {"name": src.name, "sha256": src.sha256, "path": src.path, "kind": src.kind},
        "parity": {},
        "licence": card.licence,
        "card": card.to_dict(),
        "export": {"converter": conv.converter or tgt.converter, "target": tgt.key, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "seconds": round(seconds, 2), "details": conv.info, "calibration": calib_desc if tgt.needs_calibration else None,
                   "engine_built": conv.built, "graph": plan.graph},
        "conformance": None,
    }
    if detector_section:
        meta["detector"] = detector_section
    return Manifest.from_dict(meta, "draft edgeface.json", validate=False)  # export_bundle writes it next: _write_meta validates


def check_parity(bundle: Bundle, src_emb, verify, precision: str, conv: Converted) -> ParityCheck:
    """Stage 3: cosine of the bundle's embeddings (through its own runtime) to the source's, and the output norms."""
    raw = bundle.raw_output(verify.crops)
    par = V.parity(l2_normalize(raw), src_emb.embed(verify.crops))  # what Bundle.embed returns
    par.update(faces_from="CelebA-299 + AAF-8k photos not used for calibration", tolerance=V.TOLERANCES[precision],
               runtime=bundle.backend, measured_on=bundle.meta["model_file"])
    failures = V.tolerance_failures(par, precision)
    if conv.output.get("l2_normalized_in_graph"):
        par.update(V.output_norms(raw))
        failures += V.norm_failures(par)
    log(f"parity on {par['num_faces']} faces: cosine min {par['cosine_min']:.5f} mean {par['cosine_mean']:.5f}")
    return ParityCheck(par, tuple(failures))


def calibrate_thresholds(bundle: Bundle, plan: ExportPlan, src_emb, impostors, opts: ExportOptions) -> tuple[dict, dict]:
    """Stage 4: (benchmark records for the parity section, the thresholds section)."""
    if opts.lfw_folds != 0:
        return verify_on_benchmarks(bundle, plan.source, src_emb, opts)
    thresholds = {"metric": "cosine", "at_far": {}, "method": "not measured (LFW skipped)"}
    if impostors is not None and len(impostors) > 1:
        emb = bundle.embed(impostors.crops)
        imp = V.impostor_scores(emb)
        thresholds = {"metric": "cosine", "at_far": V.calibrate_thresholds(np.zeros(0), imp), "num_genuine": 0, "num_impostor": int(len(imp)),
                      "method": f"impostor scores: all pairs among {len(impostors)} AAF-8k photos (LFW-dev skipped, no TAR)",
                      "codecs": V.codec_thresholds({name: (np.zeros(0), V.impostor_scores(get_codec(name, emb.shape[1]).score_vectors(emb)))
                                                    for name in HAMMING_CODECS})}
    if not thresholds["at_far"]:
        thresholds["at_far"] = {k: {"threshold": 1.0, "note": "not calibrated"} for k in V.FARS}
    return {}, thresholds


def seal(stage: Path, out: Path, manifest: Manifest) -> dict:
    """Last stage: the final edgeface.json (validated, digest written), then the staging folder replaces OUT.
    Returns the document written."""
    meta = _write_meta(stage, manifest)
    if out.exists():
        shutil.rmtree(out)
    os.replace(stage, out)
    return meta


def export_bundle(spec: str, format: str, precision: str, out: str | os.PathLike, opts: ExportOptions | None = None,
                  card_json: str | None = None, src: ExportSource | None = None, **model_kwargs) -> dict:
    """Export, verify, write BUNDLE_DIR. Returns the edgeface.json written (status says how it went).

    The stages, each taking and returning values: plan -> convert -> draft manifest -> parity ->
    thresholds -> quality -> conformance -> seal. The bundle used for verification is rebuilt
    with each new section (dataclasses.replace), never patched."""
    opts = verification_options(opts or ExportOptions())
    if opts.threads:
        try:
            import torch

            torch.set_num_threads(opts.threads)
        except ImportError:
            pass
    plan = plan_export(spec, format, precision, out, opts, card_json, src, **model_kwargs)
    tgt, card, out = plan.target, plan.source.card, plan.out
    how = tgt.from_onnx if plan.source.kind == "onnx" else tgt.notes
    if opts.quantizer or opts.qat_steps:  # the target's notes describe its default quantizer's post-training route
        how = f"quantizer {opts.quantizer or default_quantizer(tgt.key)}" + (f", {opts.qat_steps} QAT steps" if opts.qat_steps else "")
    log(f"{card.name} -> {tgt.key} ({how})")
    calib, calib_desc, verify, impostors = _faces(card, opts)
    if len(verify) < 8:
        raise ValueError(f"only {len(verify)} verification faces could be aligned; need at least 8")
    stage = _staging(out)
    detector_section, det_files = None, {}
    if opts.detector:  # before the (slow) conversion: a wrong file fails now
        try:
            detector_section, det_files = add_detector(stage, opts.detector, opts.detector_licence)
        except (OSError, ValueError):
            shutil.rmtree(stage, ignore_errors=True)
            raise
        log(f"detector {detector_section['name']} -> {detector_section['file']} ({detector_section['licence']})")
    conv, seconds = convert(plan, stage, calib, opts, verify)
    files = {f: file_sha256(stage / f) for f in conv.files}
    files.update(det_files)
    manifest = draft_manifest(plan, conv, files, seconds, calib_desc, detector_section)
    draft = _write_meta(stage, manifest)

    # ---- verification through the bundle's own runtime
    vfile, vbackend = conv.model_file, tgt.backend
    if not conv.built:
        vfile, vbackend = conv.verify_file, conv.verify_backend
        log(f"verifying {vfile} through {vbackend} ({conv.model_file} cannot run here)")
    bundle = load_bundle_for_verification(stage, dict(draft, model_file=vfile), card, vbackend, opts.threads)
    src_emb = source_embedder(plan.source)
    t1 = time.time()
    checked = check_parity(bundle, src_emb, verify, precision, conv)
    failures = list(checked.failures)
    if failures and tgt.format in ("ncnn", "mnn") and conv.built:  # which op: bisect the graph it was converted from
        from .converters import diagnose_divergence

        try:
            failures.append(diagnose_divergence(plan.source, tgt.format, plan.graph, verify.crops[:4]))
        except (ValueError, OSError) as exc:
            failures.append(f"{tgt.format}: op-by-op diagnosis did not run ({exc})")
        log(failures[-1])
    stopped = bool(failures) and not opts.keep_going
    if stopped:  # the first gate failed: the benchmarks and calibration would only measure a wrong model
        log("parity FAILED: stopping before the benchmarks, threshold calibration and conformance set "
            "(--keep-going measures them anyway, for a diagnosis)")
        records = {}
        thresholds = {**manifest.thresholds, "method": "not measured: the export stopped at its failed parity check"}
        quality, conformance = manifest.quality, None
    else:
        records, thresholds = calibrate_thresholds(bundle, plan, src_emb, impostors, opts)
        bundle = replace(bundle, meta={**bundle.meta, "thresholds": thresholds})
        quality = calibrated_quality(bundle, calib.crops, calib_desc["source"], calib.landmarks)
        log(f"quality gate: min_flip_similarity verify {quality['verify']['min_flip_similarity']:.3f}, enroll {quality['enroll']['min_flip_similarity']:.3f}")
        conformance = None
        bundle = replace(bundle, meta={**bundle.meta, "quality": quality})  # the conformance set records the gate it is sealed with
        if len(calib) and opts.n_conformance:
            pick = _conformance_pick(calib, opts.n_conformance)
            conformance = write_conformance_set(bundle, calib.crops[pick], [calib.identities[k] for k in pick])
    parity = {**checked.parity, **records, "seconds": round(time.time() - t1, 1)}
    verification = {"failures": failures, "passed": not failures, "level": opts.verify}
    if stopped:
        verification["stopped_at"] = "parity"
    if not conv.built and conv.unbuilt_reason:
        verification["reason"] = conv.unbuilt_reason
    status = "failed" if failures else ("verified" if conv.built else conv.unbuilt_status)
    manifest = replace(manifest, parity=parity, thresholds=thresholds, quality=quality, conformance=conformance, verification=verification, status=status)
    del bundle  # the runtime session goes before its files move
    meta = seal(stage, out, manifest)
    if failures:
        log(f"VERIFICATION FAILED for {tgt.key}: {'; '.join(failures)} — bundle written to {out} with status 'failed'")
    elif not conv.built:
        log(f"{out}: {status}: {conv.unbuilt_reason or 'TensorRT engine NOT built (TensorRT not installed here)'}; {vfile} was verified through {vbackend}")
    else:
        log(f"{out}: verified ({tgt.key}, {sum((out / f).stat().st_size for f in model_files(meta)) / 1e6:.2f} MB)")
    return meta


_CALIBRATION: dict = {}


def _threshold_population(card: ModelCard, opts: ExportOptions):
    """The threshold calibration faces (people disjoint from the reported sets), aligned once per card."""
    from ..eval.faces import align_files, threshold_calibration_population

    key = (card.template, tuple(card.input_size), opts.seed, opts.n_threshold_faces)
    if key not in _CALIBRATION:
        _CALIBRATION.clear()
        pop = threshold_calibration_population(opts.n_threshold_faces, seed=opts.seed)
        _CALIBRATION[key] = (align_files(pop.files, card, pop.identities, show_progress=opts.show_progress), pop.description)
    return _CALIBRATION[key]


def verify_on_benchmarks(bundle: Bundle, src: ExportSource, src_emb, opts: ExportOptions) -> tuple[dict, dict]:
    """(records, thresholds): records[<benchmark>] for the parity section (LFW-dev, CFP-FF, CFP-FP
    through the bundle's own runtime, each with its dataset identity, and the source's LFW-dev),
    and the thresholds section: calibrated on people none of them contains, with what each
    threshold achieves on each of them."""
    par: dict = {}
    from ..eval import benchmarks
    from ..core.landmarks import LandmarkStore

    store = LandmarkStore.default()
    if opts.lfw_dir:
        from ..eval.datasets import first_folds, load_pairs

        lfw_pairs = first_folds(load_pairs(opts.lfw_dir), opts.lfw_folds)
    else:
        lfw_pairs = benchmarks.get("lfw-dev").pairs(opts.lfw_folds)
    populations, by_codec_pop = {}, {}
    for name in opts.benchmarks:
        res = V.benchmark_scores(bundle, name, store, opts.lfw_folds, opts.show_progress, codecs=HAMMING_CODECS,
                                 pairs=lfw_pairs if name == "lfw-dev" else None)
        key = name.replace("-", "_")
        par[key] = res["report"]
        populations[key] = (res["genuine"], res["impostor"])
        by_codec_pop[key] = res["codecs"]
        log(f"{name} {100 * res['report']['accuracy_mean']:.2f} % ({res['report']['num_failed']} pairs with an undetected face)")
    if "lfw_dev" in par:
        par["source_lfw_dev"] = V.cached_source_lfw(src.sha256, lfw_pairs, lambda: {
            k: v for k, v in V.benchmark_scores(src_emb, "lfw-dev", store, show_progress=opts.show_progress, pairs=lfw_pairs, impostors=False)["report"].items()
            if k in V.REPORT_KEYS})
        par["lfw_accuracy_drop"] = round(float(par["source_lfw_dev"]["accuracy_mean"] - par["lfw_dev"]["accuracy_mean"]), 5)
        log(f"LFW-dev {100 * par['lfw_dev']['accuracy_mean']:.2f} % (source {100 * par['source_lfw_dev']['accuracy_mean']:.2f} %)")
    faces, description = _threshold_population(bundle.card, opts)
    emb = bundle.embed(faces.crops)
    genuine, impostor = V.population_scores(emb, faces.identities)
    at_far = V.calibrate_thresholds(genuine, impostor)
    achieved, notes = V.achieved_at_thresholds(at_far, populations)
    for key, entry in at_far.items():
        entry["tar_calibration"] = entry.pop("tar_lfw_dev")
        entry["tar_lfw_dev"] = achieved[key].get("lfw_dev", {}).get("tar")
        entry["achieved"] = achieved[key]
    codecs = {}
    for codec in HAMMING_CODECS:
        sv = get_codec(codec, emb.shape[1]).score_vectors(emb)
        codec_gen, codec_imp = V.population_scores(sv, faces.identities)
        codecs[codec] = {"similarity": "Hamming: 1 - 2h/bits", "at_far": V.calibrate_thresholds(codec_gen, codec_imp), "far_curve": V.far_curve(codec_imp)}
        for key, entry in codecs[codec]["at_far"].items():
            entry["tar_calibration"] = entry.pop("tar_lfw_dev")
            entry["achieved"] = V.achieved_at_thresholds({key: entry}, {p: c[codec] for p, c in by_codec_pop.items()})[0][key]
    for n in notes:
        log(f"threshold note: {n}")
    return par, {
        "metric": "cosine",
        "at_far": at_far,
        "method": (f"calibrated on {description}: threshold = lowest cosine at which the calibration FAR <= target. "
                   f"at_far.*.achieved: FAR and TAR of that threshold on each reported set ({', '.join(opts.benchmarks)}; FAR over all pairs "
                   "of its images of different people, frontal x profile for CFP-FP). Accept a match when cosine >= threshold."),
        "calibration_set": {"description": description, "num_faces": len(faces), "num_people": len(set(faces.identities)),
                            "sources": sorted({i.split(":", 1)[0] for i in faces.identities})},
        "num_genuine": int(len(genuine)),
        "num_impostor": int(len(impostor)),
        "far_curve": V.far_curve(impostor),  # for a threshold at a target FPIR (runtime.openset)
        "by_source": V.by_source(emb, faces.identities, at_far),  # the same thresholds within each calibration source (issue 32)
        "notes": notes,
        # galleries storing Hamming-compared templates score in another space: their own thresholds, calibrated the same way
        "codecs": codecs,
    }


def load_bundle_for_verification(stage: Path, meta: dict, card: ModelCard, backend: str, threads: int) -> Bundle:
    """The staged bundle opened directly with `backend` (`threads` threads) to verify it: not sealed yet, so no hash checks."""
    from ..runtime.backends import make_backend

    return Bundle(stage, meta, card, backend, make_backend(backend, stage / meta["model_file"], threads))


def write_conformance_set(bundle: Bundle, crops: np.ndarray, identities: list[str]) -> dict:
    """Embed `crops` through the bundle and store them with the expected results as its conformance set (runtime.conformance)."""
    from ..runtime.conformance import write_conformance

    return write_conformance(bundle, crops, identities)


def _write_meta(stage: Path, manifest: Manifest) -> dict:
    meta = manifest.to_dict()
    validate_meta(meta, str(stage / BUNDLE_JSON))
    tmp = stage / (BUNDLE_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False))
    os.replace(tmp, stage / BUNDLE_JSON)
    write_manifest_digest(stage)  # edgeface.json.sha256: load_bundle refuses a manifest changed after this
    return meta
