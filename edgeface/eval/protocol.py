"""Face verification protocol: LFW-style k-fold accuracy, ROC, EER, TAR at FAR.

Numpy only. Scores are similarities (higher = more likely the same person).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape[0]} vs {labels.shape[0]}")
    if scores.size == 0:
        raise ValueError("no pairs to evaluate")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return scores, labels


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided right by `score >= threshold` means same person."""
    scores, labels = _check(scores, labels)
    return float(np.mean((scores >= threshold) == labels))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy on these pairs.

    Candidates are midpoints between consecutive distinct scores (plus both ends), so the
    choice does not depend on an arbitrary grid; ties are broken towards the middle one.
    """
    scores, labels = _check(scores, labels)
    uniq = np.unique(scores)
    cands = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])
    # Accuracy for every candidate at once: sort once, count positives above each cut.
    order = np.argsort(scores)
    s_sorted, l_sorted = scores[order], labels[order]
    n_pos = labels.sum()
    idx = np.searchsorted(s_sorted, cands, side="left")  # pairs below the cut are "different"
    neg_below = np.concatenate([[0], np.cumsum(~l_sorted)])[idx]
    pos_below = np.concatenate([[0], np.cumsum(l_sorted)])[idx]
    correct = neg_below + (n_pos - pos_below)
    best = np.flatnonzero(correct == correct.max())
    return float(cands[best[len(best) // 2]])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy with the threshold chosen on the other folds (the LFW protocol).

    Returns (accuracies, thresholds), one per fold in sorted fold order.
    """
    scores, labels = _check(scores, labels)
    folds = np.asarray(folds).ravel()
    if folds.shape != scores.shape:
        raise ValueError(f"folds and scores differ in length: {folds.shape[0]} vs {scores.shape[0]}")
    ids = np.unique(folds)
    if ids.size < 2:
        raise ValueError(f"k-fold accuracy needs at least 2 folds, got {ids.size}")
    accs, thrs = [], []
    for f in ids:
        test = folds == f
        thr = best_threshold(scores[~test], labels[~test])
        accs.append(accuracy_at(scores[test], labels[test], thr))
        thrs.append(thr)
    return np.array(accs), np.array(thrs)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds), thresholds descending; far/tar start at 0 and end at 1."""
    scores, labels = _check(scores, labels)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC needs both genuine and impostor pairs, got {n_pos} genuine and {n_neg} impostor")
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    # Keep the last index of each run of equal scores so ties are one ROC point.
    distinct = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(l)[distinct]
    fp = np.cumsum(~l)[distinct]
    tar = np.r_[0.0, tp / n_pos]
    far = np.r_[0.0, fp / n_neg]
    thr = np.r_[np.inf, s[distinct]]
    return far, tar, thr


def auc(far: np.ndarray, tar: np.ndarray) -> float:
    """Area under the ROC curve: TAR integrated over FAR by the trapezoid rule."""
    return float(np.trapezoid(tar, far))


def eer(far: np.ndarray, tar: np.ndarray) -> float:
    """Equal error rate: where FAR equals FRR (1 - TAR), linearly interpolated."""
    frr = 1.0 - tar
    diff = far - frr
    i = int(np.flatnonzero(diff >= 0)[0])
    if i == 0 or diff[i] == 0:
        return float(far[i])
    # Interpolate between points i-1 (far < frr) and i (far >= frr).
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def tar_at_far(far: np.ndarray, tar: np.ndarray, thr: np.ndarray, target_far: float) -> tuple[float, float]:
    """Highest TAR whose FAR does not exceed target_far, and its threshold."""
    ok = np.flatnonzero(far <= target_far + 1e-12)
    i = ok[-1]
    return float(tar[i]), float(thr[i])


@dataclass
class VerificationReport:
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    auc: float
    eer: float
    tar_at_far: dict[str, float]
    threshold_at_far: dict[str, float]
    num_pairs: int
    num_genuine: int
    num_impostor: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d


FARS = (1e-1, 1e-2, 1e-3)


def far_key(far: float) -> str:
    """The key a FAR is stored under: 0.001 -> "1e-3", 0.0001 -> "1e-4"."""
    return f"{far:.0e}".replace("e-0", "e-")


def evaluate_scores(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, fars: tuple[float, ...] = FARS
) -> tuple[VerificationReport, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The full verification report and the ROC (far, tar, thresholds) it came from."""
    scores, labels = _check(scores, labels)
    folds = np.asarray(folds).ravel()
    extra = {}
    if np.unique(folds).size < 2:
        # One fold cannot hold its own threshold out: split it into 10 interleaved folds.
        folds = np.arange(scores.size) % 10
        extra["folds_note"] = "a single fold was given; accuracy uses 10 interleaved sub-folds"
    accs, thrs = kfold_accuracy(scores, labels, folds)
    far, tar, thr = roc_curve(scores, labels)
    n_neg = int((~labels).sum())
    tars, thr_at = {}, {}
    for f in fars:
        key = far_key(f)
        if f * n_neg < 1:  # fewer impostors than 1/FAR: the figure would be an extrapolation
            continue
        tars[key], thr_at[key] = tar_at_far(far, tar, thr, f)
    report = VerificationReport(
        accuracy_mean=float(accs.mean()),
        accuracy_std=float(accs.std()),
        fold_accuracies=[float(a) for a in accs],
        fold_thresholds=[float(t) for t in thrs],
        auc=auc(far, tar),
        eer=eer(far, tar),
        tar_at_far=tars,
        threshold_at_far=thr_at,
        num_pairs=int(scores.size),
        num_genuine=int(labels.sum()),
        num_impostor=n_neg,
        extra=extra,
    )
    return report, (far, tar, thr)


