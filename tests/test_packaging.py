"""The wheel works outside a checkout: its packaged profiles and recipes resolve by name, and
`edgeface bench --profile NAME` runs from the installed package, not from this folder."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeface.core import config
from tiny_models import write_tiny_onnx

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, unpacked as pip would install it (pure Python)."""
    # Built from a copy of the package's sources: setuptools' build/ folder in a checkout can hold
    # files deleted since, which would then be "in the wheel" here and nowhere else.
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(CHECKOUT / "edgeface", src / "edgeface", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (CHECKOUT / name).is_file():
            shutil.copy(CHECKOUT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(dist.glob("edgeface-*.whl"))
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def run_installed(site: Path, cwd: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    for var in ("EDGEFACE_PROFILES", "EDGEFACE_RECIPES", "EDGEFACE_TRAIN_RECIPES"):
        env.pop(var, None)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_every_packaged_configuration(installed):
    for kind, (folder, _, _) in config.KINDS.items():
        shipped = sorted(p.name for p in (config.PACKAGED / folder).glob("*.toml"))
        assert shipped, kind
        assert sorted(p.name for p in (installed / "edgeface" / "configs" / folder).glob("*.toml")) == shipped


def test_profiles_and_recipes_resolve_by_name_outside_a_checkout(installed, tmp_path):
    code = (
        "import json, edgeface\n"
        "from edgeface.core import config\n"
        "from edgeface.commands.export import apply_recipe\n"
        "from edgeface.commands.train import load_recipe\n"
        "from edgeface.cli import build_parser\n"
        "args = build_parser().parse_args(['export', 'default', '--recipe', 'android-tflite-int8', '--out', 'x'])\n"
        "apply_recipe(args)\n"
        "p = config.load('profile', 'x86-server-onnxruntime')\n"
        "print(json.dumps({'package': edgeface.__file__, 'target': args.target, 'precision': args.precision,\n"
        "                  'profile': str(p.path), 'recipe': str(p.recipe.path), 'train': load_recipe('default')['arch'],\n"
        "                  'names': config.names('profile')}))\n"
    )
    r = run_installed(installed, tmp_path, code)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["package"].startswith(str(installed))  # the wheel's copy, not this checkout's
    assert (out["target"], out["precision"]) == ("tflite", "int8")
    assert out["profile"].startswith(str(installed)) and out["recipe"].startswith(str(installed))
    assert out["train"] == "mobilefacenet"
    assert "x86-server-onnxruntime" in out["names"]


def test_a_users_own_profile_folder_comes_first(tmp_path):
    own = tmp_path / "profiles"
    own.mkdir()
    (own / "x86-server-onnxruntime.toml").write_text((config.PACKAGED / "profiles" / "x86-server-onnxruntime.toml").read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert config.find("profile", "x86-server-onnxruntime") == Path("profiles").resolve() / "x86-server-onnxruntime.toml"
        with pytest.raises(FileNotFoundError, match="no device profile named 'nope'; known: .*x86-server-onnxruntime"):
            config.find("profile", "nope")
    finally:
        os.chdir(cwd)


def test_bench_with_a_packaged_profile_runs_from_the_installed_wheel(installed, tmp_path):
    model = write_tiny_onnx(tmp_path / "m" / "tiny.onnx")
    code = (
        "import sys, edgeface\n"
        "from edgeface.cli import main\n"
        f"code = main(['bench', {str(model)!r}, '--profile', 'x86-server-onnxruntime', '--no-accuracy', '--min-time', '0.05', '--min-reps', '5',\n"
        "             '--throughput-batch', '2', '--out', 'out', '--quiet'])\n"
        "print(edgeface.__file__)\n"
        "sys.exit(code)\n"
    )
    r = run_installed(installed, tmp_path, code)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith(str(installed))
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["rows"][0]["profile"] == "x86-server-onnxruntime"
