"""`edgeface calibrate`: re-seal a bundle's thresholds on the user's own people.

The shipped thresholds are calibrated on the kit's population (CelebA-299, LFW's extra people,
AAF-8k); on another population the same threshold gives another FAR (eval.fairness measures by how
much). This re-calibrates them, with the rule the export uses (export.verify.calibrate_thresholds),
on faces the user supplies:

  * identity folders DIR/<person>/<photo>: genuine pairs = photos of one person, impostor pairs =
    photos of two people; a flat folder of photos counts each photo as its own person;
  * a pairs file (--pairs, LFW pairs.txt or CSV a,b,same): exactly its pairs.

A population too small for a FAR is refused (fewer than 10 / FAR impostor pairs: the threshold
would rest on fewer than 10 accepted impostors). The bundle's model files are untouched: only
edgeface.json's thresholds (cosine, every Hamming codec it carries, the FAR curve), the
conformance set's recorded decisions (re-derived from its recorded cosines) and the digests change,
with provenance (population, counts, date, the thresholds it replaced) in thresholds.calibration_set
and thresholds.recalibration. The result opens in every runtime like an exported bundle.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..runtime.bundle import BUNDLE_JSON, Bundle, file_sha256, load_bundle
from ..runtime.codecs import get_codec
from . import verify as V

MIN_ACCEPTED = 10  # impostor pairs above a threshold, at least: a population needs 10 / FAR impostor pairs
REQUIRED_FARS = ("1e-3", "1e-4")  # every bundle carries these (bundle.schema.json)


class CalibrationError(ValueError):
    """A calibration set that cannot give the thresholds asked for (kind "calibration")."""

    kind = "calibration"


def far_keys(fars) -> list[str]:
    """FARs as the manifest's keys ("1e-3"), loosest first; each strictly between 0 and 1; must include 1e-3 and 1e-4."""
    from ..eval.protocol import far_key

    keys = []
    for f in fars:
        v = float(f)
        if not 0 < v < 1:
            raise CalibrationError(f"FAR {f} is not a rate between 0 and 1")
        keys.append(far_key(v))
    missing = [k for k in REQUIRED_FARS if k not in keys]
    if missing:
        raise CalibrationError(f"--far must include {' and '.join(REQUIRED_FARS)}: every bundle carries thresholds at both "
                               f"(missing {', '.join(missing)})")
    return sorted(set(keys), key=float, reverse=True)


def check_size(num_impostor: int, keys: list[str], what: str) -> None:
    """Refuse a population with fewer than 10 / FAR impostor pairs for any FAR asked."""
    for k in keys:
        need = math.ceil(MIN_ACCEPTED / float(k))
        if num_impostor < need:
            people = math.ceil((1 + math.sqrt(1 + 8 * need)) / 2)
            raise CalibrationError(
                f"{what}: {num_impostor:,} impostor pairs cannot calibrate FAR {k}: it needs at least {need:,} (10 / FAR, so that "
                f"at least 10 impostors lie above the threshold); with one photo per person that is about {people:,} people")


def folder_population(data: str | os.PathLike) -> tuple[list[str], list[str], str]:
    """(files, identities, kind) of identity folders DIR/<person>/<photo>, or of a flat folder (one person per photo)."""
    from ..eval.datasets import identity_folder
    from ..eval.faces import list_images

    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: calibration folder not found")
    has_dirs = any(p.is_dir() for p in data.iterdir())
    if has_dirs:
        items = identity_folder(data)
        return [f for f, _ in items], [i for _, i in items], "identity folders (a sub-folder per person)"
    files = list_images(data, "calibration")
    return files, [Path(f).name for f in files], "a flat folder (each photo its own person)"


def max_impostor_pairs(data: str | os.PathLike, pairs: str | os.PathLike | None = None) -> int:
    """Impostor pairs the population would give if every face were detected (an upper bound, from the listing alone)."""
    if pairs:
        from ..eval.datasets import load_pairs

        return sum(not p.same for p in load_pairs(data, pairs))
    from collections import Counter

    _, ids, _ = folder_population(data)
    n = len(ids)
    return n * (n - 1) // 2 - sum(c * (c - 1) // 2 for c in Counter(ids).values())


def population_scores(bundle: Bundle, data: str | os.PathLike, pairs: str | os.PathLike | None = None, show_progress: bool = True):
    """(embeddings or None, genuine, impostor, by-codec (genuine, impostor), description dict) for the user's population."""
    from ..core.landmarks import LandmarkStore
    from ..eval.faces import align_files

    store = LandmarkStore.default()
    codecs = list((bundle.meta.get("thresholds") or {}).get("codecs") or {})
    if pairs:
        from ..eval.datasets import load_pairs
        from ..eval.verification import PairSet

        ps = PairSet.load(load_pairs(data, pairs), bundle.card, on_fail="exclude", store=store, show_progress=show_progress)
        emb = ps.embed(bundle, show_progress=show_progress)
        ok = ps.pair_usable
        s = ps.scores(emb)
        gen, imp = s[ok & ps.same], s[ok & ~ps.same]
        by_codec = {}
        for c in codecs:
            sv = get_codec(c, emb.shape[1]).score_vectors(emb)
            cs = np.sum(sv[ps.ia] * sv[ps.ib], axis=1)
            by_codec[c] = (cs[ok & ps.same], cs[ok & ~ps.same])
        desc = {"kind": f"pairs file {Path(pairs).name}", "num_images": len(ps.paths), "num_pairs_listed": int(len(ps.ia)),
                "num_pairs_excluded": int((~ok).sum())}
        return gen, imp, by_codec, desc
    files, ids, kind = folder_population(data)
    faces = align_files(files, bundle.card, ids, store=store, show_progress=show_progress)
    if len(faces) < 2:
        raise CalibrationError(f"{data}: only {len(faces)} of {len(files)} photos had a detectable face")
    emb = bundle.embed(faces.crops)
    gen, imp = V.population_scores(emb, faces.identities)
    by_codec = {c: V.population_scores(get_codec(c, emb.shape[1]).score_vectors(emb), faces.identities) for c in codecs}
    desc = {"kind": kind, "num_images": len(files), "num_faces": len(faces), "num_no_face": len(files) - len(faces),
            "num_people": len(set(faces.identities))}
    return gen, imp, by_codec, desc


