"""Demographic differentials of a face embedder: impostor FMR per group at one threshold.

What NIST's FRTE demographic reports measure, for any embedder (torch model, bundle, plain model
file): faces are grouped (a CSV `image,group[,identity]`, or a reader for a dataset whose file
names carry the groups: UTKFace, AAF-8k); every pair of two different people *within one group*
is an impostor pair of that group, every pair of two photos of one person a genuine pair.

At each threshold the report gives, per group, the false match rate (FMR: impostor pairs at or
above the threshold) with the counts behind it, the false non-match rate where a group has
identities, the threshold that would give the nominal FAR on that group alone, and the ratio of
the highest to the lowest FMR. Thresholds:

  * `bundle`: the bundle's own calibrated thresholds (thresholds.at_far), when the embedder is one;
  * `pooled`: one threshold per nominal FAR set on the pooled population, every group weighted
    equally (the threshold at which the groups' mean FMR is the nominal FAR), so a large group
    does not set it alone.

Near-duplicates: a set without identities may hold one person twice (UTKFace does); their pairs
would count as impostors. Before counting, every pair of images at least as alike as a face and
its own mirror image (cosine >= the median flip similarity of the population's faces) is taken
as one person, and all but one image of each such cluster is dropped (counted in the report).

Faces are detected (YuNet, cached) and aligned to the card's template exactly as
`edgeface eval` does (eval.faces); an image without a detected face is left out and counted per
group (a failure to enrol that may itself differ by group). Torch-free.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.cache import cache_dir
from ..core.card import ModelCard
from ..core.embedder import Embedder
from ..core.landmarks import LandmarkStore
from .datasets import IMAGE_SUFFIXES, DataError
from .faces import aligned_crops, detect_all, save_atomic
from .protocol import far_key, threshold_for_far

FARS = (1e-3, 1e-4)
MIN_ACCEPTED = 10  # an FMR is "resolved" when at least 10 / FAR impostor pairs exist


# ---- populations: images with a group (and an identity where known) -------------------------

@dataclass
class Population:
    """Images, their group and identity ("" = unknown: each such image is its own person)."""

    files: list[str]
    groups: list[str]
    identities: list[str]
    name: str
    description: str
    group_order: list[str] = field(default_factory=list)  # report order
    headline_groups: list[str] = field(default_factory=list)  # the groups of the headline ratio (default: all)
    skipped: dict[str, int] = field(default_factory=dict)  # images not used, by reason

    def __post_init__(self):
        if not self.group_order:
            self.group_order = sorted(set(self.groups))
        if not self.headline_groups:
            self.headline_groups = list(self.group_order)

    def sample(self, max_per_group: int | None, seed: int = 0) -> "Population":
        """At most `max_per_group` images of each group (a seeded random choice, file order kept); itself when None."""
        if not max_per_group:
            return self
        rng = np.random.default_rng(seed)
        g_arr = np.array(self.groups, dtype=object)
        keep = np.zeros(len(self.files), bool)
        for g in sorted(set(self.groups)):
            idx = np.flatnonzero(g_arr == g)
            keep[idx[rng.permutation(len(idx))[:max_per_group]]] = True  # nested: a smaller cap takes a subset
        out = self.take(keep)
        out.skipped["over the cap per group"] = int((~keep).sum())
        out.description += f"; at most {max_per_group} images per group (seeded random choice, seed {seed})"
        return out

    def take(self, keep: np.ndarray) -> "Population":
        idx = np.flatnonzero(keep)
        return Population([self.files[i] for i in idx], [self.groups[i] for i in idx], [self.identities[i] for i in idx], self.name,
                          self.description, self.group_order, self.headline_groups, dict(self.skipped))


def read_groups_csv(csv_file: str | os.PathLike, root: str | os.PathLike | None = None) -> Population:
    """A CSV with header columns image, group[, identity]; relative image paths are resolved
    against `root` (default: the CSV's folder)."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise DataError(f"{csv_file}: groups CSV not found")
    base = Path(root) if root else csv_file.parent
    files, groups, ids = [], [], []
    with open(csv_file, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if not {"image", "group"} <= set(cols):
            raise DataError(f"{csv_file}: header must name columns image, group (and optionally identity); got {reader.fieldnames}")
        for k, row in enumerate(reader):
            img, grp = (row[cols["image"]] or "").strip(), (row[cols["group"]] or "").strip()
            if not img or not grp:
                raise DataError(f"{csv_file}:{k + 2}: empty image or group")
            files.append(str(base / img))
            groups.append(grp)
            ids.append((row.get(cols.get("identity", ""), "") or "").strip() if "identity" in cols else "")
    if not files:
        raise DataError(f"{csv_file}: no rows")
    return Population(files, groups, ids, csv_file.stem, f"{len(files)} images listed in {csv_file.name}")


def half_of(name: str, half: str = "01234567") -> bool:
    """The usable half of a dataset kept half for independent re-measurement: the sha256 of the
    file name (without folder) starts with one of `half`'s hex digits."""
    return hashlib.sha256(name.encode()).hexdigest()[0] in half


UTK_RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian"}  # 4 = Others: not a group here
UTK_CHILDREN = "Children <= 12"
_UTK_NAME = re.compile(r"^(\d+)_(\d)_(\d)_\d+")


def utkface(folder: str | os.PathLike, half: str = "01234567", adult_ages: tuple[int, int] = (18, 70), child_max: int = 12) -> Population:
    """UTKFace (file names `age_gender_race_date...jpg`; race 0 White, 1 Black, 2 Asian, 3 Indian,
    4 Others): four adult groups (ages within `adult_ages`) and one of children aged <= child_max
    (any race). Only files in `half` (see half_of) are listed; the others are never opened."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: UTKFace folder not found")
    files, groups, skipped = [], [], {"other half": 0, "name without age_gender_race": 0, "race Others": 0, "age outside the groups": 0}
    for name in sorted(os.listdir(folder)):
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not half_of(name, half):
            skipped["other half"] += 1
            continue
        m = _UTK_NAME.match(name)
        if not m:
            skipped["name without age_gender_race"] += 1
            continue
        age, race = int(m.group(1)), int(m.group(3))
        if age <= child_max:
            group = UTK_CHILDREN
        elif adult_ages[0] <= age <= adult_ages[1]:
            if race not in UTK_RACES:
                skipped["race Others"] += 1
                continue
            group = UTK_RACES[race]
        else:
            skipped["age outside the groups"] += 1
            continue
        files.append(str(folder / name))
        groups.append(group)
    if not files:
        raise DataError(f"{folder}: no UTKFace images (age_gender_race_date.jpg) found")
    adults = [UTK_RACES[r] for r in sorted(UTK_RACES)]
    desc = (f"UTKFace, the files whose name's sha256 starts with one of '{half}'; adults aged {adult_ages[0]}-{adult_ages[1]} by race "
            f"(White, Black, Asian, Indian) and children aged <= {child_max} (any race); one photo per person assumed, near-duplicates dropped")
    return Population(files, groups, [""] * len(files), "utkface", desc, adults + [UTK_CHILDREN], adults, skipped)


_AAF_NAME = re.compile(r"^\d+A(\d+)\.", re.IGNORECASE)
AAF_GROUPS = [("Children <= 12", 0, 12), ("Teens 13-17", 13, 17), ("Adults 18-70", 18, 70), ("Older > 70", 71, 200)]


def aaf_ages(folder: str | os.PathLike) -> Population:
    """AAF-8k (All-Age-Faces: file names `<index>A<age>.jpg`, one photo per person, mostly
    East-Asian): groups by age."""
    folder = Path(folder)
    root = folder / "images" if (folder / "images").is_dir() else folder
    if not root.is_dir():
        raise DataError(f"{folder}: AAF folder not found")
    files, groups, skipped = [], [], {"name without <index>A<age>": 0}
    for name in sorted(os.listdir(root)):
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        m = _AAF_NAME.match(name)
        if not m:
            skipped["name without <index>A<age>"] += 1
            continue
        age = int(m.group(1))
        group = next(g for g, lo, hi in AAF_GROUPS if lo <= age <= hi)
        files.append(str(root / name))
        groups.append(group)
    if not files:
        raise DataError(f"{folder}: no AAF images (<index>A<age>.jpg) found")
    present = [g for g, _, _ in AAF_GROUPS if g in set(groups)]
    return Population(files, groups, [""] * len(files), "aaf", "All-Age-Faces (AAF-8k): one photo per person, mostly East-Asian, grouped by age",
                      present, present, skipped)


READERS = {"utkface": utkface, "aaf": aaf_ages}


def population(data: str | os.PathLike | None = None, groups_csv: str | os.PathLike | None = None, reader: str | None = None) -> Population:
    """The population of `edgeface fairness`: a groups CSV (images relative to `data` or the CSV's
    folder), or a folder read by `reader` (utkface, aaf; guessed from the file names when None)."""
    if groups_csv:
        return read_groups_csv(groups_csv, data)
    if not data:
        raise DataError("pass --data DIR (UTKFace or AAF file names) or --groups FILE (a CSV image,group[,identity])")
    if reader is None:
        folder = Path(data)
        root = folder / "images" if (folder / "images").is_dir() else folder
        if not root.is_dir():
            raise DataError(f"{data}: folder not found")
        names = [n for n in sorted(os.listdir(root))[:200] if Path(n).suffix.lower() in IMAGE_SUFFIXES]
        if names and sum(bool(_UTK_NAME.match(n)) for n in names) > len(names) // 2:
            reader = "utkface"
        elif names and sum(bool(_AAF_NAME.match(n)) for n in names) > len(names) // 2:
            reader = "aaf"
        else:
            raise DataError(f"{data}: file names are neither UTKFace's (age_gender_race_date.jpg) nor AAF's (<index>A<age>.jpg); "
                            "pass --groups FILE, a CSV with columns image, group[, identity]")
    if reader not in READERS:
        raise DataError(f"unknown reader {reader!r}; one of {sorted(READERS)}")
    return READERS[reader](data)


# ---- faces: detect once, align once per template (cached), embed ----------------------------

@dataclass
class AlignedPopulation:
    population: Population  # the images with a face
    crops: np.ndarray  # (N, H, W, 3) uint8, aligned for the card's template
    no_face: dict[str, int]  # per group: images left out (no face detected or unreadable)


def align_population(pop: Population, card: ModelCard, store: LandmarkStore | None = None, show_progress: bool = True) -> AlignedPopulation:
    """Detect (YuNet, through the landmark cache) and align every image for `card`'s template; images
    without a detected face are left out and counted per group. Crops are cached on disk (uint8
    .npy keyed by the images, their landmarks, the template and size)."""
    faces = detect_all(pop.files, store or LandmarkStore.default(), show_progress)
    ok = np.array([faces.records[f].status == "ok" for f in pop.files], bool)
    no_face: dict[str, int] = {}
    for f, g, good in zip(pop.files, pop.groups, ok):
        if not good:
            no_face[g] = no_face.get(g, 0) + 1
    kept = pop.take(ok)
    h, w = card.input_size
    digest = hashlib.sha256()
    for f in kept.files:
        digest.update(f.encode() + b"\0" + np.asarray(faces.records[f].landmarks, np.float64).round(3).tobytes())
    disk = cache_dir("crops") / f"fairness-{digest.hexdigest()[:20]}-{card.template}-{h}x{w}.npy"
    crops = np.load(disk, mmap_mode="r", allow_pickle=False) if disk.is_file() else None
    if crops is None or crops.shape != (len(kept.files), h, w, 3) or crops.dtype != np.uint8:
        crops, _ = aligned_crops(kept.files, faces, card, "exclude", show_progress)
        save_atomic(disk, crops)
    return AlignedPopulation(kept, np.asarray(crops), no_face)


def flip_similarity(embedder: Embedder, crops: np.ndarray, n: int = 150, seed: int = 0) -> np.ndarray:
    """Cosine between a face and its own mirror image, for up to `n` faces (seeded sample)."""
    from .verification import embed_crops

    idx = np.sort(np.random.default_rng(seed).permutation(len(crops))[:n])
    x = np.asarray(crops[idx])
    a = embed_crops(embedder, x, show_progress=False)
    b = embed_crops(embedder, np.ascontiguousarray(x[:, :, ::-1]), show_progress=False)
    return np.sum(a * b, axis=1)


# ---- near-duplicates ------------------------------------------------------------------------

def duplicate_pairs(emb: np.ndarray, threshold: float, identities: list[str] | None = None, block: int = 2048) -> set[tuple[int, int]]:
    """Every pair (i < j) with cosine >= threshold, except pairs of one known identity (genuine, not duplicates)."""
    n = len(emb)
    ids = np.array(identities if identities is not None else [""] * n, dtype=object)
    out = set()
    for s in range(0, n, block):
        ii, jj = np.nonzero(emb[s : s + block] @ emb.T >= threshold)
        ii = ii + s
        for i, j in zip(ii[jj > ii], jj[jj > ii]):
            if not (ids[i] and ids[i] == ids[j]):
                out.add((int(i), int(j)))
    return out


def drop_clusters(n: int, pairs: set[tuple[int, int]]) -> np.ndarray:
    """Images joined into clusters by `pairs`: a mask dropping all but the first image of each cluster."""
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)]) != np.arange(n)


def near_duplicates(emb: np.ndarray, threshold: float, identities: list[str] | None = None, block: int = 2048) -> tuple[np.ndarray, int]:
    """(drop mask, number of near-duplicate pairs): duplicate_pairs joined into clusters, all but the first image of each dropped."""
    pairs = duplicate_pairs(emb, threshold, identities, block)
    return drop_clusters(len(emb), pairs), len(pairs)


# ---- scores and the report ------------------------------------------------------------------

def person_keys(identities: list[str], files: list[str]) -> list[str]:
    """One key per person: the identity where known, else the image itself (one photo per person)."""
    return [f"id:{i}" if i else f"img:{f}" for i, f in zip(identities, files)]


def group_scores(emb: np.ndarray, groups: list[str], persons: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per group: (genuine scores: pairs of one person, impostor scores: pairs of two people of the group)."""
    out = {}
    g_arr, p_arr = np.array(groups, dtype=object), np.array(persons, dtype=object)
    for g in sorted(set(groups)):
        idx = np.flatnonzero(g_arr == g)
        e = emb[idx]
        p = p_arr[idx]
        iu, ju = np.triu_indices(len(idx), 1)
        s = np.einsum("ij,ij->i", e[iu], e[ju]) if len(idx) <= 600 else (e @ e.T)[iu, ju]
        same = p[iu] == p[ju]
        out[g] = (s[same].astype(np.float32), s[~same].astype(np.float32))
    return out


def pooled_threshold(impostors: list[np.ndarray], far: float) -> float:
    """The threshold at which the mean of the groups' FMRs (each group weighted equally) is at most
    `far`: the lowest such threshold (6-decimal grid, the bundle's rule)."""
    sorted_imps = [np.sort(np.asarray(i, np.float64)) for i in impostors if len(i)]
    if not sorted_imps:
        raise ValueError("no impostor pairs in any group")

    def mean_fmr(t):
        return float(np.mean([(len(s) - np.searchsorted(s, t, side="left")) / len(s) for s in sorted_imps]))

    lo, hi = -1.0, 1.000001
    for _ in range(60):
        mid = (lo + hi) / 2
        if mean_fmr(mid) <= far:
            hi = mid
        else:
            lo = mid
    t = float(np.ceil(hi * 1e6) / 1e6)
    return t if mean_fmr(t) <= far else float(np.ceil(hi * 1e6 + 1) / 1e6)


def rates_at(genuine: np.ndarray, impostor: np.ndarray, t: float) -> dict:
    """FMR (with counts) and, where genuine pairs exist, FNMR of one group at threshold t."""
    n_acc = int(np.sum(impostor >= t))
    out = {"fmr": float(n_acc / len(impostor)) if len(impostor) else None, "impostors_accepted": n_acc, "num_impostor": int(len(impostor))}
    if len(genuine):
        out.update(fnmr=float(np.mean(genuine < t)), num_genuine=int(len(genuine)))
    return out


def ratio(fmrs: dict[str, float | None], groups: list[str]) -> dict:
    """max / min FMR over `groups` (None where the lowest is 0: say so rather than divide by 0)."""
    vals = {g: fmrs[g] for g in groups if fmrs.get(g) is not None}
    if len(vals) < 2:
        return {"ratio": None, "max_group": None, "min_group": None}
    hi, lo = max(vals, key=vals.get), min(vals, key=vals.get)
    return {"ratio": float(vals[hi] / vals[lo]) if vals[lo] > 0 else None, "max_group": hi, "min_group": lo,
            "note": None if vals[lo] > 0 else f"{lo} accepted no impostor pair: ratio unbounded"}


def fairness_report(emb: np.ndarray, pop: Population, bundle_thresholds: dict[str, float] | None = None, fars=FARS) -> dict:
    """The report (module doc) for embeddings of `pop`'s images (one row per image, unit vectors)."""
    persons = person_keys(pop.identities, pop.files)
    scores = group_scores(emb, pop.groups, persons)
    order = [g for g in pop.group_order if g in scores] + sorted(set(scores) - set(pop.group_order))
    headline = [g for g in pop.headline_groups if g in scores]
    counts = {g: {"images": int(sum(1 for x in pop.groups if x == g)), "people": len({p for p, x in zip(persons, pop.groups) if x == g}),
                  "impostor_pairs": int(len(scores[g][1])), "genuine_pairs": int(len(scores[g][0]))} for g in order}
    thresholds: dict[str, dict] = {}
    for f in fars:
        key = far_key(f)
        thresholds[f"pooled {key}"] = {"threshold": pooled_threshold([scores[g][1] for g in headline], f), "far": f,
                                       "set_on": f"the groups {', '.join(headline)} pooled, each weighted equally"}
    for key, t in (bundle_thresholds or {}).items():
        thresholds[f"bundle {key}"] = {"threshold": float(t), "far": float(key), "set_on": "the bundle's own calibration population"}
    at = {}
    for name, th in thresholds.items():
        t = th["threshold"]
        per = {g: rates_at(scores[g][0], scores[g][1], t) for g in order}
        for g in order:
            per[g]["fmr_over_nominal"] = per[g]["fmr"] / th["far"] if per[g]["fmr"] is not None else None
            per[g]["resolved"] = per[g]["num_impostor"] * th["far"] >= MIN_ACCEPTED
        fmrs = {g: per[g]["fmr"] for g in order}
        at[name] = {**th, "groups": per, "ratio": ratio(fmrs, headline), "ratio_all_groups": ratio(fmrs, order)}
    own = {}
    for g in order:
        imp = scores[g][1]
        own[g] = {}
        for f in fars:
            key = far_key(f)
            if len(imp) * f < 1:
                own[g][key] = None
                continue
            t = threshold_for_far(imp, f)
            own[g][key] = {"threshold": t, **({"fnmr": float(np.mean(scores[g][0] < t))} if len(scores[g][0]) else {})}
    means = {g: {"impostor_mean": float(np.mean(scores[g][1])) if len(scores[g][1]) else None,
                 "genuine_mean": float(np.mean(scores[g][0])) if len(scores[g][0]) else None} for g in order}
    return {"groups": order, "headline_groups": headline, "counts": counts, "score_means": means, "at_threshold": at,
            "threshold_per_group": own, "min_impostors_to_resolve": f"{MIN_ACCEPTED} / FAR"}


@dataclass
class Embedded:
    """A population's faces through one embedder: embeddings of the images with a face, and what was left out."""

    emb: np.ndarray  # (N, D) unit vectors, one per image of `population`
    population: Population
    no_face: dict[str, int]
    flip_similarity: np.ndarray  # a face and its mirror image, on a sample


def embed_population(embedder: Embedder, pop: Population, store: LandmarkStore | None = None, show_progress: bool = True) -> Embedded:
    """Detect, align (cached) and embed every image of `pop` with a face, plus the flip similarity of a sample."""
    from .verification import embed_crops

    aligned = align_population(pop, embedder.card, store, show_progress)
    emb = embed_crops(embedder, aligned.crops, show_progress=show_progress)
    return Embedded(emb, aligned.population, aligned.no_face, flip_similarity(embedder, aligned.crops))


DEDUP_RULE = ("pairs with cosine >= the median cosine of a face and its own mirror image (the model's own) are one person; "
              "all but one image of each such cluster dropped")


def find_duplicates(e: Embedded) -> dict:
    """The near-duplicate section of the report (module doc) for one embedder's embeddings."""
    t_dup = float(np.median(e.flip_similarity))
    drop, n_pairs = near_duplicates(e.emb, t_dup, e.population.identities)
    by_group: dict[str, int] = {}
    for g, d in zip(e.population.groups, drop):
        if d:
            by_group[g] = by_group.get(g, 0) + 1
    return {"rule": DEDUP_RULE, "threshold": t_dup, "flip_similarity_p5_p50_p95": np.percentile(e.flip_similarity, [5, 50, 95]).round(5).tolist(),
            "pairs": n_pairs, "images_dropped": int(drop.sum()), "dropped_by_group": by_group,
            "dropped": sorted(os.path.basename(f) for f, d in zip(e.population.files, drop) if d)}


def without(pop: Population, names: set[str], reason: str) -> tuple[np.ndarray, Population]:
    """(keep mask, the population without the images named (file name or path)), counted under `reason`."""
    keep = np.array([os.path.basename(f) not in names and f not in names for f in pop.files], bool)
    out = pop.take(keep)
    if (~keep).any():
        out.skipped[reason] = out.skipped.get(reason, 0) + int((~keep).sum())
    return keep, out


def bundle_thresholds(embedder: Embedder) -> dict[str, float] | None:
    """The calibrated thresholds of a bundle ({"1e-3": t, ...}), None for an embedder without them."""
    return bundle_meta_thresholds(getattr(embedder, "meta", None) or {})


def bundle_meta_thresholds(meta: dict) -> dict[str, float] | None:
    """The calibrated thresholds ({"1e-3": t, ...}) of a bundle's manifest."""
    at_far = (meta.get("thresholds") or {}).get("at_far", {})
    return {k: v["threshold"] for k, v in at_far.items() if isinstance(v, dict) and "threshold" in v} or None


def report_for(embedder: Embedder, e: Embedded, listed: Population, dup: dict, fars=FARS, thresholds: dict[str, float] | None = None) -> dict:
    """fairness_report over `e` without the images `dup` drops, with the provenance of the run; `thresholds`
    (a bundle's, for a model measured before its export) replace the embedder's own."""
    keep, kept = without(e.population, set(dup.get("dropped", [])), "near-duplicate")
    report = fairness_report(e.emb[keep], kept, thresholds or bundle_thresholds(embedder), fars)
    report.update(model=embedder.card.name, backend=embedder.backend, population=listed.name, description=listed.description,
                  images_listed=len(listed.files), skipped=listed.skipped, no_face=e.no_face, near_duplicates=dup,
                  face_rule="YuNet detection + alignment to the card's template (as edgeface eval); images without a detected face left out")
    return report


def measure(embedder: Embedder, pop: Population, store: LandmarkStore | None = None, dedup: str = "flip", exclude: set[str] | None = None,
            fars=FARS, show_progress: bool = True, thresholds: dict[str, float] | None = None) -> dict:
    """`edgeface fairness` as a library call: the report of `embedder` on `pop` (module doc)."""
    if dedup not in ("flip", "none"):
        raise ValueError(f"dedup must be 'flip' or 'none', got {dedup!r}")
    if exclude:
        pop = without(pop, exclude, "excluded by list")[1]
    e = embed_population(embedder, pop, store, show_progress)
    dup = find_duplicates(e) if dedup == "flip" else {"rule": "none"}
    return report_for(embedder, e, pop, dup, fars, thresholds)


# ---- output ---------------------------------------------------------------------------------

def format_report(report: dict) -> str:
    """Per group: counts and FMR at each threshold, then the ratios and each group's own threshold."""
    names = list(report["at_threshold"])
    head = ["group", "images", "impostor pairs"] + [f"FMR@{n} ({report['at_threshold'][n]['threshold']:.4f})" for n in names]
    keys = list(next(iter(report["threshold_per_group"].values()), {}) or [])
    head += [f"own t @{k}" for k in keys]
    rows = []
    for g in report["groups"]:
        c = report["counts"][g]
        row = [g, str(c["images"]), str(c["impostor_pairs"])]
        for n in names:
            r = report["at_threshold"][n]["groups"][g]
            row.append("n/a" if r["fmr"] is None else f"{r['fmr']:.2e}" + ("" if r["resolved"] else "*"))
        for k in keys:
            o = report["threshold_per_group"][g].get(k)
            row.append("n/a" if o is None else f"{o['threshold']:.4f}")
        rows.append(row)
    ratio_row = ["max/min", "", ""] + [
        ("n/a" if report["at_threshold"][n]["ratio"]["ratio"] is None else f"{report['at_threshold'][n]['ratio']['ratio']:.1f}x") for n in names] + [""] * len(keys)
    widths = [max(len(h), *(len(r[i]) for r in rows + [ratio_row])) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows] + [line(ratio_row)]
    out.append("* fewer than 10/FAR impostor pairs: the rate is not resolved; max/min over " + ", ".join(report["headline_groups"]))
    return "\n".join(out)


def plot_fairness(reports: dict[str, dict], path: str | os.PathLike, thresholds: list[str] | None = None, title: str = "") -> None:
    """FMR per group on a log axis, one bar per (model, threshold), the nominal FAR drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(reports.values()))
    groups = first["groups"]
    series = []
    for model, rep in reports.items():
        for name in thresholds or list(rep["at_threshold"]):
            if name in rep["at_threshold"]:
                series.append((f"{model}: {name} (t={rep['at_threshold'][name]['threshold']:.3f})" if len(reports) > 1
                               else f"{name} (t={rep['at_threshold'][name]['threshold']:.3f})", rep["at_threshold"][name]))
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(groups) + 2), 5.2), dpi=120)
    width = 0.8 / max(1, len(series))
    positive = [v for _, s in series for v in (x.get("fmr") for x in s["groups"].values()) if v]
    nominal = sorted({s["far"] for _, s in series})
    floor = 10 ** np.floor(np.log10(min(positive + nominal) / 3))
    for k, (label, s) in enumerate(series):
        vals = [s["groups"].get(g, {}).get("fmr") for g in groups]
        xs = np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width
        bars = ax.bar(xs, [v if v else 0 for v in vals], width, label=label, bottom=0)
        for x, v, g in zip(xs, vals, groups):
            if not v:  # no impostor accepted: say so instead of drawing a bar down to an arbitrary floor
                n = s["groups"].get(g, {}).get("num_impostor", 0)
                ax.annotate(f"0/{n}", (x, floor), fontsize=6, ha="center", va="bottom", rotation=90, color=bars.patches[0].get_facecolor())
    for f in nominal:
        ax.axhline(f, color="k", lw=0.8, ls="--")
        ax.annotate(f"nominal FAR {far_key(f)}", (len(groups) - 0.5, f), fontsize=7, ha="right", va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel("false match rate, impostor pairs within the group (log)")
    ax.set_title(title or f"FMR per group: {first.get('population', '')}", fontsize=10)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
