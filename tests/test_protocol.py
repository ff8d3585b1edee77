import numpy as np
import pytest

from edgeface.eval.protocol import auc, best_threshold, eer, evaluate_scores, kfold_accuracy, roc_curve, tar_at_far


def test_kfold_accuracy_matches_hand_computation():
    # Fold 0: genuine 0.9, 0.8, 0.3 ; impostor 0.1, 0.5, 0.2
    # Fold 1: genuine 0.7, 0.6, 0.4 ; impostor 0.35, 0.05, 0.45
    scores = np.array([0.9, 0.8, 0.3, 0.1, 0.5, 0.2, 0.7, 0.6, 0.4, 0.35, 0.05, 0.45])
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0], bool)
    folds = np.array([0] * 6 + [1] * 6)
    accs, thrs = kfold_accuracy(scores, labels, folds)
    # Fold 0 is tested with the threshold chosen on fold 1. Fold 1 sorted: .05i .35i .4g .45i
    # .6g .7g; the best cuts (5/6 right) are the midpoints 0.375 and 0.525, ties take the
    # middle (upper) one: 0.525. On fold 0 it accepts .9 .8, rejects .3 (wrong) and .5 .2 .1: 5/6.
    # Fold 1 is tested with fold 0's threshold. Fold 0 sorted: .1i .2i .3g .5i .8g .9g; best
    # cuts (5/6) are 0.25 and 0.65 -> 0.65. On fold 1 it accepts .7, rejects .6 .4 (wrong
    # twice) and all impostors: 4/6.
    np.testing.assert_allclose(thrs, [0.525, 0.65])
    np.testing.assert_allclose(accs, [5 / 6, 4 / 6])


def test_best_threshold_separable():
    s = np.array([0.1, 0.2, 0.8, 0.9])
    l = np.array([0, 0, 1, 1], bool)
    t = best_threshold(s, l)
    assert 0.2 < t <= 0.8


def test_roc_auc_eer_tar_on_small_set():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    l = np.array([1, 1, 0, 1, 0, 0], bool)
    far, tar, thr = roc_curve(s, l)
    np.testing.assert_allclose(far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    # AUC = P(genuine score > impostor score) = 8/9 by counting the 9 pairs.
    assert auc(far, tar) == pytest.approx(8 / 9)
    # FRR = 1/3 where FAR = 1/3: EER 1/3.
    assert eer(far, tar) == pytest.approx(1 / 3)
    t, th = tar_at_far(far, tar, thr, 0.0)
    assert t == pytest.approx(2 / 3) and th == pytest.approx(0.8)


def test_auc_matches_pair_counting(rng):
    s = rng.normal(size=400)
    l = rng.random(400) < 0.5
    s[l] += 1.0
    far, tar, _ = roc_curve(s, l)
    pos, neg = s[l], s[~l]
    brute = np.mean(pos[:, None] > neg[None, :])
    assert auc(far, tar) == pytest.approx(brute, abs=1e-9)


def test_report_keys_and_far_guard(rng):
    s = rng.normal(size=200)
    l = np.arange(200) % 2 == 0
    s[l] += 2
    rep, _ = evaluate_scores(s, l, np.arange(200) // 20)
    d = rep.to_dict()
    for k in ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far", "num_pairs"):
        assert k in d
    assert "1e-2" in d["tar_at_far"] and "1e-3" not in d["tar_at_far"]  # only 100 impostors


def test_bad_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores(np.array([np.nan, 1.0]), np.array([1, 0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="differ in length"):
        evaluate_scores(np.array([0.1, 1.0]), np.array([1]), np.array([0, 1]))
