"""Evaluation that can be trusted: a stored accuracy is reused only for provably the same data,
`edgeface eval` measures bundles through their own runtime, benchmarks and folds are named
the same way everywhere."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from edgeface.eval.datasets import Pair, dataset_identity, first_folds, load_pairs
from tiny_models import TINY_CARD, write_tiny_onnx


def _pairs(tmp_path, n=6):
    imgs = []
    for k in range(n):
        p = tmp_path / f"id{k // 2}" / f"img{k}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([k]) * 100)
        imgs.append(str(p))
    return imgs, [Pair(imgs[0], imgs[1], True, 0), Pair(imgs[2], imgs[4], False, 0), Pair(imgs[2], imgs[3], True, 1), Pair(imgs[1], imgs[5], False, 1)]


def test_dataset_identity_tells_same_data_from_other_data_of_the_same_size(tmp_path):
    imgs, pairs = _pairs(tmp_path / "a")
    base = dataset_identity(pairs)
    assert base["num_pairs"] == 4 and base["num_images"] == 6
    # The same dataset copied elsewhere is the same data.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = [Pair(p.a.replace("/a/", "/b/"), p.b.replace("/a/", "/b/"), p.same, p.fold) for p in pairs]
    assert dataset_identity(moved) == base
    # Same count, other data: re-folded, re-drawn, relabelled, or one image's bytes changed.
    refolded = [Pair(p.a, p.b, p.same, 1 - p.fold) for p in pairs]
    redrawn = pairs[:1] + [Pair(imgs[3], imgs[4], False, 0)] + pairs[2:]
    relabelled = [Pair(p.a, p.b, not p.same, p.fold) for p in pairs]
    for other in (refolded, redrawn, relabelled):
        assert len(other) == len(pairs) and dataset_identity(other)["pairs_sha256"] != base["pairs_sha256"]
    Path(moved[0].a).write_bytes(b"another photo")
    changed = dataset_identity(moved)
    assert changed["pairs_sha256"] == base["pairs_sha256"] and changed["images_sha256"] != base["images_sha256"]


def test_first_folds_counts_folds_not_fold_numbers(tmp_path):
    _, pairs = _pairs(tmp_path)
    cfp_numbered = [Pair(p.a, p.b, p.same, p.fold + 1) for p in pairs]  # CFP's folds are 1..5
    assert len(first_folds(cfp_numbered, 1)) == 2 and {p.fold for p in first_folds(cfp_numbered, 1)} == {1}
    assert first_folds(pairs, None) == pairs


def _tiny_bundle_dir(d: Path) -> Path:
    """A folder holding a tiny real ONNX model and an edgeface.json carrying its card and hash,
    as an export writes it (the verification record is added by the test)."""
    model = write_tiny_onnx(d / "tiny.onnx", write_card=False)
    meta = {"model_file": "tiny.onnx", "files": {"tiny.onnx": hashlib.sha256(model.read_bytes()).hexdigest()}, "card": TINY_CARD.to_dict(), "parity": {}}
    (d / "edgeface.json").write_text(json.dumps(meta))
    return model


def _redrawn_lfw(lfw: Path, out: Path) -> Path:
    """LFW-dev's 3,000 pairs with each fold's mismatched pairs re-drawn from the same images
    (second images rotated by one within the fold) and the folds' order reversed: the same
    size and the same images as LFW-dev, but other pairs."""
    lines = (lfw / "pairs.txt").read_text().splitlines()
    head, body = lines[0], [ln.split() for ln in lines[1:] if ln.strip()]
    n_folds, per = (int(v) for v in head.split())
    folds = [body[k * 2 * per : (k + 1) * 2 * per] for k in range(n_folds)]
    new = []
    for fold in reversed(folds):
        match, mismatch = fold[:per], fold[per:]
        seconds = [m[2:] for m in mismatch]
        seconds = seconds[1:] + seconds[:1]
        new += match + [m[:2] + s for m, s in zip(mismatch, seconds)]
    out.write_text(head + "\n" + "\n".join("\t".join(ln) for ln in new) + "\n")
    return out


@pytest.mark.slow
def test_bench_measures_other_pairs_of_lfw_dev_size_and_reuses_only_the_same(shared, tmp_path):
    """The silent wrong number: bench --data OTHER (3,000 pairs, as LFW-dev) used to print the
    bundle's stored LFW-dev accuracy. Now only provably the same pairs and images are reused."""
    from edgeface.bench.harness import MEASURED, REUSED, BenchItem, BenchSettings, run_bench

    lfw = shared / "datasets" / "lfw-dev"
    model = _tiny_bundle_dir(tmp_path / "bundle")
    fast = dict(threads=(1,), throughput_batch=0, min_time=0.02, max_time=1.0, min_reps=3, warmup=1, show_progress=False)
    first = run_bench([BenchItem("tiny", model)], BenchSettings(**fast), tmp_path / "w1", log=lambda *a: None)
    lfw_cell = first["rows"][0]["benchmarks"]["lfw-dev"]
    assert lfw_cell["accuracy_source"] == MEASURED and lfw_cell["pairs"] == 3000
    # Record it as an export verification does: the report with the dataset identity of its pairs.
    meta = json.loads((model.parent / "edgeface.json").read_text())
    meta["parity"]["lfw_dev"] = {"accuracy_mean": lfw_cell["accuracy"], "accuracy_std": lfw_cell["accuracy_std"], "auc": lfw_cell["auc"], "eer": lfw_cell["eer"],
                                 "num_pairs": 3000, "num_folds": 5, "num_failed": lfw_cell["num_failed"], "dataset": dataset_identity(load_pairs(lfw))}
    (model.parent / "edgeface.json").write_text(json.dumps(meta))

    again = run_bench([BenchItem("tiny", model)], BenchSettings(**fast), tmp_path / "w2", log=lambda *a: None)["rows"][0]["benchmarks"]["lfw-dev"]
    assert again["accuracy_source"] == REUSED and again["accuracy"] == lfw_cell["accuracy"]

    other = _redrawn_lfw(lfw, tmp_path / "pairs_redrawn.txt")
    assert len(load_pairs(lfw, other)) == 3000
    res = run_bench([BenchItem("tiny", model)], BenchSettings(**fast, data=str(lfw), pairs=str(other)), tmp_path / "w3", log=lambda *a: None)
    cell = res["rows"][0]["benchmarks"]["data"]
    assert cell["accuracy_source"] == MEASURED and cell["pairs"] == 3000
    assert cell["accuracy"] != lfw_cell["accuracy"]
    from edgeface.bench import report

    assert "(reused)" not in report.table(res) and "(reused)" in report.table({**res, "rows": [{**res["rows"][0], "benchmarks": {"lfw-dev": again}}]})