def threshold_for_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold (6-decimal grid) at which at most floor(far * N) of the N impostor scores
    reach it (accept when score >= threshold): the rule every calibrated threshold of the kit uses.
    Needs far * N >= 1 (else no threshold is resolved: ValueError)."""
    imp = np.sort(np.asarray(impostor, np.float64))[::-1]
    k = int(np.floor(float(far) * len(imp)))
    if k < 1:
        raise ValueError(f"only {len(imp)} impostor scores: FAR {far:g} is not resolvable")
    # Smallest 6-decimal value strictly above the (k+1)-th highest impostor score: at most k accepted.
    t = float(np.ceil(imp[k] * 1e6) / 1e6)
    if t <= imp[k]:
        t = float((np.floor(imp[k] * 1e6) + 1) / 1e6)
    return t


def operating_points(genuine: np.ndarray, impostor: np.ndarray, thresholds: dict[str, float]) -> dict:
    """What fixed thresholds (e.g. a bundle's, calibrated elsewhere) achieve on these scores:
    per name, the threshold, the FAR reached (impostor scores >= threshold) and the TAR, with
    the counts behind them (a FAR of 1e-3 on 1,500 impostors is 0, 1 or 2 pairs: say so)."""
    gen = np.asarray(genuine, np.float64)
    imp = np.asarray(impostor, np.float64)
    out = {}
    for name, t in thresholds.items():
        n_acc = int(np.sum(imp >= t))
        out[name] = {
            "threshold": float(t),
            "far": float(n_acc / len(imp)) if len(imp) else None,
            "impostors_accepted": n_acc,
            "num_impostor": int(len(imp)),
            "tar": float(np.mean(gen >= t)) if len(gen) else None,
            "num_genuine": int(len(gen)),
            "far_over_target": float(n_acc / len(imp) / float(name)) if len(imp) and _is_number(name) else None,
        }
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str, title: str = "ROC", points: dict[str, tuple[float, float]] | None = None) -> None:
    """Save a ROC plot (log FAR axis) of one or more named (far, tar) curves as PNG.

    Readable at a glance: the FAR axis starts at the smallest FAR the impostor pairs resolve
    (nothing is drawn from extrapolation), the TAR axis spans what the curves reach there (a
    CFP-FP curve at 40 % is not cut off at 50 %), each legend entry carries the AUC and the TAR
    at FAR 1e-3 / 1e-2, the common FARs are marked, and optional `points` {label: (far, tar)}
    (e.g. a bundle's calibrated thresholds) are drawn as labelled markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    lo_far, lo_tar = 1.0, 1.0
    for name, (far, tar) in curves.items():
        keep = far > 0
        if not keep.any():
            continue
        lo_far = min(lo_far, float(far[keep].min()))
        lo_tar = min(lo_tar, float(tar[keep].min()))
        marks = [f"TAR@{k} {100 * tar_at_far(far, tar, np.zeros_like(far), f)[0]:.1f}%" for k, f in (("1e-3", 1e-3), ("1e-2", 1e-2)) if far[keep].min() <= f]
        ax.plot(far[keep], tar[keep], lw=1.6, label=f"{name}: AUC {auc(far, tar):.4f}" + (", " + ", ".join(marks) if marks else ""))
    for f in (1e-3, 1e-2, 1e-1):
        if f >= lo_far:
            ax.axvline(f, color="grey", lw=0.6, ls=":")
    for label, (f, t) in (points or {}).items():
        if f > 0:
            ax.plot([f], [t], "kD", ms=5)
            ax.annotate(label, (f, t), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(max(lo_far, 1e-6), 1)
    ax.set_ylim(max(0.0, np.floor(lo_tar * 10) / 10), 1.005)
    ax.set_xlabel("false accept rate (log)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
