"""The bundle's operating point by calibration source: the population is balanced by source, each source's
impostors are scored on their own, and the CLI prints what each threshold gives every set and source."""
import numpy as np


def test_source_scores_are_the_pairs_within_each_source():
    from edgeface.export import verify as V

    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = [f"celeba:p{k % 4}" for k in range(12)] + [f"aaf:f{k}" for k in range(10)] + [f"lfw:n{k % 3}" for k in range(8)]
    by = V.source_scores(e, ids)
    assert sorted(by) == ["aaf", "celeba", "lfw"]
    for src in by:
        idx = [k for k, i in enumerate(ids) if i.startswith(src + ":")]
        gen = sorted(float(e[i] @ e[j]) for a, i in enumerate(idx) for j in idx[a + 1:] if ids[i] == ids[j])
        imp = sorted(float(e[i] @ e[j]) for a, i in enumerate(idx) for j in idx[a + 1:] if ids[i] != ids[j])
        np.testing.assert_allclose(np.sort(by[src][0]), gen, atol=1e-6)
        np.testing.assert_allclose(np.sort(by[src][1]), imp, atol=1e-6)
    assert len(by["aaf"][0]) == 0 and len(by["aaf"][1]) == 45  # one photo per person: impostors only


def test_threshold_population_is_balanced_by_source(shared):
    from edgeface.eval.faces import threshold_calibration_population

    pop = threshold_calibration_population(1200)
    counts = {s: sum(1 for i in pop.identities if i.startswith(s + ":")) for s in ("celeba", "lfw", "aaf")}
    assert counts["lfw"] == counts["aaf"] == 400 and 300 <= counts["celeba"] <= 400, counts
    assert "balanced by source" in pop.description


def test_operating_points_name_every_set_and_source():
    from edgeface.commands.export import operating_points

    a = {"far": 1e-3, "impostors_accepted": 5, "num_impostor": 5000, "tar": 0.9, "num_genuine": 300}
    meta = {"thresholds": {"at_far": {"1e-3": {"threshold": 0.5, "achieved": {"lfw_dev": a, "cfp_fp": dict(a, tar=0.5)}}},
                           "by_source": {"aaf": {"at_far": {"1e-3": dict(a, far=4e-3, impostors_accepted=20, tar=None)}},
                                         "celeba": {"at_far": {"1e-3": dict(a, far=1e-4, impostors_accepted=1)}}},
                           "calibration_set": {"num_faces": 4000, "num_people": 2900, "sources": ["aaf", "celeba", "lfw"]}}}
    text = "\n".join(operating_points(meta))
    assert "cosine >= 0.5000" in text and "lfw_dev    TAR 90.00 %" in text and "cfp_fp     TAR 50.00 %" in text
    assert "source aaf   FAR 4.00e-03 (20 of 5,000" in text and "source celeba TAR 90.00 %" in text
