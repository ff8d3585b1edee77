"""The TypeScript SDK (sdk/js) on the shared SDK vectors (sdk/VECTORS.md): node's test runner runs
sdk/js/test/*.test.mjs against the vectors the Python runtime wrote, and this test asserts the run
passed with nothing skipped. Then the galleries Node wrote are opened and searched by the Python
Gallery: a gallery written by either runtime is read by the other.

Needs node + npm (.ci/run installs them); `npm ci` runs here when sdk/js/node_modules is missing."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sdk_vectors import SETS

pytestmark = [pytest.mark.shared, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
JS = REPO / "sdk" / "js"



def npm_env() -> dict:
    env = dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip")  # else its install script fetches CUDA files
    if Path("/usr/include/node/node.h").is_file():
        env["npm_config_nodedir"] = "/usr"  # node-gyp builds better-sqlite3 against the local headers
    return env


@pytest.fixture(scope="module")
def js_package():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed (.ci/run installs them)")
    if not (JS / "node_modules" / ".package-lock.json").is_file():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, env=npm_env(), capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the build (`npm run build`) without npm itself: npm may stall on registry checks when the registry is slow
    for cmd in (["node", "scripts/generate.mjs"], ["node", "node_modules/typescript/bin/tsc", "-p", "."]):
        r = subprocess.run(cmd, cwd=JS, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return JS


@pytest.fixture(scope="module")
def sdk_vectors(shared):
    pytest.importorskip("onnxruntime")
    import sdk_vectors

    return sdk_vectors.build(shared)


@pytest.fixture(scope="module", params=SETS)
def vector_set(request, shared):
    """Each shared vector set: the reference bundle and the shipped default's ONNX fp32 / int8 bundles."""
    pytest.importorskip("onnxruntime")
    import sdk_vectors

    return sdk_vectors.build(shared, request.param)


@pytest.fixture(scope="module")
def tflite_bundle(shared):
    """The reference model as a tflite fp32 bundle (the reduced calibration of the vectors' bundle),
    exported once per machine beside the vectors' cache (minutes), for the LiteRT.js test."""
    pytest.importorskip("ai_edge_litert")
    import fcntl

    import sdk_vectors
    from edgeface.core import paths

    root = sdk_vectors.cache_root() / sdk_vectors.cache_key(paths.reference_mobilefacenet())
    out, done = root / "bundle-tflite", root / "bundle-tflite.complete"
    if not done.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "lock-tflite", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.is_file():
                from edgeface.export import ExportOptions, export_bundle

                shutil.rmtree(out, ignore_errors=True)
                meta = export_bundle(str(paths.reference_mobilefacenet()), "tflite", "fp32", out, ExportOptions(**sdk_vectors.SMALL))
                assert meta["status"] == "verified", meta.get("verification")
                done.write_text("ok\n")
    return out


def run_node_tests(files: list[str], env: dict, timeout: int = 900) -> dict:
    """Run node's test runner (TAP) and return its summary counts; the full output on failure."""
    r = subprocess.run(["node", "--test", "--test-reporter=tap", *files], cwd=JS, env=env, capture_output=True, text=True, timeout=timeout)
    counts = {k: int(v) for k, v in re.findall(r"^# (tests|pass|fail|skipped|cancelled|todo) (\d+)$", r.stdout, re.M)}
    assert r.returncode == 0 and counts.get("fail") == 0, r.stdout[-6000:] + r.stderr[-3000:]
    return counts


