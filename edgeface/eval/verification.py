"""Face verification, one way for every caller: a PairSet is a list of pairs whose images are
detected once (YuNet, cached) and aligned once per card template; `PairSet.evaluate(embedder)`
scores any embedder (torch model, bundle, plain model file: core.embedder.Embedder) with the
protocol of eval.protocol. `edgeface eval`, the export's verification, the bench, pruning,
quantization and the training monitor all measure through it.

Failure rule (stated in every report): an image in which YuNet finds no face is aligned
with the dataset's mean landmarks (the average detection, in relative coordinates, over
images of the same size) and counted in `num_failed`; an image that cannot be read at all
excludes its pairs, counted in `num_excluded`. With on_fail="exclude", undetected images
exclude their pairs too.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.cache import cache_dir
from ..core.card import ModelCard
from ..core.embedder import Embedder
from ..core.landmarks import LandmarkStore
from ..core.progress import progress_bar
from .datasets import Pair, first_folds, load_pairs
from .faces import Detections, aligned_crops, detect_all, save_atomic
from .protocol import evaluate_scores, plot_roc

ON_FAIL = ("fallback", "exclude")


def embed_crops(embedder: Embedder, crops: np.ndarray, flip: str = "none", batch: int = 256, show_progress: bool = True) -> np.ndarray:
    """Embeddings of aligned crops; flip='concat' or 'sum' adds the mirrored crop's (InsightFace/LFW practice)."""
    outs = []
    bar = progress_bar(len(crops), f"embed[{embedder.backend}]", show_progress)  # counts images, not batches
    for i in range(0, len(crops), batch):
        x = crops[i : i + batch]
        e = embedder.embed(x)
        if flip != "none":
            ef = embedder.embed(np.ascontiguousarray(x[:, :, ::-1]))
            e = np.concatenate([e, ef], 1) if flip == "concat" else e + ef
        outs.append(e)
        bar.update(len(x))
    bar.close()
    e = np.concatenate(outs) if outs else np.zeros((0, embedder.card.embedding_size), np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-10)


# Aligned crops per (images, template, size, rule), kept for the process: the export verifies
# LFW-dev, CFP-FF and CFP-FP for every target, the bench every model of one card.
_LOADED: dict[tuple, np.ndarray] = {}
_KEEP_LOADED = 3


