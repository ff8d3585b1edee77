"""The C++ SDK core cross-built for aarch64 (scripts/sdk_aarch64.sh: g++-aarch64-linux-gnu against the aarch64
ONNX Runtime library of the onnxruntime wheel) reproduces the shared SDK vectors under qemu-aarch64: the same
vector suite, the same assertions as tests/test_sdk_cpp.py's x86 run, on ARM kernels.

Opt-in with the emulated board's other checks (EDGEFACE_DEVICE_ARM64=1, `make test-arm64`): the cross build
takes minutes on 2 cores and the suite runs emulated."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def aarch64_core() -> Path:
    if os.environ.get("EDGEFACE_DEVICE_ARM64") != "1":
        pytest.skip("the aarch64 C++ SDK runs with EDGEFACE_DEVICE_ARM64=1 (make test-arm64)")
    from arm64_board import ensure_binfmt

    if os.environ.get("EDGEFACE_SDK_AARCH64_BUILD"):
        return Path(os.environ["EDGEFACE_SDK_AARCH64_BUILD"])
    p = subprocess.run(["bash", str(REPO / "scripts" / "sdk_aarch64.sh")], capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        pytest.fail(f"scripts/sdk_aarch64.sh failed:\n{p.stderr[-4000:]}")
    assert ensure_binfmt(), "qemu-aarch64 is not registered in binfmt_misc: the aarch64 binaries cannot run here"
    return Path(p.stdout.strip().splitlines()[-1])


def test_aarch64_cpp_core_reproduces_the_vectors_under_qemu(aarch64_core, tmp_path):
    from edgeface.core import paths
    from test_sdk_cpp import prepare_gallery_cases
    import sdk_vectors

    if not (paths.lfw_dev() / "pairs.txt").is_file():
        pytest.skip("../shared not found (set EDGEFACE_SHARED): the SDK vectors are made from its reference model")
    binary = aarch64_core / "edgeface_vectors_test"
    arch = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True).stdout
    assert "ARM aarch64" in arch, f"{binary} is not an aarch64 binary: {arch}"
    env = dict(os.environ)
    env.update(dict(line.split("=", 1) for line in (aarch64_core / "run.env").read_text().split()))
    env.setdefault("QEMU_CPU", os.environ.get("EDGEFACE_QEMU_CPU", "cortex-a76"))
    # Under qemu-user the ARM build of ONNX Runtime reads this x86 host's /sys/devices/system/cpu (cache topology)
    # with ARM /proc/cpuinfo rules and crashes at start (SIGSEGV in cpuinfo). The emulated board's root has no /sys
    # mounted; here the binary gets an empty one in its own mount namespace, so cpuinfo reports it cannot parse it
    # and ONNX Runtime goes on, as it does on the board.
    wrapper = tmp_path / "run-without-host-sys.sh"
    wrapper.write_text(f"#!/bin/sh\nexec unshare -m sh -c 'mount -t tmpfs tmpfs /sys/devices/system/cpu && exec \"$@\"' sh {binary} \"$@\"\n")
    wrapper.chmod(0o755)
    vec = sdk_vectors.build()
    # test_sdk_cpp.run_vectors, with an emulation-sized timeout (the suite takes ~10+ min under qemu on 2 busy cores)
    prepare_gallery_cases(Path(vec["vectors"]), tmp_path / "scratch")
    p = subprocess.run([str(wrapper), vec["bundle"], vec["vectors"], str(tmp_path / "scratch")], capture_output=True, text=True, timeout=5400, env=env)
    assert p.returncode == 0, f"the aarch64 C++ core differs from the vectors:\n{p.stderr[-6000:]}"
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    print(f"aarch64 vectors: {json.dumps({k: v for k, v in summary.items() if k != 'mismatches'})}")
    assert summary["mismatches"] == [] and summary["checks"] > 3000
    assert summary["crop_max_abs_diff"] <= 1 and summary["embedding_cosine_min"] >= 0.999
    assert summary["conformance_cosine_min"] >= 0.999