def _small_lfw_csv(lfw: Path, out: Path, per_class: int = 12) -> Path:
    """A small pairs CSV (a,b,same,fold) over LFW-dev images, paths relative to lfw-dev/."""
    pairs = load_pairs(lfw)
    pick = [p for p in pairs if p.same][:per_class] + [p for p in pairs if not p.same][:per_class]
    rows = ["a,b,same,fold"] + [f"{Path(p.a).relative_to(lfw)},{Path(p.b).relative_to(lfw)},{int(p.same)},{k % 2}" for k, p in enumerate(pick)]
    out.write_text("\n".join(rows) + "\n")
    return out


def _local_targets():
    from edgeface.core.targets import available_targets

    return [t.key for t in available_targets("export") if t.can_run()]


@pytest.fixture(scope="module")
def reference_source(shared):
    from edgeface.core import paths
    from edgeface.export import load_source

    return load_source(str(paths.reference_mobilefacenet()))


@pytest.mark.slow
@pytest.mark.parametrize("target", _local_targets())
def test_eval_takes_a_bundle_and_a_pairs_file_without_torch(target, reference_source, shared, tmp_path):
    """`edgeface eval BUNDLE --data DIR --pairs FILE`, torch made impossible to import: the report
    is the source model's report (same protocol), measured through the bundle's own runtime."""
    from edgeface.export import ExportOptions, export_bundle
    from edgeface.core.targets import target as lookup
    from test_runtime_notorch import run_blocked

    fmt, precision = target.rsplit("-", 1)
    bundle = tmp_path / "bundle"
    meta = export_bundle("", fmt, precision, bundle, ExportOptions(n_calib=64, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False), src=reference_source)
    assert meta["status"] == "verified"
    lfw = shared / "datasets" / "lfw-dev"
    pairs_csv = _small_lfw_csv(lfw, tmp_path / "small.csv")
    out = tmp_path / "report.json"
    p = run_blocked(
        """
        import sys
        from edgeface.cli import main
        rc = main(["eval", sys.argv[1], "--data", sys.argv[2], "--pairs", sys.argv[3], "--json", sys.argv[4], "--quiet", "--threads", "1"])
        bad = [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "edgeface.models", "edgeface.zoo"))]
        assert rc == 0 and not bad, (rc, bad)
        """, str(bundle), str(lfw), str(pairs_csv), str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["backend"] == lookup(fmt, precision).backend and rep["num_pairs"] == 24 and rep["num_folds"] == 2
    assert rep["model_path"] == str(bundle) and "bundle thresholds on these pairs" in p.stdout
    # The bundle's thresholds, evaluated on these pairs' genuine and impostor scores.
    ops = rep["bundle_thresholds"]
    assert set(ops) == set(meta["thresholds"]["at_far"]) and ops["1e-3"]["num_genuine"] == 12 and ops["1e-3"]["num_impostor"] == 12
    # Same pairs through the torch source: the same protocol gives (nearly) the same report.
    from edgeface.eval.datasets import load_pairs as lp
    from edgeface.eval.verification import PairSet
    from edgeface.core.landmarks import LandmarkStore
    from edgeface.models.embedder import TorchEmbedder

    pairs = lp(lfw, pairs_csv)
    src = PairSet.load(pairs, reference_source.card, store=LandmarkStore.default(), show_progress=False).evaluate(
        TorchEmbedder(reference_source.net, reference_source.card, device="cpu"), show_progress=False)
    assert rep["num_scored"] == src["num_scored"] and rep["num_failed"] == src["num_failed"]
    assert abs(rep["auc"] - src["auc"]) <= (0.002 if precision != "int8" else 0.02)


def test_threshold_calibration_shares_no_identity_with_the_reported_sets(shared):
    """What this test can prove, and what it cannot (see docs/evaluation.md):
    - no calibration photo is a photo of LFW-dev's pairs or of CFP (paths, and image bytes);
    - no LFW person in the calibration set appears in an LFW-dev pair (LFW names are people's names);
    - CelebA-299 folders are CelebA identity numbers and CFP folders are CFP's own numbers: no name
      joins them to each other or to LFW, so their disjointness rests on the sources' statements
      (CelebFaces+ is disjoint from LFW by its authors' account; for CFP vs CelebA / LFW's extra
      identities there is no such statement, and CFP shares about a third of its people with LFW)."""
    import hashlib as h

    from edgeface.eval import benchmarks
    from edgeface.eval.datasets import lfw_pair_identities
    from edgeface.eval.faces import threshold_calibration_population

    pop = threshold_calibration_population()
    assert len(pop.files) == len(pop.identities) >= 3850 and len(set(pop.files)) == len(pop.files)  # 3,886: some CelebA people have < 10 photos
    sources = {i.split(":", 1)[0] for i in pop.identities}
    assert sources == {"celeba", "lfw", "aaf"}
    reported = {p for b in benchmarks.BENCHMARKS.values() for pr in b.pairs() for p in (pr.a, pr.b)}
    assert len(reported) > 7000
    assert not {str(Path(f).resolve()) for f in pop.files} & {str(Path(f).resolve()) for f in reported}
    lfw_reported = lfw_pair_identities(benchmarks.get("lfw-dev").pairs())
    lfw_cal = {i.split(":", 1)[1] for i in pop.identities if i.startswith("lfw:")}
    assert len(lfw_cal) > 500 and len(lfw_reported) > 1000 and not lfw_cal & lfw_reported
    assert all(Path(f).parent.name == i.split(":", 1)[1] for f, i in zip(pop.files, pop.identities) if i.startswith(("lfw:", "celeba:")))
    # No calibration image is byte-identical to a reported one (a copy under another name).
    digest = lambda f: h.sha256(Path(f).read_bytes()).hexdigest()  # noqa: E731
    assert not {digest(f) for f in pop.files} & {digest(f) for f in reported}
    # Genuine pairs exist (CelebA people with several photos) and the calibration is reproducible.
    celeba = [i for i in pop.identities if i.startswith("celeba:")]
    assert len(set(celeba)) == 4000 // 30 and len(celeba) > 1000  # a third of 4,000 photos, up to 10 per person
    assert threshold_calibration_population().files == pop.files


@pytest.mark.slow
def test_export_records_benchmarks_and_thresholds_calibrated_elsewhere(reference_source, shared, tmp_path):
    """The verification record: LFW-dev, CFP-FF, CFP-FP each with its dataset identity; thresholds
    calibrated on the calibration population, with what they achieve on each reported set."""
    from edgeface.eval import benchmarks
    from edgeface.export import ExportOptions, export_bundle
    from edgeface.runtime.bundle import read_meta

    opts = ExportOptions(n_calib=64, n_verify=40, n_impostor=120, lfw_folds=1, n_conformance=8, show_progress=False, n_threshold_faces=400)
    meta = export_bundle("", "onnx", "fp32", tmp_path / "b", opts, src=reference_source)
    assert meta["status"] == "verified"
    on_disk = read_meta(tmp_path / "b")  # schema-valid
    for name in ("lfw-dev", "cfp-ff", "cfp-fp"):
        rec = on_disk["parity"][name.replace("-", "_")]
        assert rec["dataset"] == dataset_identity(benchmarks.get(name).pairs(1)) and rec["num_folds"] == 1
        assert 0.5 < rec["accuracy_mean"] <= 1
    assert on_disk["parity"]["cfp_fp"]["accuracy_mean"] < on_disk["parity"]["cfp_ff"]["accuracy_mean"]  # pose costs accuracy
    th = on_disk["thresholds"]
    assert th["calibration_set"]["sources"] == ["aaf", "celeba", "lfw"] and "CelebA-299" in th["method"]
    for far in ("1e-3", "1e-4"):
        e = th["at_far"][far]
        assert e["far_measured"] <= float(far) and 0 < e["tar_calibration"] <= 1
        assert set(e["achieved"]) == {"lfw_dev", "cfp_ff", "cfp_fp"} and e["tar_lfw_dev"] == e["achieved"]["lfw_dev"]["tar"]
        assert e["achieved"]["cfp_fp"]["num_impostor"] > 50_000  # frontal x profile pairs of different people (1,500 pairs in the protocol)
    assert isinstance(th["notes"], list)
    assert set(th["codecs"]) and all(set(c["at_far"]["1e-3"]["achieved"]) == {"lfw_dev", "cfp_ff", "cfp_fp"} for c in th["codecs"].values())


def test_bench_report_has_a_column_and_a_panel_per_benchmark(tmp_path):
    import csv

    from edgeface.bench import report
    from edgeface.bench.harness import MEASURED, REUSED

    def cell(title, acc, src):
        return {"title": title, "accuracy": acc, "accuracy_std": 0.01, "auc": 0.99, "eer": 0.02, "tar_at_far_1e-3": 0.9, "pairs": 3000, "folds": 5,
                "num_failed": 0, "accuracy_source": src}

    rows = []
    for k, (model, target) in enumerate([("ref", "onnx-fp32"), ("ref", "tflite-int8"), ("small", "onnx-fp32")]):
        b = {"lfw-dev": cell("LFW-dev", 0.98 - k / 100, REUSED if k == 0 else MEASURED), "cfp-fp": cell("CFP-FP", 0.89 - k / 100, MEASURED)}
        rows.append({"target": f"{model}:{target}", "model": model, "backend": "onnxruntime", "file_size_mb": 2.0 + k, "cold_start_s": 0.1, "peak_rss_mb": 100.0,
                     "latency_p50_ms_1t": 3.0 + k, "threads_all": 2, "benchmarks": b, **{key: b["lfw-dev"][key] for key in ("accuracy", "accuracy_std", "folds")}})
    from edgeface.bench.machine import describe

    result = {"rows": rows, "errors": [], "machine": describe(), "settings": {"throughput_batch": 32}}
    text = report.table(result)
    assert "LFW-dev acc" in text and "CFP-FP acc" in text
    assert "98.00 ± 1.00 % (reused)" in text and "97.00 ± 1.00 %  " in text + "  " and "(reused): taken from the bundle's export verification" in text
    files = report.write_all(result, tmp_path)
    got = list(csv.DictReader(open(files["csv"])))
    assert got[0]["accuracy_source_lfw-dev"] == REUSED and got[1]["accuracy_source_lfw-dev"] == MEASURED and float(got[2]["accuracy_cfp-fp"]) == pytest.approx(0.87)
    assert "| LFW-dev acc | CFP-FP acc |" in Path(files["md"]).read_text()
    assert Path(files["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    w, h = Image.open(files["png"]).size
    assert w > h  # two panels side by side


def test_eval_selects_named_benchmarks_and_refuses_ambiguous_data(shared, capsys):
    import argparse

    from edgeface.cli import main
    from edgeface.commands.eval import select_pairs

    ns = lambda **kw: argparse.Namespace(**{"benchmark": None, "data": None, "pairs": None, "limit_folds": None, **kw})  # noqa: E731
    title, pairs = select_pairs(ns(benchmark="cfp-fp", limit_folds=1))
    assert title == "CFP-FP" and len(pairs) == 700 and {p.fold for p in pairs} == {1}
    assert any("/profile/" in p.b for p in pairs) and not any("/profile/" in p.b for p in select_pairs(ns(benchmark="cfp-ff"))[1])
    title, pairs = select_pairs(ns())
    assert title == "LFW-dev" and len(pairs) == 3000
    assert main(["eval", "mobilefacenet", "--benchmark", "cfp-fp", "--data", str(shared)]) == 1
    assert "either --benchmark or --data" in capsys.readouterr().err
