"""`edgeface enroll | verify | identify | gallery`: the on-device runtime on image files.

Torch-free: these commands load an exported bundle through edgeface.runtime and store
templates in an SQLite gallery. Exit codes (EXIT_CODES, also in `--help` and docs/runtime.md):
0 match / identified / done, 1 error (message on stderr, or a JSON object with --json),
2 bad command line, 3 no match / unknown person, 4 the face was rejected (unreadable, no face,
quality), 130 interrupted, 141 the reader of the output closed it (`| head`).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..runtime.codecs import CODECS
from ..runtime.face import MULTIPLE_FACE_POLICIES

EXIT_OK, EXIT_NO_MATCH, EXIT_REJECTED = 0, 3, 4
EXIT_CODES = """exit codes: 0 match / identified / done, 1 error, 2 bad command line,
3 no match / unknown person / not enrolled name to remove, 4 face rejected (see its reason), 130 interrupted,
141 the output's reader closed it (e.g. | head)"""


def _landmarks(text: str):
    import numpy as np

    vals = [v for v in text.replace(";", ",").split(",") if v.strip()]
    try:
        arr = np.array([float(v) for v in vals], dtype=np.float64)
    except ValueError:
        raise ValueError(f"--landmarks: expected 10 numbers x1,y1,...,x5,y5, got {text!r}") from None
    return arr  # the count and NaNs are checked (and reported as a rejection) by the runtime


def _similarity(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a similarity between -1 and 1, got {text!r}") from None
    if not math.isfinite(v) or not -1.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a similarity between -1 and 1, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v}")
    return v


