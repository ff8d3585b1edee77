"""edgeface fairness: group readers, the pooled threshold, near-duplicates, the per-group report
(synthetic embeddings: seconds, no ../shared)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgeface.eval import fairness as F
from edgeface.eval.datasets import DataError
from edgeface.eval.protocol import threshold_for_far


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_utkface_reader_keeps_only_the_half_and_groups_by_age_and_race(tmp_path):
    names = [f"{age}_{g}_{race}_2017{k:09d}.jpg.chip.jpg" for k, (age, g, race) in enumerate(
        [(30, 0, 0), (25, 1, 1), (40, 0, 2), (50, 1, 3), (33, 0, 4), (8, 1, 2), (15, 0, 0), (80, 1, 1)] * 8)]
    names += ["39_1_20170116174525125.jpg.chip.jpg"]  # a real malformed UTKFace name: no race
    for n in names:
        (tmp_path / n).write_bytes(b"")  # never opened by the reader
    pop = F.utkface(tmp_path)
    files = [p.split("/")[-1] for p in pop.files]
    assert files and all(hashlib.sha256(f.encode()).hexdigest()[0] in "01234567" for f in files)
    other = sum(hashlib.sha256(n.encode()).hexdigest()[0] not in "01234567" for n in names)
    assert pop.skipped["other half"] == other > 0
    for f, g in zip(files, pop.groups):
        age, race = int(f.split("_")[0]), int(f.split("_")[2])
        assert g == (F.UTK_CHILDREN if age <= 12 else F.UTK_RACES[race])
        assert 18 <= age <= 70 or age <= 12
    assert set(pop.headline_groups) == {"White", "Black", "Asian", "Indian"}
    assert F.population(tmp_path).name == "utkface"  # guessed from the names


def test_aaf_reader_and_groups_csv(tmp_path):
    (tmp_path / "images").mkdir()
    for n in ("00001A02.jpg", "00002A15.jpg", "00003A40.jpg", "00004A75.jpg"):
        (tmp_path / "images" / n).write_bytes(b"")
    pop = F.population(tmp_path)
    assert pop.name == "aaf" and pop.groups == ["Children <= 12", "Teens 13-17", "Adults 18-70", "Older > 70"]
    csv = tmp_path / "g.csv"
    csv.write_text("image,group,identity\na.jpg,x,p1\nb.jpg,x,p1\nc.jpg,y,\n")
    pop = F.population(groups_csv=csv)
    assert pop.groups == ["x", "x", "y"] and pop.identities == ["p1", "p1", ""] and pop.files[0] == str(tmp_path / "a.jpg")
    (tmp_path / "bad.csv").write_text("file,grp\na.jpg,x\n")
    with pytest.raises(DataError, match="image, group"):
        F.population(groups_csv=tmp_path / "bad.csv")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "face.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="--groups"):
        F.population(tmp_path / "plain")


def test_pooled_threshold_weights_groups_equally(rng):
    a = rng.normal(0.0, 0.1, 200_000)  # a large group of well-separated impostors
    b = rng.normal(0.3, 0.1, 20_000)  # a small group whose impostors are more alike
    t = F.pooled_threshold([a, b], 1e-3)
    mean = lambda th: (np.mean(a >= th) + np.mean(b >= th)) / 2  # noqa: E731
    assert mean(t) <= 1e-3 < mean(t - 2e-6)
    # the union of the pairs would be set by the large group alone: a lower threshold
    assert threshold_for_far(np.concatenate([a, b]), 1e-3) < t
    assert np.mean(a >= threshold_for_far(a, 1e-3)) <= 1e-3


def test_near_duplicates_are_clustered_and_dropped(rng):
    e = _unit(rng.standard_normal((50, 64)))
    e[10] = _unit(e[3:4] + 0.01 * rng.standard_normal((1, 64)))[0]
    e[20] = _unit(e[3:4] + 0.01 * rng.standard_normal((1, 64)))[0]
    drop, pairs = F.near_duplicates(e, 0.99, block=7)
    assert pairs == 3 and list(np.flatnonzero(drop)) == [10, 20]
    ids = [""] * 50
    ids[3] = ids[10] = ids[20] = "p"  # photos of one known person are genuine, not duplicates
    drop, pairs = F.near_duplicates(e, 0.99, ids)
    assert pairs == 0 and not drop.any()


def test_report_finds_the_group_whose_impostors_are_alike(rng):
    d = 32
    spread = _unit(rng.standard_normal((300, d)))
    centre = rng.standard_normal(d)
    alike = _unit(centre + 0.6 * rng.standard_normal((300, d)))  # impostors far more alike
    # one group with identities: 100 people x 2 photos
    people = _unit(rng.standard_normal((100, d)))
    photos = _unit(np.repeat(people, 2, 0) + 0.2 * rng.standard_normal((200, d)))
    emb = np.concatenate([spread, alike, photos])
    groups = ["A"] * 300 + ["B"] * 300 + ["C"] * 200
    ids = [""] * 600 + [f"p{i // 2}" for i in range(200)]
    pop = F.Population([f"{i}.jpg" for i in range(800)], groups, ids, "synthetic", "test")
    rep = F.fairness_report(emb, pop, {"1e-3": 0.5, "1e-4": 0.6})
    assert rep["counts"]["A"]["impostor_pairs"] == 300 * 299 // 2
    assert rep["counts"]["C"] == {"images": 200, "people": 100, "impostor_pairs": 200 * 199 // 2 - 100, "genuine_pairs": 100}
    pooled = rep["at_threshold"]["pooled 1e-3"]
    fmr = {g: pooled["groups"][g]["fmr"] for g in "ABC"}
    assert np.mean(list(fmr.values())) <= 1e-3
    assert fmr["B"] > 1e-3 > fmr["A"]
    assert pooled["ratio"]["max_group"] == "B"
    assert (pooled["ratio"]["ratio"] or np.inf) > 10 and (pooled["ratio"]["ratio"] is not None or "unbounded" in pooled["ratio"]["note"])
    assert "fnmr" in pooled["groups"]["C"] and "fnmr" not in pooled["groups"]["A"]
    assert set(rep["at_threshold"]) == {"pooled 1e-3", "pooled 1e-4", "bundle 1e-3", "bundle 1e-4"}
    # each group's own threshold gives it the nominal FAR
    for g in "ABC":
        t = rep["threshold_per_group"][g]["1e-3"]["threshold"]
        assert t == threshold_for_far(F.group_scores(emb, groups, F.person_keys(ids, pop.files))[g][1], 1e-3)
    assert rep["threshold_per_group"]["B"]["1e-3"]["threshold"] > rep["threshold_per_group"]["A"]["1e-3"]["threshold"]
    text = F.format_report(rep)
    assert "max/min" in text and "B" in text


def test_plot_writes_a_png(tmp_path, rng):
    emb = _unit(rng.standard_normal((120, 16)))
    pop = F.Population([f"{i}" for i in range(120)], ["x"] * 60 + ["y"] * 60, [""] * 120, "p", "d")
    rep = F.fairness_report(emb, pop, fars=(1e-2,))
    F.plot_fairness({"m": rep}, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_bundle_at_its_own_and_pooled_thresholds(tmp_path, monkeypatch, rng, capsys):
    """`edgeface fairness BUNDLE --data UTKFACE --json --plot`: the handler's wiring (faces are synthetic
    embeddings here; the detection and alignment path is eval.faces', tested with `edgeface eval`)."""
    import json

    from edgeface.cli import main
    from tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "b")
    data = tmp_path / "utk"
    data.mkdir()
    for k in range(400):
        (data / f"{30 if k % 2 else 8}_0_{k % 4}_2017{k:09d}.jpg.chip.jpg").write_bytes(b"")
    seen = {}

    def fake_embed(embedder, pop, store=None, show_progress=True):
        seen["n"] = len(pop.files)
        e = _unit(rng.standard_normal((len(pop.files), 16)))
        e[1] = e[0]  # one near-duplicate
        return F.Embedded(e, pop, {"White": 1}, np.full(50, 0.999, np.float32))

    monkeypatch.setattr(F, "embed_population", fake_embed)
    out = tmp_path / "r.json"
    assert main(["fairness", str(bundle), "--data", str(data), "--far", "1e-2", "--json", str(out), "--plot", str(tmp_path / "p.png"), "--quiet"]) == 0
    rep = json.loads(out.read_text())
    assert set(rep["at_threshold"]) == {"pooled 1e-2", "bundle 1e-3", "bundle 1e-4"}
    assert rep["at_threshold"]["bundle 1e-3"]["threshold"] == 0.5
    assert rep["near_duplicates"]["images_dropped"] == 1 and rep["no_face"] == {"White": 1}
    assert sum(c["images"] for c in rep["counts"].values()) == seen["n"] - 1
    assert (tmp_path / "p.png").is_file() and "max/min" in capsys.readouterr().out
    assert main(["fairness", str(bundle), "--far", "2"]) == 1  # a clear error, no traceback
