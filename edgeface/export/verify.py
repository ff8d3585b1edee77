"""Verification of an exported bundle against its source, run after every export.

1. parity: cosine between the bundle's embeddings (in its own runtime) and the source
   model's, on real aligned faces not used for calibration -> min / mean;
2. LFW-dev accuracy (5-fold protocol of edgeface.evaluate) through the bundle;
3. thresholds at FAR 1e-3 / 1e-4, calibrated on LFW-dev: its 1,500 impostor pairs are too
   few for 1e-4, so the impostor scores are those of *every* pair of LFW-dev pair images of
   different people (7.26 million for the 3,000 pairs); TAR at each threshold is measured on LFW-dev's
   genuine pairs. Impostors from AAF-8k alone (a mostly East-Asian population) put the
   1e-3 threshold so high that the reference model kept only 72.5 % of LFW genuine pairs
   (vs 93.3 % at FAR 1e-3 on LFW's own impostors), so AAF-8k is reported separately.
The export fails below the target's tolerance (TOLERANCES).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..cache import cache_dir
from ..runtime.codecs import get_codec

# fp32/fp16: the tolerance; int8 tightened where measured (see README): mean >= 0.99, min >= 0.97.
TOLERANCES = {
    "fp32": {"cosine_min": 0.999},
    "fp16": {"cosine_min": 0.999},
    "int8": {"cosine_mean": 0.99, "cosine_min": 0.97},
}
FARS = ("1e-3", "1e-4")


def parity(exported: np.ndarray, source: np.ndarray) -> dict:
    cos = np.sum(exported * source, axis=1)
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "cosine_p01": float(np.quantile(cos, 0.01)), "num_faces": int(len(cos))}


# The contract says the output is L2-normalised in the graph, so apps compare raw outputs by
# dot product: a norm off by 1 % moves every score by 1 %.
OUTPUT_NORM_TOLERANCE = 1e-2


def output_norms(raw: np.ndarray) -> dict:
    n = np.linalg.norm(raw, axis=1)
    return {"output_norm_min": float(n.min()), "output_norm_max": float(n.max())}


def norm_failures(par: dict) -> list[str]:
    worst = max(abs(par["output_norm_min"] - 1), abs(par["output_norm_max"] - 1))
    if worst > OUTPUT_NORM_TOLERANCE:
        return [f"output norm {par['output_norm_min']:.4f}..{par['output_norm_max']:.4f}: not unit-length although the bundle says the graph "
                f"L2-normalises (more than {OUTPUT_NORM_TOLERANCE} off; was its normalisation quantized?)"]
    return []


def tolerance_failures(par: dict, precision: str) -> list[str]:
    tol = TOLERANCES[precision]
    fails = []
    for key, bound in tol.items():
        if par[key] < bound:
            fails.append(f"{key.replace('_', ' ')} {par[key]:.5f} < {bound} required for {precision}")
    return fails


_PAIRS: dict = {}


def lfw_pairs(lfw_dir: str | Path, folds: int | None = None):
    from ..data import load_pairs

    key = (str(lfw_dir), folds)
    if key not in _PAIRS:
        pairs = load_pairs(lfw_dir)
        if folds is not None:
            pairs = [p for p in pairs if p.fold < folds]
        _PAIRS[key] = pairs
    return _PAIRS[key]


_CROPS: dict = {}  # aligned LFW crops per (pair list, template, size): re-used by every target of one run


def _lfw_crops(pairs, store, card, show_progress: bool):
    from ..evaluate import aligned_crops, detect_all

    key = (id(pairs), len(pairs), card.template, tuple(card.input_size))
    if key not in _CROPS:
        paths = sorted({p for pr in pairs for p in (pr.a, pr.b)})
        faces = detect_all(paths, store, show_progress)
        crops, ok = aligned_crops(paths, faces, card, "fallback", show_progress)
        _CROPS.clear()
        _CROPS[key] = (paths, faces, crops, ok)
    return _CROPS[key]


def lfw_report(embedder, pairs, store, show_progress: bool = True, with_impostors: bool = False, codecs: tuple[str, ...] = ()):
    """(report, pair scores, labels) through any embedder (bundle or torch), with
    edgeface.evaluate's protocol and failure rule. With `with_impostors`, a 4th value: the
    scores of all pairs of detected pair images whose identities (LFW folder names) differ,
    and a 5th: {codec: (genuine scores, impostor scores)} for each template codec in `codecs`
    (the same pairs scored as a gallery of that codec would score them)."""
    from ..evaluate import PairEmbeddings, embed_crops, verification_report

    paths, faces, crops, ok = _lfw_crops(pairs, store, embedder.card, show_progress)
    emb = np.zeros((len(paths), embedder.card.embedding_size), np.float32)
    if ok.any():
        emb[ok] = embed_crops(embedder, crops[ok], show_progress=show_progress)
    pe = PairEmbeddings(paths, {p: i for i, p in enumerate(paths)}, emb, ok, faces)
    rep = verification_report(pe, pairs)
    ia = np.array([pe.index[p.a] for p in pairs])
    ib = np.array([pe.index[p.b] for p in pairs])
    usable = pe.usable[ia] & pe.usable[ib]
    scores = np.sum(pe.embeddings[ia] * pe.embeddings[ib], axis=1)[usable]
    labels = np.array([p.same for p in pairs])[usable]
    keep = ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far", "num_pairs", "num_scored", "num_failed", "num_excluded", "num_folds")
    out = {k: rep[k] for k in keep if k in rep}
    if not with_impostors:
        return out, scores, labels
    identities = [Path(p).parent.name for p, u in zip(paths, pe.usable) if u]
    by_codec = {}
    for name in codecs:
        sv = get_codec(name, pe.embeddings.shape[1]).score_vectors(pe.embeddings[pe.usable])  # (n, bits): not D wide
        v = np.zeros((len(pe.embeddings), sv.shape[1]), np.float32)
        v[pe.usable] = sv
        by_codec[name] = (np.sum(v[ia] * v[ib], axis=1)[usable], cross_identity_scores(v[pe.usable], identities))
    return out, scores, labels, cross_identity_scores(pe.embeddings[pe.usable], identities), by_codec


def cross_identity_scores(embeddings: np.ndarray, identities: list[str]) -> np.ndarray:
    """Cosine of every unordered pair of embeddings whose identities differ (float32)."""
    ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    e = np.asarray(embeddings, np.float32)
    out = []
    for i in range(len(e) - 1):  # row by row: a 4,600^2 Gram matrix would be fine too, 10x that would not
        row = e[i + 1 :] @ e[i]
        out.append(row[ids[i + 1 :] != ids[i]])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def cached_source_lfw(source_sha: str, pairs, compute) -> dict:
    """The source model's LFW-dev report, computed once per (source, pair list)."""
    key = hashlib.sha256((source_sha + "|" + "|".join(f"{p.a}{p.b}{p.same}{p.fold}" for p in pairs)).encode()).hexdigest()[:20]
    f = cache_dir("export", "source_lfw") / f"{key}.json"
    if f.is_file():
        return json.loads(f.read_text())
    rep = compute()
    f.write_text(json.dumps(rep))
    return rep