@dataclass
class PairSet:
    """Verification pairs over images detected once and aligned for one card's template.

    crops[i] is image paths[i] aligned (zeros where unusable); pair k compares images ia[k] and
    ib[k]. Embeddings given to `report` are one row per image, in paths' order."""

    paths: list[str]
    crops: np.ndarray  # (N, H, W, 3) uint8
    usable: np.ndarray  # (N,) bool: the image has a face to embed (detected, or by the fallback rule)
    ia: np.ndarray  # (P,) int
    ib: np.ndarray
    same: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int
    failed: np.ndarray  # (N,) bool: YuNet found no face (aligned by the fallback rule when usable)
    pairs: list[Pair] | None = None
    faces: Detections | None = None

    @classmethod
    def load(cls, source: str | os.PathLike | list[Pair], card: ModelCard, pairs_file: str | os.PathLike | None = None, folds: int | None = None,
             on_fail: str = "fallback", store: LandmarkStore | None = None, show_progress: bool = True) -> "PairSet":
        """The pairs of a dataset folder (LFW `pairs.txt`, a CSV, see eval.datasets.load_pairs) or
        a list of Pair, only the first `folds` folds when given (eval.datasets.first_folds), detected
        and aligned for `card`. Crops are cached on disk (uint8 .npy keyed by the images, the
        landmarks they are cut with, template and size) and for the process."""
        if on_fail not in ON_FAIL:
            raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")
        pairs = list(source) if isinstance(source, list) else load_pairs(source, pairs_file)
        pairs = first_folds(pairs, folds)
        if not pairs:
            raise ValueError(f"{source if not isinstance(source, list) else 'pair list'}: no pairs to evaluate")
        paths = sorted({q for p in pairs for q in (p.a, p.b)})
        faces = detect_all(paths, store or LandmarkStore.default(), show_progress)
        h, w = card.input_size
        # The key is what the crops are made of: each image and the landmarks it is aligned by
        # (so another detector or fallback rule never reuses them).
        landmarks = [faces.landmarks_for(p, on_fail) for p in paths]
        usable = np.array([lm is not None for lm in landmarks], bool)
        h_ = hashlib.sha256()
        for p, lm in zip(paths, landmarks):
            h_.update(p.encode() + b"\0" + (b"-" if lm is None else np.asarray(lm, np.float64).round(3).tobytes()))
        digest = h_.hexdigest()[:20]
        key = (digest, card.template, h, w)
        if key not in _LOADED:
            disk = cache_dir("crops") / f"pairs-{digest}-{card.template}-{h}x{w}.npy"
            crops = np.load(disk, allow_pickle=False) if disk.is_file() else None
            if crops is None or crops.shape != (len(paths), h, w, 3) or crops.dtype != np.uint8:
                crops, _ = aligned_crops(paths, faces, card, on_fail, show_progress)  # its mask is `usable`
                save_atomic(disk, crops)
            while len(_LOADED) >= _KEEP_LOADED:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = crops
        crops = _LOADED[key]
        index = {p: i for i, p in enumerate(paths)}
        failed = np.array([faces.records[p].status == "no_face" for p in paths], bool)
        return cls(paths, crops, usable, np.array([index[p.a] for p in pairs]), np.array([index[p.b] for p in pairs]),
                   np.array([p.same for p in pairs], bool), np.array([p.fold for p in pairs]), failed, pairs, faces)

    @property
    def index(self) -> dict[str, int]:
        """Image path -> row of crops / embeddings."""
        return {p: i for i, p in enumerate(self.paths)}

    @property
    def pair_usable(self) -> np.ndarray:
        """(P,) bool: both images of the pair can be embedded."""
        return self.usable[self.ia] & self.usable[self.ib]

    def embed(self, embedder: Embedder, flip: str = "none", show_progress: bool = True) -> np.ndarray:
        """(N, D) unit embeddings of every image (zero rows where unusable); flip='concat' doubles D."""
        width = embedder.card.embedding_size * (2 if flip == "concat" else 1)
        emb = np.zeros((len(self.paths), width), np.float32)
        if self.usable.any():
            emb[self.usable] = embed_crops(embedder, self.crops[self.usable], flip, show_progress=show_progress)
        return emb

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(P,) cosine of every pair (rows renormalised; zero rows score 0)."""
        e = np.asarray(embeddings, np.float32)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-10)
        return np.sum(e[self.ia] * e[self.ib], axis=1)

    def report(self, embeddings: np.ndarray, roc_png: str | None = None, title: str = "", roc_points: dict[str, tuple[float, float]] | None = None) -> dict:
        """The verification report over the usable pairs (eval.protocol.evaluate_scores) plus pair,
        image and failure counts; with `roc_png` also draws the ROC curve there."""
        return self.score_report(self.scores(embeddings), roc_png, title, roc_points)

    def score_report(self, scores: np.ndarray, roc_png: str | None = None, title: str = "", roc_points: dict[str, tuple[float, float]] | None = None) -> dict:
        """`report` for pair scores computed elsewhere (a binary codec's, a foreign model's), one per pair."""
        usable = self.pair_usable
        report, (far, tar, _) = evaluate_scores(np.asarray(scores, np.float64)[usable], self.same[usable], self.folds[usable])
        out = report.to_dict()
        out.update(
            num_pairs=int(len(self.ia)),
            num_scored=int(usable.sum()),
            num_failed=int((self.failed[self.ia] | self.failed[self.ib]).sum()),
            num_excluded=int((~usable).sum()),
            num_images=len(self.paths),
            image_problems=self.faces.problems() if self.faces else {},
            image_notes=self.faces.notes() if self.faces else {},
            num_folds=int(np.unique(self.folds).size),
        )
        if roc_png:
            plot_roc({title or "model": (far, tar)}, roc_png, title=f"ROC {title}".strip(), points=roc_points)
            out["roc_png"] = roc_png
        return out

    def evaluate(self, embedder: Embedder, flip: str = "none", show_progress: bool = True, **report_args) -> dict:
        """Embed every image through `embedder` and report (the one evaluation of the kit)."""
        return self.report(self.embed(embedder, flip, show_progress), **report_args)

    def headline(self, embeddings: np.ndarray) -> dict:
        """The rounded numbers a job's report keeps of `report`: accuracy (mean, std), AUC, EER, pairs scored."""
        r = self.report(embeddings)
        return {"accuracy": round(r["accuracy_mean"], 5), "accuracy_std": round(r["accuracy_std"], 5), "auc": round(r["auc"], 5),
                "eer": round(r["eer"], 5), "lfw_pairs": r["num_scored"]}

    def subset(self, folds: int) -> "PairSet":
        """Only the pairs of the first `folds` folds, with only the images they use (itself when that is all of them)."""
        if folds > int(self.folds.max(initial=-1)):
            return self
        sel = self.folds < folds
        used, inv = np.unique(np.concatenate([self.ia[sel], self.ib[sel]]), return_inverse=True)
        n = int(sel.sum())
        pairs = [p for p, s in zip(self.pairs, sel) if s] if self.pairs is not None else None
        return replace(self, paths=[self.paths[i] for i in used], crops=self.crops[used], usable=self.usable[used], failed=self.failed[used],
                       ia=inv[:n], ib=inv[n:], same=self.same[sel], folds=self.folds[sel], pairs=pairs)

    def save(self, path: str | os.PathLike) -> None:
        """The arrays as one .npz (no pickle), for a later run to skip detection and alignment."""
        np.savez(path, paths=np.array(self.paths), crops=self.crops, usable=self.usable, ia=self.ia, ib=self.ib, same=self.same,
                 folds=self.folds, failed=self.failed)

    @classmethod
    def from_arrays(cls, crops: np.ndarray, ia: np.ndarray, ib: np.ndarray, same: np.ndarray, folds: np.ndarray) -> "PairSet":
        """Pairs over crops aligned elsewhere (every crop usable; images named by their row)."""
        n = len(crops)
        return cls([f"#{i}" for i in range(n)], crops, np.ones(n, bool), np.asarray(ia), np.asarray(ib), np.asarray(same, bool), np.asarray(folds),
                   np.zeros(n, bool))

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> "PairSet":
        """A PairSet saved by `save` (image records are not kept: the report counts no image problems)."""
        with np.load(Path(path), allow_pickle=False) as z:
            missing = {"paths", "crops", "usable", "ia", "ib", "same", "folds", "failed"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a saved PairSet (missing {', '.join(sorted(missing))})")
            return cls([str(p) for p in z["paths"]], z["crops"], z["usable"], z["ia"], z["ib"], z["same"], z["folds"], z["failed"])


FAILURE_RULES = {
    "fallback": "no face: aligned with the dataset's mean landmarks for that image size (counted in num_failed); unreadable: pair excluded (num_excluded)",
    "exclude": "no face or unreadable: pair excluded (num_excluded)",
}


def bundle_operating_points(embedder: Embedder, pair_set: PairSet, embeddings: np.ndarray) -> dict | None:
    """For a bundle (an embedder with calibrated thresholds in its meta): the FAR / TAR each
    threshold reaches on these pairs; None for an embedder without thresholds."""
    from .protocol import operating_points

    at_far = (getattr(embedder, "meta", None) or {}).get("thresholds", {}).get("at_far", {})
    thresholds = {k: v["threshold"] for k, v in at_far.items() if isinstance(v, dict) and "threshold" in v}
    if not thresholds:
        return None
    scores, usable, same = pair_set.scores(embeddings), pair_set.pair_usable, pair_set.same
    return operating_points(scores[usable & same], scores[usable & ~same], thresholds)


def verify_pairs(embedder: Embedder, pairs: list[Pair], title: str, store: LandmarkStore | None = None, flip: str = "none", on_fail: str = "fallback",
                 roc_png: str | None = None, show_progress: bool = True) -> dict:
    """`edgeface eval` as a library call: the verification report of `embedder` on `pairs` with the
    dataset identity of the pairs, the failure rule, and for a bundle what its calibrated thresholds
    achieve (`bundle_thresholds`, also drawn on the ROC)."""
    from .datasets import dataset_identity

    pair_set = PairSet.load(pairs, embedder.card, on_fail=on_fail, store=store, show_progress=show_progress)
    embeddings = pair_set.embed(embedder, flip=flip, show_progress=show_progress)
    ops = bundle_operating_points(embedder, pair_set, embeddings)
    points = {f"bundle FAR {k} (t={o['threshold']:.3f})": (o["far"], o["tar"]) for k, o in (ops or {}).items() if o["far"]}
    report = pair_set.report(embeddings, roc_png=roc_png, title=f"{embedder.card.name} on {title}", roc_points=points)
    report.update(model=embedder.card.name, backend=embedder.backend, card=embedder.card.to_dict(), data=title, dataset=dataset_identity(pairs),
                  flip=flip, on_fail=on_fail, failure_rule=FAILURE_RULES[on_fail])
    if ops:
        report["bundle_thresholds"] = ops
    return report
