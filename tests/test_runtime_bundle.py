"""The runtime on a REAL exported bundle, in a fresh venv that holds only the `runtime`
extra (numpy, onnxruntime, Pillow) and edgeface: torch is not importable there at all."""
import json
import shutil
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

from edgeface.core import paths

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.shared, pytest.mark.slow]
SMALL = dict(n_calib=48, n_verify=40, n_impostor=120, lfw_folds=0, n_conformance=8, show_progress=False)
RUNTIME_PACKAGES = ["numpy", "onnxruntime", "PIL", "pillow"]  # the `runtime` extra (import names and dist names)


@pytest.fixture(scope="module")
def bundle(shared, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from edgeface.export import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundle") / "mfn-onnx"
    meta = export_bundle(str(paths.reference_mobilefacenet()), "onnx", "fp32", out, ExportOptions(**SMALL))
    assert meta["status"] == "verified", meta.get("verification")
    return out


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory):
    """A new venv (no pip, no system site-packages) whose only packages are the runtime
    extra's, linked from this environment, plus the edgeface package itself."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(root / "v")
    py = root / "v" / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    import numpy

    src_site = Path(numpy.__file__).resolve().parent.parent
    for entry in src_site.iterdir():
        stem = entry.name.split("-")[0].split(".")[0]
        if stem.lower() in {p.lower() for p in RUNTIME_PACKAGES}:
            (site / entry.name).symlink_to(entry)
    (site / "edgeface").symlink_to(REPO / "edgeface")
    probe = subprocess.run([str(py), "-c", "import numpy, onnxruntime, PIL\ntry:\n import torch\nexcept ImportError:\n print('no torch')"], capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "no torch", probe.stderr
    return py


APP = textwrap.dedent(
    """
    import contextlib, glob, io, json, sys, time
    t0 = time.perf_counter()
    from edgeface.runtime import BundleError
    from edgeface.runtime.face import FaceRecognizer
    import_s = time.perf_counter() - t0
    bundle, altered, gallery, lfw, yunet = sys.argv[1:6]
    rec = FaceRecognizer.from_bundle(bundle, gallery=gallery, detector=yunet)
    assert rec.embedder.backend == "onnxruntime" and set(rec.thresholds) >= {"1e-3", "1e-4"}, rec.thresholds
    a = sorted(glob.glob(lfw + "/Hugo_Chavez/*.jpg"))
    b = sorted(glob.glob(lfw + "/Laura_Bush/*.jpg"))
    for name, files in [("hugo", a[:3]), ("laura", b[:3])]:
        r = rec.enroll(name, files)
        assert r.enrolled, r.to_dict()
    decided = 0
    for probe, right, wrong in [(p, "hugo", "laura") for p in a[5:9]] + [(p, "laura", "hugo") for p in b[5:9]]:
        v, w, i = rec.verify(probe, right), rec.verify(probe, wrong), rec.identify(probe)
        if v.match is None:
            assert v.rejected[0].reason == "quality" and i.name is None
            continue
        decided += 1
        assert v.match and v.threshold == rec.thresholds["1e-3"] and w.match is False and i.name == right, (v.to_dict(), i.to_dict())
    assert decided >= 6, decided
    try:
        FaceRecognizer.from_bundle(altered, detector=yunet)
    except BundleError as exc:
        assert "sha256" in str(exc), exc
    else:
        raise SystemExit("an altered bundle was accepted")
    assert "torch" not in sys.modules
    print(json.dumps({"ok": True, "import_s": import_s}))
    """
)


def test_runtime_app_in_fresh_venv_on_real_bundle(bundle, runtime_venv, shared, tmp_path):
    altered = tmp_path / "altered"
    shutil.copytree(bundle, altered)
    model = altered / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    lfw = shared / "datasets" / "lfw-dev" / "images"
    p = subprocess.run([str(runtime_venv), "-c", APP, str(bundle), str(altered), str(tmp_path / "g.db"), str(lfw), str(paths.yunet_model())],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["ok"]


def test_cli_in_fresh_venv(bundle, runtime_venv, shared, tmp_path):
    lfw = shared / "datasets" / "lfw-dev" / "images"
    hugo = sorted(str(f) for f in (lfw / "Hugo_Chavez").glob("*.jpg"))
    agassi = sorted(str(f) for f in (lfw / "Andre_Agassi").glob("*.jpg"))
    g = str(tmp_path / "cli.db")
    common = ["--bundle", str(bundle), "--gallery", g, "--detector", str(paths.yunet_model()), "--json"]

    def cli(*args):
        p = subprocess.run([str(runtime_venv), "-m", "edgeface", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
        return p.returncode, p.stdout, p.stderr

    rc, out, err = cli("enroll", "hugo", *hugo[:3], str(tmp_path / "missing.jpg"), *common, "--codec", "fp16")
    assert rc == 0, err
    res = json.loads(out)
    assert res["enrolled"] and res["images_used"] >= 2 and res["rejected"][-1]["reason"] == "missing"
    rc, out, err = cli("identify", hugo[6], *common)
    assert rc in (0, 4), err  # 4 only if the quality gate refused this probe
    if rc == 0:
        assert json.loads(out)["name"] == "hugo"
    rc, out, _ = cli("identify", agassi[0], *common)
    assert rc in (3, 4) and json.loads(out)["decision"] in ("unknown", "rejected")
    rc, out, err = cli("verify", hugo[6], "nobody", *common)
    assert rc == 1 and "not enrolled" in err and "Traceback" not in err
    rc, out, err = cli("verify", hugo[6], "hugo", "--landmarks", "1,2,3", *common)
    assert rc == 4 and json.loads(out)["rejected"][0]["reason"] == "bad_landmarks"
    rc, out, _ = cli("gallery", "info", "--gallery", g, "--json")
    info = json.loads(out)
    assert rc == 0 and info["identities"] == 1 and info["codec"] == "fp16"
    rc, out, _ = cli("gallery", "list", "--gallery", g)
    assert rc == 0 and out.startswith("hugo")
    rc, out, err = cli("enroll", "x", hugo[0], "--bundle", str(tmp_path / "nope"), "--gallery", g)
    assert rc == 1 and "nope" in err and "not found" in err and "Traceback" not in err
