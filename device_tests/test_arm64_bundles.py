"""Every bundle in a folder verified on ARM64 kernels: `edgeface export --check` (hashes, self-test,
conformance set) run ON the emulated ARM64 board (arm64_board.py, qemu-aarch64 with a Cortex-A76 model),
and the board's embeddings compared with this x86 host's for the same faces and the same bundle.

Opt-in (`make test-arm64-bundles`): EDGEFACE_ARM64_BUNDLES=DIR names a folder whose sub-folders are
bundles (the shipped `default` int8 bundles and the reference's, exported by
scripts/arm64_bundles.sh). One clean arm64 venv on the board holds numpy, the edgeface wheel and the
runtimes those bundles need (aarch64 wheels pinned by requirements/lock.txt); torch must not be there.

Per bundle, the test asserts:
* the board's `edgeface export --check BUNDLE` exits 0 (hashes match, the self-test at load and the
  conformance set pass on ARM) and says so;
* ARM vs x86 cosine, per face, on the conformance crops plus up to 32 real aligned LFW-dev faces, within
  the export's tolerance for the bundle's precision (fp32 min >= 0.999, fp16 min >= 0.995, int8 mean >=
  0.99 and min >= 0.97): a bundle that verifies on x86 but computes something else on ARM fails here.
Each bundle's row goes to $EDGEFACE_DEVICE_RESULTS/arm64-bundles/NAME.json (else a temp folder); the
table in docs/results/arm64.md is made from those rows by `python device_tests/test_arm64_bundles.py DIR`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from device_helpers import pinned, wheelhouse_dir
from arm64_board import PYTHON_TAG, WHEEL_PLATFORMS
from test_device import parity_ok

BUNDLES_ENV = "EDGEFACE_ARM64_BUNDLES"
# The pip packages (names as in requirements/lock.txt) each backend needs on the board.
BACKEND_PACKAGES = {"onnxruntime": ["onnxruntime"], "litert": ["ai-edge-litert"], "openvino": ["openvino"], "mnn": ["MNN"], "ncnn": ["ncnn"]}
REAL_FACES = 32


def bundle_dirs() -> list[Path]:
    root = os.environ.get(BUNDLES_ENV)
    if not root:
        return []
    return sorted(p for p in Path(root).iterdir() if (p / "edgeface.json").is_file())


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "edgeface.json").read_text())


BUNDLES = bundle_dirs()


@pytest.fixture(scope="module")
def board_venv(arm64_board_lazy, runtime_wheel):
    """One clean arm64 venv on the board with numpy + the runtimes the bundles need + the edgeface wheel."""
    from edgeface.bench.runners import deploy_runtime, fill_wheelhouse

    backends = sorted({_meta(b)["backend"] for b in BUNDLES})
    unknown = [b for b in backends if b not in BACKEND_PACKAGES]
    packages = pinned(["numpy", "pillow"] + [p for b in backends if b in BACKEND_PACKAGES for p in BACKEND_PACKAGES[b]])
    board = arm64_board_lazy()
    wheelhouse = fill_wheelhouse(packages, wheelhouse_dir() / f"arm64-bundles-aarch64-cp{PYTHON_TAG.replace('.', '')}", platforms=WHEEL_PLATFORMS, python_version=PYTHON_TAG)
    runner = board.runner("bundles")
    deployment = deploy_runtime(runner, runtime_wheel, packages, device_python="python3", wheelhouse=wheelhouse, timeout=3600)
    return board, deployment, packages, unknown


def _faces_for(bundle_obj) -> np.ndarray:
    """The bundle's conformance crops + up to REAL_FACES real aligned LFW-dev faces (when ../shared is here)."""
    from edgeface.runtime.conformance import load_conformance_set

    crops, _ = load_conformance_set(bundle_obj.path)
    faces = [crops]
    try:
        from conftest import _real_faces
        from edgeface.core import paths

        if (paths.lfw_dev() / "pairs.txt").is_file():
            faces.append(_real_faces(bundle_obj.card, REAL_FACES))
    except (FileNotFoundError, ImportError, OSError) as exc:
        print(f"note: only the conformance crops ({exc})")
    return np.ascontiguousarray(np.concatenate(faces)).astype(np.uint8)


def _parse_check(stdout: str) -> dict:
    """The JSON report `edgeface export --check` prints before its one-line verdict."""
    start, end = stdout.find("{"), stdout.rfind("}")
    return json.loads(stdout[start : end + 1])