def test_node_sdk_reproduces_the_python_runtime(js_package, vector_set, tmp_path):
    sdk_vectors = vector_set
    env = dict(os.environ, EDGEFACE_SDK_VECTORS=sdk_vectors["vectors"], EDGEFACE_SDK_JS_OUT=str(tmp_path))
    counts = run_node_tests(["test/unit.test.mjs", "test/node.test.mjs"], env)
    assert counts["pass"] >= 20 and counts["skipped"] == 0 and counts["cancelled"] == 0, counts

    # The galleries Node enrolled into, opened and searched by the Python runtime.
    from edgeface.runtime import load_bundle
    from edgeface.runtime.gallery import Gallery
    from edgeface.runtime.vectors import read_vectors

    doc = read_vectors(sdk_vectors["vectors"])
    bundle = load_bundle(sdk_vectors["bundle"])
    vec = Path(sdk_vectors["vectors"])
    emb = {f["id"]: np.frombuffer((vec / f["embedding"]).read_bytes(), "<f4") for f in doc["faces"]}
    tol = doc["tolerances"]["score_abs"]
    for g in doc["galleries"]:
        with Gallery(tmp_path / f"node-{g['codec']}.db", readonly=True) as node_gallery:
            node_gallery.check_model(bundle.card)  # Node wrote the same model fingerprint
            assert node_gallery.codec.name == g["codec"]
            assert node_gallery.names() == sorted(n for n, e in g["enrolment"].items() if e["enrolled"])
            for s in g["searches"]:
                if "candidates" not in s:
                    continue
                got = node_gallery.search(emb[s["probe"]], top_k=s["top_k"], use_index=False)[0]
                want = s["candidates"]
                assert [m.name for m in got][:1] == [want[0]["name"]], (g["codec"], s["probe"], got, want)
                # templates enrolled by Node from the same images: scores close to Python's own gallery
                assert all(abs(m.score - w["score"]) <= max(tol, 0.02) for m, w in zip(got, want) if m.name == w["name"]), (got, want)


def test_browser_sdk_reproduces_the_python_runtime(js_package, vector_set, request):
    """The same vectors through onnxruntime-web, canvas decoding and IndexedDB in headless Chromium, and,
    on the reference set, the web demo end to end with a fake camera (test/demo.test.mjs). The demo's
    scenario needs the camera's person identified; the default sets' bundles (reduced calibration,
    FAR-1e-3 threshold 0.968) identify no probe of the vectors (sdk/VECTORS.md), so the demo runs on the
    reference set only."""
    sdk_vectors = vector_set
    if not Path("/usr/bin/chromium").is_file():
        pytest.skip("no /usr/bin/chromium (.ci/run installs Debian's chromium)")
    from edgeface.core import paths

    demo = request.node.callspec.params["vector_set"] == "reference"
    env = dict(os.environ, EDGEFACE_SDK_VECTORS=sdk_vectors["vectors"], EDGEFACE_YUNET=str(paths.yunet_model()))
    counts = run_node_tests(["test/browser.test.mjs"] + (["test/demo.test.mjs"] if demo else []), env)
    assert counts["pass"] >= (6 if demo else 5) and counts["skipped"] == 0 and counts["cancelled"] == 0, counts


def test_sdk_judges_bundles_like_load_bundle(js_package, sdk_vectors, tmp_path):
    """The bundle rules of issue 20 in Node and in Chromium (over HTTP): ~65 mutated copies of a tiny sealed
    bundle get load_bundle's verdict (every BundleError kind, and "ok"), and a bundle with a quality.nonface
    section gives the Python gate's nonface_margin and decisions on faces and synthetic non-faces; a bundle
    shipping YuNet (export --detector) gives createRecognizer its detector."""
    import sdk_bundle_cases

    cases = sdk_bundle_cases.write_refusal_cases(tmp_path / "cases")
    nonface = sdk_bundle_cases.write_nonface_case(Path(sdk_vectors["bundle"]), Path(sdk_vectors["vectors"]), tmp_path / "nonface")
    assert len({c["kind"] for c in cases}) == 15  # the 14 kinds and "ok"
    assert any("nonface_margin:max" in (im["failed"] or []) for im in nonface["images"])
    from edgeface.core import paths

    env = dict(os.environ, EDGEFACE_BUNDLE_CASES=str(tmp_path / "cases" / "cases.json"), EDGEFACE_NONFACE_CASE=str(tmp_path / "nonface" / "nonface.json"),
               EDGEFACE_YUNET=str(paths.yunet_model()))
    counts = run_node_tests(["test/rules.test.mjs"], env)
    want = 5 if Path("/usr/bin/chromium").is_file() else 3
    assert counts["pass"] == want and counts["cancelled"] == 0, counts


def test_litert_runs_a_tflite_bundle_in_chromium(js_package, tflite_bundle):
    """A tflite bundle through LiteRT.js in headless Chromium passes its own conformance set."""
    if not Path("/usr/bin/chromium").is_file():
        pytest.skip("no /usr/bin/chromium (.ci/run installs Debian's chromium)")
    counts = run_node_tests(["test/litert.test.mjs"], dict(os.environ, EDGEFACE_TFLITE_BUNDLE=str(tflite_bundle)))
    assert counts["pass"] == 1 and counts["skipped"] == 0, counts
