"""Deploy a bundle and the torch-free runtime to each profile's device, run parity and latency
there, and bring the results back.

Routes per profile:
* `device`: the device the profile names (local: this machine with its own runtime; ssh/adb: the
  board/phone, skipped with the reason when it cannot be reached; TensorRT: only where an NVIDIA
  GPU and TensorRT exist).
* `ssh-loopback`: the same deployment through the ssh runner to an sshd the test starts on
  127.0.0.1 — a clean venv in a temp "device" folder holding only numpy + the profile's runtime +
  the edgeface wheel (torch must not be importable there), exactly as on an embedded Linux board.
  Run for the profiles whose runtime installs from PyPI quickly (ONNX Runtime, LiteRT).
* an emulated device (`emulated = "qemu-aarch64"`): route `device` is the emulated ARM64 board the
  tests bring up themselves (arm64_board.py) — the same ssh deployment into a clean arm64 venv, with
  aarch64 wheels — and only parity is measured: time under emulation is not the board's.

Parity tolerances are the export's (issue 5): fp32/fp16 min cosine >= 0.999 (fp16 0.995 here,
as the device may compute in half precision), int8 mean >= 0.99 and min >= 0.97. Latency budgets
are asserted only on the real device (EDGEFACE_ENFORCE_LATENCY=1): a loopback "device" is this
busy CI machine, not the board the budget is for.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from edgeface.bench.runners import LocalRunner, SshRunner, deploy_runtime, fill_wheelhouse, run_on_device, runner_for
from edgeface.core.profiles import check_budgets, list_profiles, load_profile

from device_helpers import pinned, wheelhouse_dir
from arm64_board import PYTHON_TAG, WHEEL_PLATFORMS

LOOPBACK_BACKENDS = {"onnxruntime", "litert"}
# What `make test` runs on this machine by default (CI's ~6 min budget on 2 cores): the x86
# profile locally and through the loopback ssh board. EDGEFACE_DEVICE_FULL=1 adds the other
# profiles' local / loopback runs (OpenVINO fp32/int8 here, the Pi's LiteRT in a clean venv).
DEFAULT_PROFILES = {"x86-server-onnxruntime"}
PROFILES = list_profiles()
CASES = [(p, "device") for p in PROFILES] + [(p, "ssh-loopback") for p in PROFILES
                                            if load_profile(p).backend in LOOPBACK_BACKENDS and load_profile(p).device.kind != "adb" and not load_profile(p).device.emulated]
# The emulated ARM64 board's profiles run with EDGEFACE_DEVICE_ARM64=1 (`make test-arm64`): its first run
# builds the arm64 root (debootstrap) and installs aarch64 wheels under emulation (see docs/results/arm64.md).
ARM64_OPT_IN = "EDGEFACE_DEVICE_ARM64"


def parity_ok(precision: str, parity: dict) -> tuple[bool, str]:
    if precision == "int8":
        return parity["cos_mean"] >= 0.99 and parity["cos_min"] >= 0.97, "int8: mean >= 0.99 and min >= 0.97"
    floor = 0.999 if precision == "fp32" else 0.995
    return parity["cos_min"] >= floor, f"{precision}: min >= {floor}"


def nvidia_tensorrt() -> str | None:
    """None when TensorRT can run here, else the reason it cannot."""
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        return "no NVIDIA GPU on this machine (nvidia-smi absent or failing)"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT's Python package is not installed"
    return None


def check_emulated_results(profile, inputs, results: list[dict]) -> None:
    """An emulated board: it ran on aarch64, parity within the profile's tolerance, and no time was recorded."""
    for r in results:
        assert r["machine"]["arch"] == "aarch64", f"{profile.name}: the probe ran on {r['machine']['arch']}, not the emulated ARM64 board"
        assert "torch" not in r["machine"]["libraries"], f"the board environment has torch: {r['machine']['libraries']}"
        assert r["timed"] is False and "latency_ms" not in r and "throughput" not in r, f"{profile.name}: an emulated device must not report time"
        ok, rule = parity_ok(profile.precision, r["parity"])
        assert ok, f"{profile.name} on the emulated ARM64 board: parity {r['parity']} fails {rule}"
        assert r["parity"]["n"] == len(__import__("numpy").load(inputs.faces))
    if inputs.kind == "exported":
        size = results[0]["file_size_bytes"] / 2**20
        assert profile.budgets.size_mb is None or size <= profile.budgets.size_mb, f"{profile.name}: model file {size:.2f} MB over the {profile.budgets.size_mb} MB budget"


def check_results(profile, inputs, results: list[dict], route: str) -> None:
    assert [r["threads"] for r in results][0] == 1 and len(results) == 2
    for r in results:
        ok, rule = parity_ok(profile.precision, r["parity"])
        assert ok, f"{profile.name} via {route}: parity {r['parity']} fails {rule}"
        assert r["parity"]["n"] == len(__import__("numpy").load(inputs.faces))
        lat = r["latency_ms"]
        assert lat["n"] >= 10 and 0 < lat["min"] <= lat["p50"] <= lat["p99"], lat
        assert r["throughput"]["images_per_s"] > 0 and r["peak_rss_mb"] > 0
    budgets = check_budgets(profile, {"latency_ms": results[-1]["latency_ms"]["p50"], "memory_mb": max(r["peak_rss_mb"] for r in results), "size_mb": results[0]["file_size_bytes"] / 2**20})
    if inputs.kind == "exported":
        assert budgets["size_mb"]["pass"], f"{profile.name}: model file {budgets['size_mb']['value']:.2f} MB over the {profile.budgets.size_mb} MB budget"
    if os.environ.get("EDGEFACE_ENFORCE_LATENCY") == "1" and route == "device":
        assert budgets["latency_ms"]["pass"], budgets["latency_ms"]