@pytest.mark.skipif(not BUNDLES, reason=f"set {BUNDLES_ENV}=DIR (a folder of bundles) to verify them on the emulated ARM64 board (make test-arm64-bundles)")
@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_bundle_verified_on_arm64(bundle, board_venv, results_dir, tmp_path):
    from edgeface.bench.runners import DeviceError
    from edgeface.runtime.bundle import load_bundle, read_meta
    from edgeface.runtime.conformance import check_conformance

    board, deployment, packages, unknown = board_venv
    meta = read_meta(bundle)
    if meta["backend"] in unknown or meta["backend"] not in BACKEND_PACKAGES:
        pytest.skip(f"{bundle.name}: backend {meta['backend']} has no aarch64 wheel to emulate (see docs/results/arm64.md)")
    # x86: the same check here, and the embeddings the board's must match.
    pending = meta["status"] == "not-verified"
    host_bundle = load_bundle(bundle, require_verified=not pending)
    host_check = check_conformance(host_bundle)
    faces = _faces_for(host_bundle)
    x86 = np.concatenate([host_bundle.embed(faces[i : i + 1]) for i in range(len(faces))]).astype(np.float32)
    np.save(tmp_path / "faces.npy", faces, allow_pickle=False)
    np.save(tmp_path / "x86.npy", x86, allow_pickle=False)

    r = deployment.runner
    remote = r.path("bundle", bundle.name)
    r.run(["rm", "-rf", r.path("bundle")], timeout=60)
    r.run(["mkdir", "-p", r.path("bundle")], timeout=60)
    r.put(bundle, remote)
    check = r.run([deployment.python, "-m", "edgeface", "export", "--check", remote], timeout=1800, check=False)
    arm_check = _parse_check(check.stdout) if "{" in check.stdout else {"passed": False, "error": check.stderr[-1500:]}
    # ARM embeddings of the same faces vs x86's: the probe with --reference, no timing.
    r.put(tmp_path / "faces.npy", r.path("bundle", "faces.npy"))
    r.put(tmp_path / "x86.npy", r.path("bundle", "x86.npy"))
    out = results_dir / "arm64-bundles"
    out.mkdir(parents=True, exist_ok=True)
    try:
        deployment.probe(remote, r.path("bundle", "probe.json"), threads=1, faces_remote=r.path("bundle", "faces.npy"), reference_remote=r.path("bundle", "x86.npy"),
                         throughput_batch=0, timed=False, timeout=1800)
    except DeviceError as exc:  # the runtime could not run the bundle on the board at all: recorded, then failed
        (out / f"{bundle.name}.json").write_text(json.dumps({"bundle": bundle.name, "format": meta["format"], "precision": meta["precision"], "backend": meta["backend"],
                                                             "arm_check": arm_check, "arm_check_exit": check.returncode, "x86_check": host_check,
                                                             "board_error": str(exc)[-1500:]}, indent=2, sort_keys=True))
        pytest.fail(f"{bundle.name}: the probe failed on the emulated ARM64 board: {exc}")
    r.get(r.path("bundle", "probe.json"), tmp_path / "probe.json")
    probe = json.loads((tmp_path / "probe.json").read_text())
    row = {
        "bundle": bundle.name, "model": meta.get("card", {}).get("name") or host_bundle.card.name, "format": meta["format"], "precision": meta["precision"],
        "backend": meta["backend"], "arch": probe["machine"]["arch"], "qemu_cpu": board.cpu, "board_packages": packages,
        "board_libraries": probe["machine"]["libraries"], "faces": int(len(faces)),
        "arm_vs_x86": probe["parity"], "arm_check": arm_check, "arm_check_exit": check.returncode, "x86_check": host_check,
    }
    ok, rule = parity_ok(meta["precision"], probe["parity"])
    row["arm_vs_x86_within_tolerance"] = bool(ok)
    (out / f"{bundle.name}.json").write_text(json.dumps(row, indent=2, sort_keys=True))
    assert probe["machine"]["arch"] == "aarch64", f"{bundle.name}: ran on {probe['machine']['arch']}, not the emulated board"
    assert "torch" not in probe["machine"]["libraries"]
    assert check.returncode == 0 and arm_check.get("passed") is True, f"{bundle.name}: `edgeface export --check` on ARM64 failed (exit {check.returncode}): {arm_check}\n{check.stderr[-1500:]}"
    assert ok, f"{bundle.name}: ARM vs x86 embeddings {probe['parity']} fail {rule}"


def table(rows: list[dict]) -> str:
    """The markdown table of docs/results/arm64.md from the per-bundle rows."""
    lines = ["| bundle | model | target | ARM runtime | `export --check` on ARM (min cos to expected) | x86 check (min cos) | ARM vs x86 cosine min / mean (faces) | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["bundle"]):
        if "board_error" in r:
            why = next((ln for ln in r["board_error"].splitlines() if "signal" in ln or "Error" in ln), r["board_error"].splitlines()[-1])
            arm = f"{'pass' if r['arm_check'].get('passed') else 'FAIL'} (exit {r['arm_check_exit']})"
            lines.append(f"| {r['bundle']} | | {r['format']}-{r['precision']} | {r['backend']} | {arm} | {'pass' if r['x86_check'].get('passed') else 'FAIL'} | - | NOT verified: {why.strip()[:120]} |")
            continue
        version = next((r["board_libraries"][p] for p in BACKEND_PACKAGES.get(r["backend"], []) if p in r["board_libraries"]), "?")
        ac, xc, p = r["arm_check"], r["x86_check"], r["arm_vs_x86"]
        arm = f"{'pass' if ac.get('passed') else 'FAIL'} ({ac.get('cosine_min', float('nan')):.6f})"
        x86 = f"{'pass' if xc.get('passed') else 'FAIL'} ({xc.get('cosine_min', float('nan')):.6f})"
        verdict = "verified on ARM64" if ac.get("passed") and r["arm_vs_x86_within_tolerance"] else "NOT verified"
        lines.append(f"| {r['bundle']} | {r['model']} | {r['format']}-{r['precision']} | {r['backend']} {version} | {arm} | {x86} | {p['cos_min']:.6f} / {p['cos_mean']:.6f} ({p['n']}) | {verdict} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(table([json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]), end="")
