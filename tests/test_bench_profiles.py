"""Device profiles and export recipes: every shipped file loads, mistakes are named clearly."""
from pathlib import Path

import pytest

from edgeface.core import config
from edgeface.core import profiles
from edgeface.core import targets
from edgeface.core.profiles import ProfileError, check_budgets, export_args, list_profiles, load_profile, load_recipe

SHIPPED = list_profiles()
GOOD = """
name = "test-board"
recipe = "onnx-fp32"
backend = "onnxruntime"
precision = "fp32"
threads = 2
batch = 8
[budgets]
latency_ms = 5.0
memory_mb = 100
size_mb = 4.0
accuracy_floor = 0.97
[device]
kind = "ssh"
host = "board.local"
user = "pi"
port = 2222
packages = ["numpy", "onnxruntime"]
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_required_device_profiles_ship():
    kinds = {(load_profile(n).backend, load_profile(n).precision, load_profile(n).device.kind) for n in SHIPPED}
    assert ("onnxruntime", "fp32", "local") in kinds
    assert {("openvino", "fp32", "local"), ("openvino", "int8", "local")} <= kinds
    assert any(b == "litert" and k == "adb" for b, _, k in kinds)  # Android phone
    assert any(b == "litert" and k == "ssh" for b, _, k in kinds)  # Raspberry Pi 5
    assert ("tensorrt", "fp16", "ssh") in kinds  # Jetson Orin


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_consistent_with_its_recipe(name):
    p = load_profile(name)
    target, precision, options = export_args(p)
    assert (target, precision) == (p.recipe.format, p.recipe.precision) == (p.target, p.precision)
    assert options == p.recipe.options and options is not p.recipe.options  # a copy: callers may edit it
    assert p.path.stem == p.name  # file name and profile name agree, so `--profile NAME` finds it
    assert p.budgets.size_mb and 0 < p.budgets.accuracy_floor < 1
    if p.device.emulated:  # an emulated board's clock and memory are the host's: no budget may pretend otherwise
        assert p.budgets.latency_ms is None and p.budgets.memory_mb is None
    else:
        assert p.budgets.latency_ms and p.budgets.memory_mb
    assert export_args(name) == export_args(p)


def test_every_shipped_profile_installs_what_loading_a_bundle_needs():
    """A bundle's self-test at load reads its conformance crops (PNG) with Pillow: a device venv without it cannot
    open any exported bundle (found on the emulated ARM64 board, 2026-12)."""
    for n in SHIPPED:
        names = {pkg.split("=")[0].split("<")[0].split(">")[0].strip().lower() for pkg in load_profile(n).device.packages}
        assert {"numpy", "pillow"} <= names, (n, names)


def test_emulated_arm64_profiles_ship_and_a_bad_emulator_is_refused(tmp_path):
    emulated = {n: load_profile(n) for n in SHIPPED if load_profile(n).device.emulated}
    assert {"raspberry-pi5-qemu", "arm64-qemu-onnxruntime"} <= set(emulated)
    assert all(p.device.emulated == "qemu-aarch64" and p.device.kind == "ssh" for p in emulated.values())
    bad = GOOD.replace('kind = "ssh"', 'kind = "ssh"\nemulated = "qemu-riscv"')
    assert bad != GOOD
    with pytest.raises(ProfileError, match="emulated must be one of"):
        load_profile(write(tmp_path, bad))
    # `edgeface bench` times on this machine: it refuses to put an emulated board's name on its figures
    from edgeface.bench.plan import BenchJob, build_items

    with pytest.raises(ValueError, match="raspberry-pi5-qemu: an emulated device"):
        build_items(BenchJob(models=["default"], profiles=["raspberry-pi5-qemu"], out=str(tmp_path)))


def test_every_recipe_file_loads():
    files = sorted((config.PACKAGED / "export").glob("*.toml"))
    assert len(files) >= 5
    for f in files:
        r = load_recipe(f.stem)
        assert r.format in targets.FORMATS and r.precision in profiles.PRECISIONS


def test_profile_from_path(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    assert p.name == "test-board" and p.device.port == 2222 and p.device.packages == ("numpy", "onnxruntime")
    assert export_args(p)[:2] == ("onnx", "fp32")


@pytest.mark.parametrize(
    "change, message",
    [
        (('threads = 2', 'threads = 2\ncolour = "red"'), "unknown key(s) ['colour']"),
        (('threads = 2', 'threads = "two"'), "threads must be int"),
        (('precision = "fp32"', 'precision = "int8"'), "differs from its recipe"),
        (('host = "board.local"', ''), "kind 'ssh' needs host"),
        (('kind = "ssh"', 'kind = "bluetooth"'), "kind must be one of"),
        (("accuracy_floor = 0.97", "accuracy_floor = 97"), "accuracy_floor is a fraction"),
        (("latency_ms = 5.0", "latency_ms = -1.0"), "latency_ms must be > 0"),
        (('recipe = "onnx-fp32"', 'recipe = "onnx-fp64"'), "no export recipe named 'onnx-fp64'"),
        (("port = 2222", "port = 70000"), "port must be 1-65535"),
        (('backend = "onnxruntime"', ''), "missing required key 'backend'"),
        (("batch = 8", "batch = 0"), "batch must be >= 1"),
        (('backend = "onnxruntime"', 'backend = "openvino"'), "backend 'openvino' does not run onnx-fp32"),
        (("[budgets]", "[budgets\n"), "not valid TOML"),
    ],
)
def test_bad_profile_is_refused_with_file_and_key(tmp_path, change, message):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises((ProfileError, FileNotFoundError)) as err:
        load_profile(path)
    assert message in str(err.value)
    if "no export recipe" not in message:
        assert str(path) in str(err.value)


def test_unknown_profile_name_lists_known_ones():
    with pytest.raises(FileNotFoundError) as err:
        load_profile("no-such-device")
    assert "x86-server-onnxruntime" in str(err.value)


def test_bad_recipe_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFACE_RECIPES", str(tmp_path))
    write(tmp_path, 'format = "onnx"\nprecision = "fp8"\n', "weird.toml")
    with pytest.raises(ProfileError, match="fp8"):
        load_recipe("weird")
    write(tmp_path, 'precision = "fp32"\n', "short.toml")
    with pytest.raises(ProfileError, match="format"):
        load_recipe("short")
    write(tmp_path, 'format = "onnx"\nprecision = "fp32"\nopset = 99\n', "unknown.toml")
    with pytest.raises(ProfileError, match="opset"):
        load_recipe("unknown")
    write(tmp_path, 'format = "tflite"\nprecision = "int8"\nn_calib = 50\n', "ok.toml")
    assert load_recipe("ok").options == {"n_calib": 50}


def test_check_budgets_pass_fail_and_unchecked(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    ok = check_budgets(p, {"latency_ms": 4.9, "memory_mb": 99, "size_mb": 4.0, "accuracy": 0.98})
    assert all(c["pass"] is True for c in ok.values()) and set(ok) == {"latency_ms", "memory_mb", "size_mb", "accuracy"}
    bad = check_budgets(p, {"latency_ms": 5.1, "memory_mb": 99, "size_mb": 4.0, "accuracy": 0.969})
    assert bad["latency_ms"]["pass"] is False and bad["accuracy"]["pass"] is False and bad["memory_mb"]["pass"] is True
    assert check_budgets(p, {"latency_ms": 1.0})["accuracy"]["pass"] is None
