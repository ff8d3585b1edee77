"""The probe, the adapters and the reports, on tiny real model files (no ../shared needed)."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.bench import report
from edgeface.bench.adapters import find_card, open_model
from edgeface.runtime.model_file import ModelFile
from edgeface.bench.harness import BenchSettings, BenchItem, classify, run_bench
from edgeface.bench.machine import describe, summary_line
from edgeface.bench.probe import probe, time_calls
from tiny_models import TINY_CARD, reference_embed, write_tiny_onnx

FAST = {"warmup": 2, "warmup_time": 0.0, "min_reps": 5, "min_time": 0.05, "max_time": 2.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    faces = np.random.default_rng(1).integers(0, 256, (12, 112, 96, 3), dtype=np.uint8)
    np.save(d / "faces.npy", faces, allow_pickle=False)
    np.save(d / "ref.npy", reference_embed(faces), allow_pickle=False)
    return {"dir": d, "faces": faces, "u8": write_tiny_onnx(d / "u8" / "tiny.onnx"), "f32": write_tiny_onnx(d / "f32" / "tiny.onnx", uint8_input=False)}


@pytest.mark.parametrize("variant", ["u8", "f32"])
def test_plain_onnx_matches_the_numpy_reference(tiny, variant):
    m = open_model(tiny[variant], threads=1)
    assert isinstance(m, ModelFile) and m.backend == "onnxruntime" and m.layout == ("NHWC" if variant == "u8" else "NCHW")
    e = m.embed(tiny["faces"])
    assert e.shape == (12, 16) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(e, reference_embed(tiny["faces"], "NHWC" if variant == "u8" else "NCHW"), atol=1e-4)


def test_plain_openvino_ir_matches(tiny, tmp_path):
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.convert_model(str(tiny["u8"])), str(xml))
    (tmp_path / "tiny.card.json").write_text(TINY_CARD.to_json())
    m = open_model(xml, threads=1)
    assert m.backend == "openvino"
    # 32k-term dot products: OpenVINO's summation order differs from numpy's in the 4th decimal.
    np.testing.assert_allclose(m.embed(tiny["faces"][:3]), reference_embed(tiny["faces"][:3]), atol=1e-3)
    np.testing.assert_allclose(m.embed(tiny["faces"][:1]), reference_embed(tiny["faces"][:1]), atol=1e-3)  # batch changes


def test_plain_model_without_card_names_the_fix(tiny, tmp_path):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(tiny["u8"].read_bytes())
    with pytest.raises(ValueError, match="--card"):
        open_model(bare)
    assert find_card(bare, tiny["u8"].with_suffix(".card.json")) == TINY_CARD
    with pytest.raises(ValueError, match="unsupported model file"):
        open_model(tiny["dir"] / "faces.npy")
    with pytest.raises(FileNotFoundError):
        open_model(tmp_path / "missing.onnx")


def test_wrong_faces_are_refused(tiny):
    m = open_model(tiny["u8"], threads=1)
    with pytest.raises(ValueError, match=r"\(N, 112, 96, 3\)"):
        m.embed(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        m.embed(np.zeros((1, 112, 96, 3), np.float32))


def test_time_calls_honours_repetitions_and_orders_percentiles():
    calls = []
    stats = time_calls(lambda: calls.append(1), **FAST)
    assert stats["n"] >= 5 and len(calls) >= stats["n"] + 2
    assert stats["min"] <= stats["p25"] <= stats["p50"] <= stats["p75"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    assert stats["iqr"] == pytest.approx(stats["p75"] - stats["p25"])


def test_time_calls_separates_cpu_time_from_waiting():
    """A call that waits (a sleeping or starved runtime) has wall time but almost no CPU time:
    the gap the MNN thread-pool bug showed (450-700 ms wall for 35 ms CPU per face)."""
    import time

    stats = time_calls(lambda: time.sleep(0.02), **FAST)
    assert stats["p50"] >= 20.0
    assert 0.0 <= stats["cpu_p50"] < 5.0


def test_probe_measures_and_checks_parity(tiny):
    r = probe(str(tiny["u8"]), threads=1, faces_path=str(tiny["dir"] / "faces.npy"), reference_path=str(tiny["dir"] / "ref.npy"), throughput_batch=4, timing=FAST)
    assert r["file_size_bytes"] == tiny["u8"].stat().st_size and r["threads"] == 1
    assert r["parity"]["n"] == 12 and r["parity"]["cos_min"] > 0.9999
    assert r["cold_start_s"] == pytest.approx(r["load_s"] + r["first_inference_s"])
    assert r["latency_ms"]["n"] >= 5 and r["throughput"]["batch"] == 4 and r["throughput"]["images_per_s"] > 0
    assert r["peak_rss_mb"] >= r["rss_before_load_mb"] > 0
    # A reference from another model is caught as poor parity, not hidden.
    other = tiny["dir"] / "other.npy"
    np.save(other, reference_embed(tiny["faces"], seed=5), allow_pickle=False)
    bad = probe(str(tiny["u8"]), threads=1, faces_path=str(tiny["dir"] / "faces.npy"), reference_path=str(other), throughput_batch=0, timing=FAST, describe_machine=False)
    assert bad["parity"]["cos_mean"] < 0.5 and "throughput" not in bad and "machine" not in bad


def test_probe_without_timing_reports_parity_and_no_time(tiny):
    """An emulated device (qemu-aarch64): what the model computes counts, its clock does not — no time field at all."""
    r = probe(str(tiny["u8"]), threads=1, faces_path=str(tiny["dir"] / "faces.npy"), reference_path=str(tiny["dir"] / "ref.npy"), throughput_batch=4,
              timing=FAST, describe_machine=False, timed=False)
    assert r["timed"] is False and r["parity"]["n"] == 12 and r["parity"]["cos_min"] > 0.9999
    assert not [k for k in r if k.endswith("_s") or k.endswith("_ms") or k in ("throughput", "latency_batch")], sorted(r)


def test_probe_cli_writes_json_and_fails_cleanly(tiny, tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "edgeface.bench.probe", str(tiny["u8"]), "--out", str(out), "--threads", "1", "--min-time", "0.05", "--min-reps", "5", "--throughput-batch", "2"]
    subprocess.run(cmd, check=True, timeout=120)
    data = json.loads(out.read_text())
    assert data["backend"] == "onnxruntime" and data["faces"] == "random" and "parity" not in data
    bad_faces = tmp_path / "bad.npy"
    np.save(bad_faces, np.zeros((2, 10, 10, 3), np.uint8))
    proc = subprocess.run(cmd + ["--faces", str(bad_faces)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "expected aligned faces (N, 112, 96, 3)" in proc.stderr and "Traceback" not in proc.stderr


def test_machine_description_is_complete():
    m = describe()
    assert m["usable_cores"] >= 1 and m["logical_cores"] >= m["usable_cores"] and m["cpu"] and m["python"]
    assert "numpy" in m["libraries"] and "onnxruntime" in m["libraries"]
    assert m["cpu"] in summary_line(m)


def test_classify(tiny, tmp_path):
    assert classify(str(tiny["u8"])) == "file"
    assert classify("mobilefacenet") == "source"
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="not an edgeface bundle"):
        classify(str(tmp_path / "b"))
    (tmp_path / "b" / "edgeface.json").write_text("{}")
    assert classify(str(tmp_path / "b")) == "bundle"
    with pytest.raises(FileNotFoundError):
        classify(str(tmp_path / "nope.tflite"))


def test_run_bench_and_reports(tiny, tmp_path):
    from edgeface.core.profiles import load_profile

    settings = BenchSettings(threads=(1, 0), throughput_batch=4, min_time=0.05, min_reps=5, warmup=2, accuracy=False, show_progress=False)
    targets = [BenchItem("onnx:u8", tiny["u8"], profile=load_profile("x86-server-onnxruntime")), BenchItem("onnx:f32", tiny["f32"]), BenchItem("broken", tmp_path / "nothing.onnx")]
    result = run_bench(targets, settings, tmp_path / "work", log=lambda *a: None)
    assert [r["target"] for r in result["rows"]] == ["onnx:u8", "onnx:f32"]
    assert result["errors"][0]["target"] == "broken" and "nothing.onnx" in result["errors"][0]["error"]
    u8 = result["rows"][0]
    assert u8["latency_p50_ms_1t"] > 0 and u8["latency_p50_ms_all"] > 0 and u8["throughput_ips_1t"] > 0
    assert u8["budgets"]["accuracy"]["pass"] is None and u8["budgets"]["size_mb"]["pass"] is True  # 2 MB file < 8 MB budget
    assert u8["pass"] is None and "pass" not in result["rows"][1]
    # Plot needs accuracy: give the rows one (the plot is what is tested here, not the number).
    for r, acc in zip(result["rows"], (0.9, 0.8)):
        r.update(accuracy=acc, accuracy_std=0.01, folds=5)
    files = report.write_all(result, tmp_path / "out")
    table = report.table(result)
    assert "onnx:u8" in table and "broken: not measured" in table and "machine:" in table
    rows = list(csv.DictReader(open(files["csv"])))
    assert [r["target"] for r in rows] == ["onnx:u8", "onnx:f32"] and float(rows[0]["file_size_mb"]) == pytest.approx(u8["file_size_mb"])
    assert json.loads(Path(files["json"]).read_text())["machine"]["cpu"] == result["machine"]["cpu"]
    assert Path(files["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tiny_linear | onnx:u8 |" in Path(files["md"]).read_text()


def test_bench_command_end_to_end(tiny, tmp_path):
    from edgeface.cli import main

    out = tmp_path / "out"
    code = main(["bench", str(tiny["u8"]), "--profile", "x86-server-onnxruntime", "--no-accuracy", "--min-time", "0.05", "--min-reps", "5", "--throughput-batch", "2", "--out", str(out), "--quiet"])
    data = json.loads((out / "bench.json").read_text())
    assert code == 0 and data["rows"][0]["profile"] == "x86-server-onnxruntime"
    assert main(["bench", str(tiny["u8"]), "--threads", "one"]) == 1  # clean error, no traceback


def test_peak_rss_is_the_probe_s_own_not_its_parent_s(tmp_path):
    # A parent that grew to ~400 MB starts a small child: the child's peak must be its own.
    code = (
        "import subprocess, sys\n"
        "big = bytearray(400 * 2**20)\n"
        "for i in range(0, len(big), 4096): big[i] = 1\n"
        "out = subprocess.run([sys.executable, '-c', 'from edgeface.bench.probe import peak_rss_mb; print(peak_rss_mb())'], capture_output=True, text=True, check=True).stdout\n"
        "print(out.strip())\n"
    )
    child_peak = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.strip())
    assert 5 < child_peak < 200, child_peak


def test_bench_reuses_export_verified_accuracy_only_for_the_same_data_and_unchanged_bundle(tmp_path):
    import hashlib
    import json

    from edgeface.bench.harness import REUSED, verified_accuracy

    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    same = {"pairs_sha256": "p" * 64, "images_sha256": "i" * 64, "num_pairs": 3000, "num_images": 4000}
    rep = {"accuracy_mean": 0.9, "accuracy_std": 0.01, "auc": 0.95, "eer": 0.1, "num_pairs": 3000, "num_failed": 0, "num_folds": 5, "dataset": same}
    old = {k: v for k, v in rep.items() if k != "dataset"}
    meta = {"model_file": "model.onnx", "files": {"model.onnx": hashlib.sha256(b"model bytes").hexdigest()}, "parity": {"lfw_dev": rep, "cfp_fp": old}}
    (tmp_path / "edgeface.json").write_text(json.dumps(meta))
    got = verified_accuracy(tmp_path, same)
    assert got["accuracy_mean"] == 0.9 and got["accuracy_source"] == REUSED
    assert verified_accuracy(tmp_path / "model.onnx", same)["num_folds"] == 5
    # Same pair count, other pairs or other images: measure again.
    assert verified_accuracy(tmp_path, dict(same, pairs_sha256="q" * 64)) is None
    assert verified_accuracy(tmp_path, dict(same, images_sha256="j" * 64)) is None
    # A record without a dataset identity (bundles exported before) is never reused.
    meta["parity"] = {"lfw_dev": old}
    (tmp_path / "edgeface.json").write_text(json.dumps(meta))
    assert verified_accuracy(tmp_path, same) is None
    meta["parity"] = {"lfw_dev": rep}
    (tmp_path / "edgeface.json").write_text(json.dumps(meta))
    (tmp_path / "model.onnx").write_bytes(b"altered")
    assert verified_accuracy(tmp_path, same) is None  # the file is not the one that was verified
