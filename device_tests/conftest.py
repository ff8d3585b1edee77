"""Fixtures for device tests: the runtime wheel, an offline wheelhouse, a throwaway sshd on
127.0.0.1, and for each profile the bundle it runs plus real aligned faces and the source
model's embeddings of them (the parity reference)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from edgeface.core import paths
from edgeface.core.profiles import load_profile  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent.parent
PARITY_FACES = 32


@pytest.fixture(scope="session")
def runtime_wheel(tmp_path_factory) -> Path:
    from edgeface.bench.runners import build_wheel

    return build_wheel(CHECKOUT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def loopback_sshd(tmp_path_factory):
    from sshd import find_sshd, start_sshd

    if not find_sshd():
        pytest.skip("OpenSSH server not installed: apt-get install -y openssh-server")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@dataclass
class DeviceInputs:
    bundle: Path
    faces: Path
    reference: Path
    kind: str  # "exported" (real model via edgeface export) or "tiny" (a test model)


def _export_available() -> bool:
    from edgeface.cli import COMMAND_MODULES

    return "export" in COMMAND_MODULES


def _real_faces(card, n: int) -> np.ndarray:
    from edgeface.eval.datasets import load_pairs
    from edgeface.core.detect import YuNetDetector
    from edgeface.eval.faces import aligned_crops, detect_all
    from edgeface.core.landmarks import LandmarkStore

    pairs = load_pairs(paths.lfw_dev())
    images = sorted({p for pr in pairs[: 2 * n] for p in (pr.a, pr.b)})[: 2 * n]
    detector = YuNetDetector(paths.yunet_model())
    faces = detect_all(images, LandmarkStore(detector, LandmarkStore.default_cache_file(detector)), show_progress=False)
    crops, ok = aligned_crops(images, faces, card, show_progress=False)
    return np.ascontiguousarray(crops[ok][:n])


def device_bundle_dir(profile_name: str) -> Path:
    """Where the real bundle a profile runs is kept between runs (CI included)."""
    root = os.environ.get("EDGEFACE_DEVICE_BUNDLES") or Path.home() / ".cache" / "edgeface" / "device-bundles"
    return Path(root) / profile_name


def export_for_profile(profile_name: str, out: Path) -> None:
    """`edgeface export` of the reference model for a profile (minutes on 2 cores: opt-in)."""
    from edgeface.bench.plan import export_in_subprocess as export_bundle

    try:
        export_bundle(str(paths.reference_mobilefacenet()), out, profile=str(load_profile(profile_name).path), quiet=True,
                      extra=os.environ.get("EDGEFACE_DEVICE_EXPORT_ARGS", "--lfw-folds 0 --n-verify 40 --n-impostor 200 --n-calib 100 --quiet"))
    except RuntimeError as exc:
        pytest.fail(f"export for profile {profile_name} failed: {exc}")


@pytest.fixture(scope="session")
def device_inputs(tmp_path_factory):
    """bundle + faces + reference for a profile, made once per profile per session.

    The bundle is the real reference MobileFaceNet exported for the profile when one is cached
    in device_bundle_dir() (EDGEFACE_DEVICE_EXPORT=1 exports it there first); otherwise, for an
    ONNX profile, a tiny linear test model — deployment, parity and latency are then exercised
    for real on a model that is not the reference one (reported as bundle_kind "tiny")."""
    made: dict[str, DeviceInputs] = {}

    def make(profile_name: str) -> DeviceInputs:
        if profile_name in made:
            return made[profile_name]
        profile = load_profile(profile_name)
        d = tmp_path_factory.mktemp(f"inputs-{profile_name}")
        shared_ok = (paths.lfw_dev() / "pairs.txt").is_file() and paths.reference_mobilefacenet().is_file()
        cached = device_bundle_dir(profile_name)
        if shared_ok and not (cached / "edgeface.json").is_file() and os.environ.get("EDGEFACE_DEVICE_EXPORT") == "1" and _export_available():
            export_for_profile(profile_name, cached)
        if shared_ok and (cached / "edgeface.json").is_file():
            from edgeface.bench.adapters import open_model
            from edgeface.zoo import load_embedder

            bundle = cached
            meta_card = open_model(bundle, threads=1).card
            source = load_embedder(str(paths.reference_mobilefacenet()), device="cpu")
            assert meta_card.name == source.card.name, f"{bundle} was not exported from the reference model"
            faces = _real_faces(source.card, PARITY_FACES)
            reference = source.embed(faces)
            kind = "exported"
        elif profile.recipe.format == "onnx":
            from tiny_models import reference_embed, write_tiny_onnx

            bundle = write_tiny_onnx(d / "tiny" / "tiny_linear.onnx")
            faces = np.random.default_rng(0).integers(0, 256, (PARITY_FACES, 112, 96, 3), dtype=np.uint8)
            reference = reference_embed(faces)
            kind = "tiny"
        else:
            why = "../shared (reference model, LFW-dev)" if not shared_ok else f"its bundle in {cached} (EDGEFACE_DEVICE_EXPORT=1 exports it, minutes)"
            pytest.skip(f"profile {profile_name}: needs {why} for its {profile.recipe.format} {profile.recipe.precision} target")
        np.save(d / "faces.npy", faces, allow_pickle=False)
        np.save(d / "reference.npy", reference.astype(np.float32), allow_pickle=False)
        made[profile_name] = DeviceInputs(bundle, d / "faces.npy", d / "reference.npy", kind)
        return made[profile_name]

    return make


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory) -> Path:
    """Where device results are kept: EDGEFACE_DEVICE_RESULTS, else a temp folder."""
    env = os.environ.get("EDGEFACE_DEVICE_RESULTS")
    d = Path(env) if env else tmp_path_factory.mktemp("device-results")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def arm64_board(tmp_path_factory):
    """The emulated ARM64 board (arm64_board.py): the cached arm64 root (debootstrap the first time,
    minutes) behind an sshd on 127.0.0.1; skipped with the reason on a host that cannot run it."""
    from arm64_board import host_problem, start_board
    from sshd import find_sshd

    problem = host_problem() or (None if find_sshd() else "OpenSSH server not installed: apt-get install -y openssh-server")
    if problem:
        pytest.skip(f"emulated ARM64 board: {problem}")
    board = start_board(tmp_path_factory.mktemp("arm64-sshd"))
    yield board
    board.stop()


@pytest.fixture(scope="session")
def arm64_board_lazy(request):
    """The emulated ARM64 board, brought up only when a test needs it."""
    return lambda: request.getfixturevalue("arm64_board")


@pytest.fixture(scope="session")
def loopback_sshd_lazy(request):
    """The loopback sshd, started only when a test actually needs it."""
    return lambda: request.getfixturevalue("loopback_sshd")
