"""edgeface calibrate: a bundle re-sealed on another population's scores opens in the runtime
with the new thresholds and provenance; a too-small population is refused (the tiny bundle,
synthetic scores: seconds, no ../shared)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeface.cli import main
from edgeface.export import calibrate as C
from edgeface.runtime.bundle import load_bundle
from edgeface.runtime.conformance import check_conformance
from tiny_bundle import make_tiny_bundle, read


def _fake_population(gen, imp):
    def scores(bundle, data, pairs=None, show_progress=True):
        return gen, imp, {}, {"kind": "identity folders (a sub-folder per person)", "num_images": 500, "num_faces": 500, "num_people": 450}
    return scores


def test_recalibrated_bundle_opens_with_new_thresholds_and_provenance(tmp_path, monkeypatch, rng, capsys):
    src = make_tiny_bundle(tmp_path / "b")
    before = read(src)
    imp = rng.normal(0.2, 0.1, 200_000).astype(np.float32)
    gen = rng.normal(0.8, 0.1, 2_000).astype(np.float32)
    monkeypatch.setattr(C, "population_scores", _fake_population(gen, imp))
    monkeypatch.setattr(C, "max_impostor_pairs", lambda data, pairs=None: len(imp))
    th = C.recalibrate(src, tmp_path, out=tmp_path / "new", population="my people", show_progress=False)
    b = load_bundle(tmp_path / "new")  # digest, hashes, schema, semantic rules and the conformance self-test
    for k, f in (("1e-3", 1e-3), ("1e-4", 1e-4)):
        t = b.thresholds[k]
        assert t == th["at_far"][k]["threshold"] and np.mean(imp >= t) <= f < np.mean(imp >= t - 1e-5)
    assert b.thresholds != {k: v["threshold"] for k, v in before["thresholds"]["at_far"].items()}
    meta = read(tmp_path / "new")
    cs = meta["thresholds"]["calibration_set"]
    assert cs["population"] == "my people" and cs["num_people"] == 450 and cs["date"] and meta["thresholds"]["num_impostor"] == 200_000
    assert meta["thresholds"]["recalibration"]["previous"]["at_far"] == {"1e-3": 0.5, "1e-4": 0.6}
    assert meta["files"] == before["files"]  # the model is untouched
    assert check_conformance(b)["passed"]
    assert read(src) == before  # --out leaves the source bundle alone
    capsys.readouterr()
    assert main(["export", "--check", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "calibrated  on 'my people'" in out and f"FAR 1e-3: cosine >= {th['at_far']['1e-3']['threshold']:.4f}" in out


def test_too_small_folder_is_refused_before_any_face_is_embedded(tmp_path, monkeypatch):
    src = make_tiny_bundle(tmp_path / "b")
    people = tmp_path / "people"
    for k in range(30):  # 30 people x 2 photos: 1,740 impostor pairs, FAR 1e-3 needs 10,000
        (people / f"p{k}").mkdir(parents=True)
        for j in range(2):
            (people / f"p{k}" / f"{j}.jpg").write_bytes(b"")
    assert C.max_impostor_pairs(people) == 60 * 59 // 2 - 30

    def never(*a, **k):
        raise AssertionError("embedded a population already known to be too small")

    monkeypatch.setattr(C, "population_scores", never)
    with pytest.raises(C.CalibrationError, match=r"1,740 impostor pairs cannot calibrate FAR 1e-3"):
        C.recalibrate(src, people, show_progress=False)


def test_too_small_population_is_refused_and_nothing_changes(tmp_path, monkeypatch, rng, capsys):
    src = make_tiny_bundle(tmp_path / "b")
    before = (src / "edgeface.json").read_bytes()
    monkeypatch.setattr(C, "population_scores", _fake_population(np.zeros(10, np.float32), rng.normal(0, 0.1, 50_000).astype(np.float32)))
    monkeypatch.setattr(C, "max_impostor_pairs", lambda data, pairs=None: 200_000)  # the listing allows more than the faces found give
    with pytest.raises(C.CalibrationError, match=r"50,000 impostor pairs cannot calibrate FAR 1e-4: it needs at least 100,000"):
        C.recalibrate(src, tmp_path, show_progress=False)
    assert main(["calibrate", str(src), "--data", str(tmp_path), "--quiet"]) == 1
    assert "cannot calibrate FAR 1e-4" in capsys.readouterr().err
    assert main(["calibrate", str(src), "--data", str(tmp_path), "--far", "1e-3", "--quiet"]) == 1
    assert "must include 1e-3 and 1e-4" in capsys.readouterr().err
    assert (src / "edgeface.json").read_bytes() == before
    load_bundle(src)


def test_cli_recalibrates_in_place(tmp_path, monkeypatch, rng, capsys):
    src = make_tiny_bundle(tmp_path / "b")
    monkeypatch.setattr(C, "population_scores", _fake_population(rng.normal(0.8, 0.1, 100).astype(np.float32),
                                                                 rng.normal(0.2, 0.1, 120_000).astype(np.float32)))
    monkeypatch.setattr(C, "max_impostor_pairs", lambda data, pairs=None: 120_000)
    assert main(["calibrate", str(src), "--data", str(tmp_path), "--far", "1e-2,1e-3,1e-4", "--json", "--quiet"]) == 0
    th = json.loads(capsys.readouterr().out)
    assert set(th["at_far"]) == {"1e-2", "1e-3", "1e-4"}
    assert load_bundle(src).thresholds == {k: v["threshold"] for k, v in th["at_far"].items()}


def test_by_source_says_which_source_the_pooled_threshold_misses(rng):
    from edgeface.export import verify as V

    d = 16
    spread = rng.standard_normal((300, d))
    alike = rng.standard_normal(d) + 0.5 * rng.standard_normal((300, d))
    emb = np.concatenate([spread, alike])
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"celeba:{k}" for k in range(300)] + [f"aaf:{k}" for k in range(300)]
    gen, imp = V.population_scores(emb, ids)
    at_far = V.calibrate_thresholds(gen, imp, ("1e-3",))
    out = V.by_source(emb, ids, at_far)
    assert set(out) == {"celeba", "aaf"} and out["aaf"]["num_impostor"] == 300 * 299 // 2
    assert out["aaf"]["at_far"]["1e-3"]["far"] > 1e-3 > out["celeba"]["at_far"]["1e-3"]["far"]
    assert out["aaf"]["at_far"]["1e-3"]["threshold_for_this_source"] > at_far["1e-3"]["threshold"]
    assert out["aaf"]["far_curve"] and out["aaf"]["far_curve"][0]["far"] == 0.1