def _add_common(p, need_bundle: bool = True, landmarks: bool = False) -> None:
    if need_bundle:
        p.add_argument("--bundle", required=True, help="exported model bundle folder (made by `edgeface export`)")
        p.add_argument("--backend", help="inference backend from the bundle (default: the best available)")
        p.add_argument("--threads", type=int, default=0, help="inference threads (default: backend's choice)")
        p.add_argument("--detector", help="YuNet face detector ONNX file (face_detection_yunet_2023mar.onnx from the OpenCV model zoo; "
                                          "default: the one shipped in the bundle (edgeface export --detector), else ../shared/models/yunet/ in a checkout)" + ("; not needed with --landmarks" if landmarks else ""))
        p.add_argument("--multiple-faces", choices=list(MULTIPLE_FACE_POLICIES), default="primary",
                       help="several faces in an image: primary = largest nearest the centre (default), largest, center (nearest the "
                            "centre), or reject the image; the result reports how many faces were found")
        p.add_argument("--no-embedding-quality", action="store_true", help="skip the flip-consistency quality score (halves embedding time)")
    p.add_argument("--gallery", required=True, help="SQLite gallery file (enroll creates it; other commands need it to exist)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def register(sub) -> None:
    """Add the `enroll`, `verify`, `identify` and `gallery` subcommands to the subparsers `sub`."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("enroll", help="enrol a person from one or more face images into a gallery", formatter_class=fmt, epilog=EXIT_CODES,
                       description="Quality-gate each image (strict enrolment thresholds), embed, and store one quality-weighted template.")
    p.add_argument("name", help="identity name")
    p.add_argument("images", nargs="+", help="image files of that person")
    p.add_argument("--codec", choices=sorted(CODECS), default="float32", help="template codec of a NEW gallery (default float32)")
    p.add_argument("--no-replace", action="store_true", help="fail if the name is already enrolled")
    _add_common(p)
    p.set_defaults(handler=run_enroll)

    p = sub.add_parser("verify", help="is the face in IMAGE the enrolled NAME? (calibrated threshold)", formatter_class=fmt, epilog=EXIT_CODES)
    p.add_argument("image")
    p.add_argument("name")
    p.add_argument("--far", help="false-accept rate whose calibrated threshold decides (default 1e-3, also as 0.001); a FAR that is not "
                                 "calibrated in the bundle takes the next stricter point of its FAR curve (said in the output)")
    p.add_argument("--threshold", type=_similarity, help="instead of --far: decide at this similarity; the output states the FAR the bundle's "
                                                         "calibration measured for it")
    p.add_argument("--landmarks", type=_landmarks, help="5 landmarks from your own detector: x1,y1,...,x5,y5 (right eye, left eye, nose, right mouth, left mouth)")
    _add_common(p, landmarks=True)
    p.set_defaults(handler=run_verify)

    p = sub.add_parser("identify", help="who is the face in IMAGE? (open set: 'unknown' below the threshold)", formatter_class=fmt, epilog=EXIT_CODES)
    p.add_argument("image")
    p.add_argument("--top-k", type=_positive_int, default=5, help="candidates to list (default 5)")
    p.add_argument("--far", help="the ONE-TO-ONE false-accept rate whose threshold decides (default 1e-3; an uncalibrated FAR takes the next "
                                 "stricter point of the bundle's FAR curve): against N enrolled people an impostor is falsely identified up "
                                 "to N times as often; see --fpir")
    p.add_argument("--threshold", type=_similarity, help="instead of --far / --fpir: decide at this score; the output states its calibrated FAR")
    p.add_argument("--fpir", type=float, help="instead of --far: the rate of strangers identified as someone you accept (e.g. 0.01); the "
                   "threshold is chosen for it at the gallery's current size (1 - (1 - FAR)^N = FPIR, on the bundle's FAR curve)")
    p.add_argument("--landmarks", type=_landmarks, help="5 landmarks from your own detector: x1,y1,...,x5,y5")
    _add_common(p, landmarks=True)
    p.set_defaults(handler=run_identify)

    p = sub.add_parser("gallery", help="inspect or edit a gallery: info, list, remove, rename", formatter_class=fmt, epilog=EXIT_CODES)
    p.add_argument("action", choices=["info", "list", "remove", "rename"])
    p.add_argument("names", nargs="*", help="remove: NAME...; rename: OLD NEW")
    _add_common(p, need_bundle=False)
    p.set_defaults(handler=run_gallery)


def _recognizer(args, codec: str = "float32"):
    import os

    from ..core import paths
    from ..runtime.face import FaceRecognizer

    # --detector, else the detector shipped in the bundle, else the checkout's ../shared copy
    detector = False  # with --landmarks no detector is loaded
    if getattr(args, "landmarks", None) is None:
        detector = args.detector
        if detector is not None and not os.path.isfile(detector):
            raise ValueError(f"no face detector at {detector}: pass --detector PATH to YuNet's ONNX file (face_detection_yunet_2023mar.onnx, "
                             "OpenCV model zoo)")
    rec = FaceRecognizer.from_bundle(
        args.bundle,
        gallery=args.gallery,
        detector=detector,
        backend=args.backend,
        threads=args.threads,
        codec=codec,
        multiple_faces=args.multiple_faces,
        embedding_quality=not args.no_embedding_quality,
    )
    if detector is None and rec.detector is None:  # the bundle has none
        fallback = paths.yunet_model()
        if not os.path.isfile(fallback):
            raise ValueError(f"{args.bundle} ships no face detector and none was given: pass --detector PATH to YuNet's ONNX file "
                             "(face_detection_yunet_2023mar.onnx, OpenCV model zoo)" + (" or --landmarks" if hasattr(args, "landmarks") else "")
                             + ", or re-export the bundle with `edgeface export ... --detector PATH` to ship one inside it")
        from ..core.detect import YuNetDetector

        rec.detector = YuNetDetector(fallback)
    return rec


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def _rejections_text(rejected) -> str:
    return "\n".join(f"  rejected {r.source}: {r.reason}: {r.detail}" for r in rejected)


def run_enroll(args) -> int:
    """`edgeface enroll`: quality-gate and embed the images and store the person's template; returns EXIT_OK, or
    EXIT_REJECTED when no image passed. The name is checked before the model loads."""
    from ..runtime.gallery import normalize_name

    args.name = normalize_name(args.name)  # a bad name fails before the model and detector load
    rec = _recognizer(args, codec=args.codec)
    res = rec.enroll(args.name, args.images, replace=not args.no_replace)
    lines = [f"{args.name}: " + (f"enrolled from {len(res.used)} of {len(args.images)} image(s), template quality {res.quality:.3f}" if res.enrolled else "NOT enrolled: no image passed")]
    if res.rejected:
        lines.append(_rejections_text(res.rejected))
    _emit(args, res.to_dict(), "\n".join(lines))
    return EXIT_OK if res.enrolled else EXIT_REJECTED


def run_verify(args) -> int:
    """`edgeface verify`: compare the face in IMAGE with NAME's template; returns EXIT_OK (match), EXIT_NO_MATCH or EXIT_REJECTED (no usable face)."""
    from ..runtime.gallery import display_name

    if args.far is not None and args.threshold is not None:
        raise ValueError("give --far or --threshold, not both")
    rec = _recognizer(args)
    res = rec.verify(args.image, args.name, far=args.far, landmarks=args.landmarks, threshold=args.threshold)
    if res.match is None:
        text = f"{args.image}: rejected\n" + _rejections_text(res.rejected)
    else:
        text = (f"{args.image} vs {display_name(args.name)}: {res.decision.upper()} (similarity {res.similarity:.3f}, threshold {res.threshold:.3f} at "
                f"FAR {res.far})")
    if res.threshold_note:
        text += f"\n  {res.threshold_note}"
    _emit(args, res.to_dict(), text)
    return EXIT_REJECTED if res.match is None else (EXIT_OK if res.match else EXIT_NO_MATCH)


def run_identify(args) -> int:
    """`edgeface identify`: rank the gallery against the face in IMAGE at the --far or --fpir threshold; returns
    EXIT_OK (identified), EXIT_NO_MATCH (unknown) or EXIT_REJECTED (no usable face)."""
    from ..runtime.gallery import display_name

    if sum(x is not None for x in (args.far, args.fpir, args.threshold)) > 1:
        raise ValueError("give one of --far, --fpir and --threshold")
    rec = _recognizer(args)
    res = rec.identify(args.image, top_k=args.top_k, far=args.far, landmarks=args.landmarks, fpir=args.fpir, threshold=args.threshold)
    at = f"FAR {res.far}" if res.fpir is None else f"FPIR {res.fpir:g} for {res.gallery_size} enrolled (FAR {res.far} per comparison)"
    if res.name is None:
        text = f"{args.image}: rejected\n" + _rejections_text(res.rejected)
    else:
        # the answer word for a stranger is printed bare; an enrolled name goes through display_name (a legacy
        # gallery's "unknown\u200b" shows as 'unknown\u200b', not as the answer "unknown")
        shown = res.name if res.decision == "unknown" else display_name(res.name)
        head = f"{args.image}: {shown}" + (f" (score {res.score:.3f}, threshold {res.threshold:.3f} at {at})" if res.score is not None else " (empty gallery)")
        text = "\n".join([head] + [f"  {i + 1}. {display_name(c.name)}  {c.score:.3f}" for i, c in enumerate(res.candidates)])
    if res.threshold_note:
        text += f"\n  {res.threshold_note}"
    _emit(args, res.to_dict(), text)
    return EXIT_REJECTED if res.name is None else (EXIT_NO_MATCH if res.decision == "unknown" else EXIT_OK)


def run_gallery(args) -> int:
    """`edgeface gallery info|list|remove|rename`; returns EXIT_OK, or EXIT_NO_MATCH when a name to remove or
    rename is not enrolled. Raises ValueError for wrong NAME arguments."""
    from ..runtime.gallery import Gallery, display_name

    if args.action in ("info", "list"):
        if args.names:
            raise ValueError(f"gallery {args.action} takes no names")
        with Gallery(args.gallery, readonly=True) as g:
            if args.action == "info":
                s = g.summary()
                _emit(args, s, "\n".join(f"{k}: {v}" for k, v in s.items()))
            else:
                rows = [g.info(n) for n in g.names()]
                _emit(args, {"identities": rows}, "\n".join(f"{display_name(r['name'])}  ({r['n_images']} image(s), quality {r['quality']:.3f})" for r in rows) or "(empty)")
        return EXIT_OK
    with Gallery(args.gallery, create=False) as g:
        if args.action == "remove":
            if not args.names:
                raise ValueError("gallery remove needs at least one NAME")
            done = {n: g.remove(n) for n in args.names}
            _emit(args, {"removed": done}, "\n".join(f"{display_name(n)}: {'removed' if ok else 'not enrolled'}" for n, ok in done.items()))
            return EXIT_OK if all(done.values()) else EXIT_NO_MATCH
        if len(args.names) != 2:
            raise ValueError("gallery rename needs OLD NEW")
        ok = g.rename(*args.names)
        _emit(args, {"renamed": ok}, f"{display_name(args.names[0])} -> {display_name(args.names[1])}: {'done' if ok else 'not enrolled'}")
        return EXIT_OK if ok else EXIT_NO_MATCH


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through `edgeface`")
