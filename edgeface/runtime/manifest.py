"""Validation of a bundle's manifest (`edgeface.json`), with no optional dependency.

Two layers, both always run (the same verdict whether or not jsonschema is installed):

1. `schema_errors`: edgeface/schemas/bundle.schema.json checked by the small validator below,
   which implements exactly the keywords that schema uses (type, required, properties,
   additionalProperties, enum, const, pattern, minLength, minProperties, minItems, maxItems,
   items, minimum, maximum, if/then). The schema file stays the one specification (the C++
   SDK reads it too).
2. `semantic_errors`: the rules a JSON schema cannot say — the model file is one of the hashed
   files and stays inside the bundle; the input contract is self-consistent (normalisation in
   the graph <=> uint8 input, mean/std equal the card's); a bundled detector (`detector.file`) is one
   of the hashed files; sizes agree with the card; every
   threshold lies in its plausible range (see `threshold_floor`) and a lower FAR never has a
   lower threshold; quality thresholds are known keys within their physical ranges.

Each refusal carries a stable `kind` (docs/runtime.md lists them); BundleError.kind holds it.
Torch-free, numpy-free.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import PurePosixPath
from statistics import NormalDist
from typing import Any

# Refusal kinds (stable names: the C++ SDK mirrors them; docs/runtime.md explains each).
NOT_FOUND = "not_found"
MANIFEST_UNREADABLE = "manifest_unreadable"
MANIFEST_DIGEST = "manifest_digest"
SCHEMA = "schema"
VERSION = "version"
STATUS = "status"
MODEL_FILE = "model_file"
FILE_HASH = "file_hash"
INPUT_CONTRACT = "input_contract"
THRESHOLDS = "thresholds"
QUALITY = "quality"
MODEL_LOAD = "model_load"
MODEL_OUTPUT = "model_output"
CONFORMANCE = "conformance"
KINDS = (NOT_FOUND, MANIFEST_UNREADABLE, MANIFEST_DIGEST, SCHEMA, VERSION, STATUS, MODEL_FILE, FILE_HASH, INPUT_CONTRACT,
         THRESHOLDS, QUALITY, MODEL_LOAD, MODEL_OUTPUT, CONFORMANCE)

MAX_MANIFEST_BYTES = 4 << 20  # edgeface.json is a few KB; a larger one is refused unread

_JSON_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _type_ok(value: Any, t: str | list[str]) -> bool:
    return any(_JSON_TYPES[x](value) for x in ([t] if isinstance(t, str) else t))


def _eq(a: Any, b: Any) -> bool:
    """JSON equality (True is not 1)."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def validate_schema(value: Any, schema: dict, path: str = "") -> list[str]:
    """Errors of `value` against `schema` (the keyword subset listed in the module doc)."""
    where = path or "(top)"
    errs: list[str] = []
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{where}: {json.dumps(value)[:60]} is not of type {schema['type']}"]
    if "const" in schema and not _eq(value, schema["const"]):
        errs.append(f"{where}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and not any(_eq(value, e) for e in schema["enum"]):
        errs.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errs.append(f"{where}: string shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(f"{where}: {value[:70]!r} does not match {schema['pattern']!r}")
    if _JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{where}: {value} is less than the minimum of {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{where}: {value} is greater than the maximum of {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errs.append(f"{where}: expected {schema.get('minItems', 0)}-{schema.get('maxItems', 'any')} items, got {len(value)}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errs += validate_schema(item, schema["items"], f"{path}/{i}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{where}: missing required field {key!r}")
        if len(value) < schema.get("minProperties", 0):
            errs.append(f"{where}: needs at least {schema['minProperties']} entries")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errs += validate_schema(item, props[key], f"{path}/{key}")
            elif extra is False:
                errs.append(f"{where}: unexpected field {key!r}")
            elif isinstance(extra, dict):
                errs += validate_schema(item, extra, f"{path}/{key}")
        if "if" in schema and not validate_schema(value, schema["if"], path) and "then" in schema:
            errs += validate_schema(value, schema["then"], path)
    return errs


# -- semantic rules -------------------------------------------------------------------

def safe_relative(name: Any) -> bool:
    """A bundle-relative POSIX path that cannot leave the bundle: no absolute path, drive,
    backslash, '..', empty or '.' component, NUL or control character."""
    if not isinstance(name, str) or not name or any(ord(c) < 32 for c in name) or "\\" in name or ":" in name:
        return False
    parts = PurePosixPath(name).parts
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts) and "//" not in name


def far_value(key: str) -> float | None:
    """A FAR key such as "1e-3" as a float, or None when it is not a number strictly between 0 and 1."""
    try:
        f = float(key)
    except (TypeError, ValueError):
        return None
    return f if 0.0 < f < 1.0 else None


def threshold_floor(far: float, dims: int) -> float:
    """The lowest plausible decision threshold at `far` for similarities of `dims` dimensions
    (cosine: the embedding size; Hamming 1 - 2h/bits: the code's bits).

    Independent random directions already reach a similarity of z(1 - far) / sqrt(dims)
    with probability `far` (normal approximation). Real impostors are more alike than
    random directions, so every calibrated threshold lies well above that; half of it is
    the floor (measured: the reference MobileFaceNet's cosine threshold at 1e-3 is 0.409
    against a floor of 0.137, its plain-sign-bit Hamming one ~0.27 against 0.137). A
    threshold below the floor (0, or -0.5 as in issue 20) would accept most impostors."""
    return 0.5 * NormalDist().inv_cdf(1.0 - far) / math.sqrt(max(int(dims), 1))


def _threshold_errors(at_far: dict, dims: int, where: str) -> list[str]:
    errs = []
    by_far = []
    for key, entry in at_far.items():
        f = far_value(key)
        t = entry.get("threshold") if isinstance(entry, dict) else None
        if f is None:
            errs.append(f"{where}: FAR key {key!r} is not a rate between 0 and 1 (write it like \"1e-3\")")
            continue
        if not _JSON_TYPES["number"](t):
            errs.append(f"{where} FAR {key}: threshold {t!r} is not a finite number")
            continue
        floor = threshold_floor(f, dims)
        if not floor <= t <= 1.0:
            errs.append(f"{where} FAR {key}: threshold {t} is outside its plausible range [{floor:.3f}, 1] for {dims}-d similarities "
                        "(a lower threshold would accept most impostors)")
        by_far.append((f, float(t), key))
    by_far.sort()
    for (f1, t1, k1), (f2, t2, k2) in zip(by_far, by_far[1:]):
        if t1 < t2 - 1e-9:
            errs.append(f"{where}: threshold at FAR {k1} ({t1}) is lower than at the looser FAR {k2} ({t2})")
    return errs


CURVE_MIN_IMPOSTORS = 10  # the export puts a FAR on the curve only where >= 10 calibration impostors lie above it


def _curve_errors(section: dict, dims: int, where: str) -> list[str]:
    """thresholds[.codecs.X].far_curve (issue 37: zeroed curve thresholds, resealed, made
    `identify --fpir` name a stranger at 0.000) must agree with the rest of the section: every
    point a FAR in (0, 1) with a threshold in its plausible range (threshold_floor), one point
    per FAR, thresholds rising as FAR falls (also merged with at_far's), each at_far FAR that is
    on the curve with the same threshold (the export calibrates both on the same impostor
    pairs), and no FAR finer than num_impostor resolves (CURVE_MIN_IMPOSTORS)."""
    curve = section.get("far_curve")
    if curve is None:
        return []
    if not isinstance(curve, list) or not curve:
        return [f"{where}.far_curve: expected a non-empty list of {{far, threshold}}"]
    errs: list[str] = []
    pts: list[tuple[float, float, str]] = []
    n_imp = section.get("num_impostor")
    for i, p in enumerate(curve):
        f = p.get("far") if isinstance(p, dict) else None
        t = p.get("threshold") if isinstance(p, dict) else None
        if not _JSON_TYPES["number"](f) or not 0.0 < f < 1.0 or not _JSON_TYPES["number"](t):
            errs.append(f"{where}.far_curve[{i}]: {json.dumps(p)[:80]} is not {{far in (0, 1), threshold: a finite number}}")
            continue
        floor = threshold_floor(f, dims)
        if not floor <= t <= 1.0:
            errs.append(f"{where}.far_curve FAR {f:g}: threshold {t} is outside its plausible range [{floor:.3f}, 1] for {dims}-d similarities")
        if _JSON_TYPES["integer"](n_imp) and f * n_imp < CURVE_MIN_IMPOSTORS * (1 - 1e-9):
            errs.append(f"{where}.far_curve FAR {f:g}: finer than {n_imp} calibration impostor pairs resolve (FAR x pairs < {CURVE_MIN_IMPOSTORS})")
        pts.append((float(f), float(t), f"far_curve {f:g}"))
    fars = sorted(f for f, _, _ in pts)
    if any(abs(a - b) <= 1e-12 * b for a, b in zip(fars, fars[1:])):
        errs.append(f"{where}.far_curve: a FAR appears twice")
    at_far = section.get("at_far") if isinstance(section.get("at_far"), dict) else {}
    for key, entry in at_far.items():
        f = far_value(key)
        t = entry.get("threshold") if isinstance(entry, dict) else None
        if f is None or not _JSON_TYPES["number"](t):
            continue  # reported by _threshold_errors
        for cf, ct, _ in pts:
            if abs(cf - f) <= 1e-9 * f and abs(ct - t) > 1e-6:
                errs.append(f"{where}: far_curve threshold {ct} at FAR {key} differs from at_far's {t} (both come from the same calibration)")
        pts.append((f, float(t), f"at_far {key}"))
    pts.sort(key=lambda x: -x[0])  # FAR falling: thresholds must not fall
    for (f1, t1, n1), (f2, t2, n2) in zip(pts, pts[1:]):
        if t2 < t1 - 1e-6:
            errs.append(f"{where}: threshold {t2} at the stricter FAR {f2:g} ({n2}) is lower than {t1} at FAR {f1:g} ({n1})")
    return errs


# Physical range of each quality threshold (runtime names; the export's older aliases map onto them).
QUALITY_RANGES = {
    "min_interocular": (0.0, 10_000.0), "min_face_size": (0.0, 100_000.0), "min_sharpness": (0.0, 1e9),
    "min_brightness": (0.0, 255.0), "max_brightness": (0.0, 255.0), "min_contrast": (0.0, 255.0),
    "max_abs_yaw": (0.0, 180.0), "max_abs_pitch": (0.0, 180.0), "max_abs_roll": (0.0, 180.0),
    "min_detector_score": (0.0, 1.0), "min_flip_similarity": (-1.0, 1.0), "max_nonface_margin": (-1.0, 1.0),
    # landmark_residual is in template inter-ocular distances; above 1 it would accept any 5 points
    "max_landmark_residual": (0.0, 1.0),
}


def _quality_errors(quality: dict, dims: int) -> list[str]:
    from .quality import ALIASES, MODES, check_nonface_section

    errs = []
    sections = [("quality", {k: v for k, v in quality.items() if k not in MODES})]
    sections += [(f"quality.{m}", quality[m]) for m in MODES if m in quality]
    for where, section in sections:
        if not isinstance(section, dict):
            errs.append(f"{where}: expected an object")
            continue
        for k, v in section.items():
            if k in ("source", "notes", "description"):
                continue
            if k == "nonface" and where == "quality":
                errs += check_nonface_section(v, dims)
                continue
            key = ALIASES.get(k, k)
            if key not in QUALITY_RANGES:
                errs.append(f"{where}: unknown quality threshold {k!r}")
                continue
            lo, hi = QUALITY_RANGES[key]
            if not _JSON_TYPES["number"](v) or not lo <= v <= hi:
                errs.append(f"{where}.{k}: {v!r} is outside [{lo:g}, {hi:g}]")
    return errs


def semantic_errors(meta: dict) -> list[tuple[str, str]]:
    """(kind, message) for every rule of the module doc that `meta` (already schema-valid) breaks."""
    out: list[tuple[str, str]] = []
    files = meta["files"]
    for name in files:
        if not safe_relative(name):
            out.append((MODEL_FILE, f"file entry {name!r} is not a plain relative path inside the bundle"))
    mf = meta["model_file"]
    if not safe_relative(mf):
        out.append((MODEL_FILE, f"model_file {mf!r} is not a plain relative path inside the bundle"))
    elif mf not in files and not any(name.startswith(mf.rstrip("/") + "/") for name in files):
        # a package directory (Core ML's .mlpackage) is covered by hashing the files inside it;
        # check_files then refuses any file in it that is not hashed
        out.append((MODEL_FILE, f"model_file {mf!r} is not one of the hashed files {sorted(files)}: it would be loaded unchecked"))
    det = meta.get("detector")
    if isinstance(det, dict):  # a face detector shipped in the bundle: hashed like the model, never loaded unchecked
        for key in ("file", "licence_file"):
            name = det.get(key)
            if name is None:
                continue
            if not safe_relative(name):
                out.append((MODEL_FILE, f"detector.{key} {name!r} is not a plain relative path inside the bundle"))
            elif name not in files:
                out.append((MODEL_FILE, f"detector.{key} {name!r} is not one of the hashed files: it would be loaded unchecked"))
    conf = meta.get("conformance")
    if isinstance(conf, dict):
        for name in (conf.get("files") or {}):
            if not safe_relative(name):
                out.append((MODEL_FILE, f"conformance file entry {name!r} is not a plain relative path inside the bundle"))

    card = meta["card"]
    inp, outp = meta["input"], meta["output"]
    emb = meta["embedding_size"]
    h, w = card.get("input_size", [None, None])[:2] if isinstance(card.get("input_size"), list) else (None, None)
    if card.get("embedding_size") != emb:
        out.append((INPUT_CONTRACT, f"embedding_size {emb} differs from the card's {card.get('embedding_size')}"))
    if outp["shape"][1] not in (None, emb):
        out.append((INPUT_CONTRACT, f"output shape {outp['shape']} disagrees with embedding_size {emb}"))
    if meta["alignment"]["crop_size"] != [h, w]:
        out.append((INPUT_CONTRACT, f"alignment crop_size {meta['alignment']['crop_size']} differs from the card's input_size {[h, w]}"))
    spatial = inp["shape"][1:3] if inp["layout"] == "NHWC" else inp["shape"][2:4]
    channels = inp["shape"][3] if inp["layout"] == "NHWC" else inp["shape"][1]
    if spatial != [h, w] or channels != 3:
        out.append((INPUT_CONTRACT, f"input shape {inp['shape']} ({inp['layout']}) does not hold {h}x{w}x3 crops"))
    in_graph = inp["normalization_in_graph"]
    if in_graph != (inp["dtype"] == "uint8"):
        out.append((INPUT_CONTRACT, f"input.normalization_in_graph is {str(in_graph).lower()} but the input dtype is {inp['dtype']}: "
                                    "edgeface graphs normalise exactly when they take uint8 crops"))
    if in_graph and inp["value_range"] != [0, 255]:
        out.append((INPUT_CONTRACT, f"input value_range {inp['value_range']} must be [0, 255] for uint8 crops"))
    if not in_graph:
        for k in ("mean", "std"):
            if k in inp and card.get(k) is not None and [float(v) for v in inp[k]] != [float(v) for v in card[k]]:
                out.append((INPUT_CONTRACT, f"input.{k} {inp[k]} differs from the card's {card[k]}"))
        if "std" in inp and any(v == 0 for v in inp["std"]):
            out.append((INPUT_CONTRACT, "input.std holds a zero"))

    from .codecs import CODECS, get_codec

    thr = meta["thresholds"]
    for kind, text in [(THRESHOLDS, e) for e in _threshold_errors(thr["at_far"], emb, "thresholds.at_far")]:
        out.append((kind, text))
    out += [(THRESHOLDS, e) for e in _curve_errors(thr, emb, "thresholds")]
    for codec, sec in (thr.get("codecs") or {}).items():
        if codec not in CODECS:
            out.append((THRESHOLDS, f"thresholds.codecs: unknown codec {codec!r}"))
            continue
        bits = getattr(get_codec(codec, emb), "code_bits", emb)
        out += [(THRESHOLDS, e) for e in _threshold_errors(sec["at_far"], bits, f"thresholds.codecs.{codec}.at_far")]
        out += [(THRESHOLDS, e) for e in _curve_errors({**sec, "num_impostor": thr.get("num_impostor")}, bits, f"thresholds.codecs.{codec}")]
    out += [(QUALITY, e) for e in _quality_errors(meta["quality"], emb)]
    return out