def _at_far(gen: np.ndarray, imp: np.ndarray, keys: list[str]) -> dict:
    out = V.calibrate_thresholds(gen, imp, keys)
    for entry in out.values():
        entry["tar_calibration"] = entry.pop("tar_lfw_dev")
    return out


def recalibrate(bundle_dir: str | os.PathLike, data: str | os.PathLike, pairs: str | os.PathLike | None = None, fars=REQUIRED_FARS,
                out: str | os.PathLike | None = None, population: str | None = None, show_progress: bool = True) -> dict:
    """Re-seal `bundle_dir`'s thresholds on the population in `data` (module doc) into `out` (default: in place,
    replaced only once the new bundle is written and opens). Returns the new thresholds section."""
    keys = far_keys(fars)
    src = Path(bundle_dir)
    bundle = load_bundle(src)  # refuses a broken or tampered bundle before anything is measured
    what = f"{data}" + (f" ({Path(pairs).name})" if pairs else "")
    check_size(max_impostor_pairs(data, pairs), keys, what)  # before any face is embedded: every face detected at best
    gen, imp, by_codec, desc = population_scores(bundle, data, pairs, show_progress)
    check_size(len(imp), keys, what)
    old = bundle.meta["thresholds"]
    at_far = _at_far(gen, imp, keys)
    name = population or Path(data).resolve().name
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    codecs = {}
    for c, (cg, ci) in by_codec.items():
        codecs[c] = {**{k: v for k, v in old["codecs"][c].items() if k == "similarity"}, "at_far": _at_far(cg, ci, keys),
                     "far_curve": V.far_curve(ci)}
    thresholds = {
        "metric": "cosine",
        "at_far": at_far,
        "method": (f"re-calibrated by `edgeface calibrate` on the population {name!r} ({desc['kind']}): threshold = lowest cosine at which "
                   "the calibration FAR <= target. Accept a match when cosine >= threshold. The FAR / TAR this bundle reported on "
                   "LFW-dev / CFP at its export thresholds do not apply to these thresholds."),
        "calibration_set": {"description": f"the user's population {name!r}: {desc['kind']}", "population": name, "date": now,
                            "data": Path(data).resolve().name, **({"pairs": Path(pairs).name} if pairs else {}), **desc,
                            "sources": ["user"]},
        "num_genuine": int(len(gen)),
        "num_impostor": int(len(imp)),
        "far_curve": V.far_curve(imp),
        "notes": [] if len(gen) else ["no genuine pairs in the calibration population: TAR not measured"],
        "recalibration": {"tool": "edgeface calibrate", "date": now, "population": name,
                          "previous": {"at_far": {k: v.get("threshold") for k, v in old["at_far"].items()},
                                       "calibration_set": (old.get("calibration_set") or {}).get("description"),
                                       "codecs": {c: {k: v.get("threshold") for k, v in s.get("at_far", {}).items()}
                                                  for c, s in (old.get("codecs") or {}).items()}}},
        **({"codecs": codecs} if codecs else {}),
    }
    meta = json.loads(json.dumps(bundle.meta))
    meta["thresholds"] = thresholds
    dst = Path(out) if out else src
    stage = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=dst.resolve().parent))
    try:
        shutil.rmtree(stage)
        shutil.copytree(src, stage)
        _rederive_conformance(stage, meta)
        from .bundle_writer import _write_meta
        from ..runtime.bundle import Manifest

        _write_meta(stage, Manifest.from_dict(meta))  # validated (schema + semantic rules), then sealed
        load_bundle(stage)  # opens, hashes and conformance included, before it replaces anything
        if dst.exists():
            if not (dst / BUNDLE_JSON).is_file():
                raise FileExistsError(f"{dst}: exists and is not a bundle; not replaced")
            shutil.rmtree(dst)
        os.replace(stage, dst)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return thresholds


def _rederive_conformance(stage: Path, meta: dict) -> None:
    """The conformance set's recorded decisions at the new thresholds, from its recorded cosines (the
    expected embeddings stay: the model did not change); its hashes in the manifest updated."""
    conf = meta.get("conformance")
    if not conf:
        return
    f = stage / conf["expected"]
    exp = json.loads(f.read_text())
    thr = {k: float(v["threshold"]) for k, v in meta["thresholds"]["at_far"].items()}
    for p in exp["pairs"]:
        for k in [k for k in p if k.startswith("same_at_far_")]:
            del p[k]
        p.update({f"same_at_far_{k}": bool(p["cosine"] >= t) for k, t in thr.items()})
    exp["thresholds"] = thr
    f.write_text(json.dumps(exp, indent=1))
    conf["files"][conf["expected"]] = file_sha256(f)