def save(results_dir, name: str, payload: dict) -> None:
    (results_dir / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True))


@pytest.mark.parametrize("profile_name, route", CASES, ids=[f"{p}-{r}" for p, r in CASES])
def test_deploy_and_measure_on_device(profile_name, route, device_inputs, runtime_wheel, loopback_sshd_lazy, arm64_board_lazy, results_dir, tmp_path):
    profile = load_profile(profile_name)
    if profile.device.emulated:
        if os.environ.get(ARM64_OPT_IN) != "1":
            pytest.skip(f"{profile_name}: the emulated ARM64 board runs with {ARM64_OPT_IN}=1 (make test-arm64)")
        return run_on_emulated_board(profile, device_inputs(profile_name), runtime_wheel, arm64_board_lazy(), results_dir, tmp_path)
    if profile.device.requires_gpu == "nvidia" or profile.backend == "tensorrt":
        reason = nvidia_tensorrt()
        if reason:
            pytest.skip(f"{profile_name}: {reason}; the TensorRT profile runs only where both exist")
    here = route == "ssh-loopback" or profile.device.kind == "local"
    if here and profile_name not in DEFAULT_PROFILES and os.environ.get("EDGEFACE_DEVICE_FULL") != "1":
        pytest.skip(f"{profile_name} via {route}: runs on this machine only with EDGEFACE_DEVICE_FULL=1 (keeps `make test` within CI's time)")
    if route == "device" and profile.device.kind != "local":
        runner = runner_for(profile.device)
        ok, why = runner.reachable(timeout=15)
        if not ok:
            pytest.skip(f"{profile_name}: device {profile.device.kind} {profile.device.host or profile.device.serial or '(default)'} not reachable: {why}")
    inputs = device_inputs(profile_name)
    threads = (1, profile.threads)
    if route == "device" and profile.device.kind == "local":
        # The local device is this machine with its runtime already installed: run the probe
        # with this interpreter in a separate work folder.
        from edgeface.bench.runners import Deployment

        deployment = Deployment(LocalRunner(workdir=str(tmp_path / "device")), sys.executable)
        deployment.runner.run(["mkdir", "-p", deployment.runner.workdir])
        env_note = "host venv"
    else:
        if route == "ssh-loopback":
            sshd = loopback_sshd_lazy()
            runner = SshRunner(host="127.0.0.1", user=sshd.user, port=sshd.port, key=str(sshd.key), workdir=str(tmp_path / "device"))
            packages = pinned(profile.device.packages)
            wheelhouse = fill_wheelhouse(packages, wheelhouse_dir() / profile.backend)
            device_python = sys._base_executable  # the loopback "board" has this Python
        else:
            packages, wheelhouse, device_python = list(profile.device.packages), None, profile.device.python
        deployment = deploy_runtime(runner, runtime_wheel, packages, device_python=device_python, wheelhouse=wheelhouse, system_site_packages=profile.device.system_site_packages)
        env_note = f"clean venv: {' '.join(packages)} + edgeface wheel"
    results = run_on_device(deployment, inputs.bundle, tmp_path / "back", faces=inputs.faces, reference=inputs.reference, threads=threads, throughput_batch=min(profile.batch, 8), min_time=0.5)
    if route != "device" or profile.device.kind != "local":
        libs = results[0]["machine"]["libraries"]
        assert "torch" not in libs, f"the device environment has torch: {libs}"
    save(results_dir, f"{profile_name}-{route}", {"profile": profile_name, "route": route, "bundle_kind": inputs.kind, "environment": env_note, "results": results})
    check_results(profile, inputs, results, route)


def run_on_emulated_board(profile, inputs, runtime_wheel, board, results_dir, tmp_path) -> None:
    """The ssh deployment, unchanged, to the emulated ARM64 board: aarch64 wheels for its Python, a clean venv
    there, the probe with no timing; the results say where they ran."""
    packages = pinned(profile.device.packages)
    wheelhouse = fill_wheelhouse(packages, wheelhouse_dir() / f"{profile.backend}-aarch64-cp{PYTHON_TAG.replace('.', '')}",
                                 platforms=WHEEL_PLATFORMS, python_version=PYTHON_TAG)
    runner = board.runner(profile.name)
    deployment = deploy_runtime(runner, runtime_wheel, packages, device_python=profile.device.python, wheelhouse=wheelhouse, timeout=1800)
    results = run_on_device(deployment, inputs.bundle, tmp_path / "back", faces=inputs.faces, reference=inputs.reference, threads=(1,), timed=False, timeout=1800)
    save(results_dir, f"{profile.name}-device", {"profile": profile.name, "route": f"emulated {profile.device.emulated} ({board.cpu})", "bundle_kind": inputs.kind,
                                                 "environment": f"clean arm64 venv: {' '.join(packages)} + edgeface wheel", "results": results})
    check_emulated_results(profile, inputs, results)