def codec_thresholds(by_codec: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The `thresholds.codecs` section: per Hamming template codec, thresholds calibrated on its
    own (genuine, impostor) scores of the same pairs as the cosine ones."""
    return {name: {"similarity": "Hamming: 1 - 2h/bits", "at_far": calibrate_thresholds(g, imp)} for name, (g, imp) in by_codec.items()}


def impostor_scores(embeddings: np.ndarray) -> np.ndarray:
    """All pairs among embeddings of different people (one person per embedding, as AAF-8k)."""
    return cross_identity_scores(embeddings, list(range(len(embeddings))))


def calibrate_thresholds(genuine: np.ndarray, impostor: np.ndarray, fars=FARS) -> dict:
    """Threshold t per FAR: accept when cosine >= t; at most FAR * N impostor scores reach t."""
    imp = np.sort(np.asarray(impostor, np.float64))[::-1]
    n = len(imp)
    out = {}
    for key in fars:
        f = float(key)
        k = int(np.floor(f * n))
        if k < 1:
            out[key] = {"threshold": float(min(1.0, imp[0] + 1e-6)), "far_measured": 0.0, "tar_lfw_dev": None,
                        "note": f"only {n} impostor scores: FAR {key} not resolvable, threshold above the highest impostor"}
            continue
        # Smallest 6-decimal value strictly above the (k+1)-th highest impostor score: at most k accepted.
        t = float(np.ceil(imp[k] * 1e6) / 1e6)
        if t <= imp[k]:
            t = float((np.floor(imp[k] * 1e6) + 1) / 1e6)
        out[key] = {
            "threshold": t,
            "far_measured": float(np.mean(impostor >= t)),
            "tar_lfw_dev": float(np.mean(genuine >= t)) if len(genuine) else None,
        }
    return out
