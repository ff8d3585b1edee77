"""Reach a device, deploy the torch-free runtime and a bundle there, run the probe, bring results back.

Runners share one small interface — `command(argv)` (the host command that runs argv on the
device, unit-testable without a device), `run(argv)`, `put(local, remote)`, `get(remote, local)`,
`reachable()` — for three kinds of device:

* local: this machine, in a work folder (a "device" venv beside the host one);
* ssh:   an embedded Linux board (Raspberry Pi, Jetson) with `ssh`/`scp` and key authentication;
* adb:   an Android phone over `adb shell/push/pull`.

Deployment is what a board user does: a fresh venv on the device holding only numpy, one
inference runtime and the edgeface wheel (`--no-deps`), then torch must NOT be importable there.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.profiles import Device


class DeviceError(RuntimeError):
    """A device command failed; the message holds the command, exit status and output tail."""


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:] if text else ""


class Runner:
    kind = "base"
    workdir: str = ""

    def command(self, argv: list[str]) -> list[str]:
        raise NotImplementedError

    def put_command(self, local: str, remote: str) -> list[str]:
        raise NotImplementedError

    def get_command(self, remote: str, local: str) -> list[str]:
        raise NotImplementedError

    def path(self, *parts: str) -> str:
        """A path on the device under the work folder."""
        return str(PurePosixPath(self.workdir, *parts))

    def _exec(self, cmd: list[str], timeout: float, check: bool) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise DeviceError(f"{self.kind}: cannot run {cmd[0]!r} on this host ({exc})") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.kind}: timed out after {timeout:.0f} s: {shlex.join(cmd)}") from None
        if check and proc.returncode != 0:
            raise DeviceError(f"{self.kind}: exit {proc.returncode}: {shlex.join(cmd)}\n--- stdout\n{_tail(proc.stdout)}\n--- stderr\n{_tail(proc.stderr)}")
        return proc

    def run(self, argv: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return self._exec(self.command(argv), timeout, check)

    def put(self, local: str | os.PathLike, remote: str, timeout: float = 300) -> None:
        self._exec(self.put_command(str(local), remote), timeout, True)

    def get(self, remote: str, local: str | os.PathLike, timeout: float = 300) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._exec(self.get_command(remote, str(local)), timeout, True)

    def reachable(self, timeout: float = 15) -> tuple[bool, str]:
        try:
            proc = self.run(["true"], timeout=timeout, check=False)
        except DeviceError as exc:
            return False, str(exc)
        return proc.returncode == 0, _tail(proc.stderr.strip(), 300) or f"exit {proc.returncode}"


@dataclass
class LocalRunner(Runner):
    workdir: str = ""
    kind = "local"

    def command(self, argv: list[str]) -> list[str]:
        return list(argv)

    def put_command(self, local: str, remote: str) -> list[str]:
        return ["cp", "-r", local, remote]

    def get_command(self, remote: str, local: str) -> list[str]:
        return ["cp", "-r", remote, local]


@dataclass
class SshRunner(Runner):
    host: str = "localhost"
    user: str = ""
    port: int = 22
    key: str = ""
    workdir: str = "edgeface-bench"
    extra_options: list[str] = field(default_factory=list)
    kind = "ssh"

    def _options(self) -> list[str]:
        # A board met for the first time, and a throwaway test sshd, have no known_hosts entry;
        # BatchMode makes a missing key fail at once instead of prompting.
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
        if self.key:
            opts += ["-i", os.path.expanduser(self.key), "-o", "IdentitiesOnly=yes"]
        return opts + list(self.extra_options)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def command(self, argv: list[str]) -> list[str]:
        # ssh sends one string to the remote shell: quote every argument.
        return ["ssh", *self._options(), "-p", str(self.port), self.destination, shlex.join(argv)]

    def put_command(self, local: str, remote: str) -> list[str]:
        return ["scp", "-q", "-r", *self._options(), "-P", str(self.port), local, f"{self.destination}:{remote}"]

    def get_command(self, remote: str, local: str) -> list[str]:
        return ["scp", "-q", "-r", *self._options(), "-P", str(self.port), f"{self.destination}:{remote}", local]


@dataclass
class AdbRunner(Runner):
    serial: str = ""
    workdir: str = "/data/local/tmp/edgeface"
    kind = "adb"

    def _adb(self) -> list[str]:
        serial = self.serial or os.environ.get("ANDROID_SERIAL", "")
        return ["adb", "-s", serial] if serial else ["adb"]

    def command(self, argv: list[str]) -> list[str]:
        # `adb shell` joins its arguments into one string for the device's sh: quote them.
        return [*self._adb(), "shell", shlex.join(argv)]

    def put_command(self, local: str, remote: str) -> list[str]:
        return [*self._adb(), "push", local, remote]

    def get_command(self, remote: str, local: str) -> list[str]:
        return [*self._adb(), "pull", remote, local]

    def reachable(self, timeout: float = 15) -> tuple[bool, str]:
        if not shutil.which("adb"):
            return False, "adb is not installed on this host"
        try:
            proc = self._exec([*self._adb(), "get-state"], timeout, False)
        except DeviceError as exc:
            return False, str(exc)
        state = proc.stdout.strip()
        return state == "device", state or _tail(proc.stderr.strip(), 300)


def runner_for(device: Device, workdir: str | None = None) -> Runner:
    """The Runner for a device (local, ssh or adb), working in `workdir` or the device's default; raises ValueError for another kind."""
    if device.kind == "local":
        return LocalRunner(workdir=workdir or device.workdir or str(Path.cwd() / "device-work"))
    if device.kind == "ssh":
        return SshRunner(host=device.host, user=device.user, port=device.port, key=device.key, workdir=workdir or device.workdir or "edgeface-bench")
    if device.kind == "adb":
        return AdbRunner(serial=device.serial, workdir=workdir or device.workdir or "/data/local/tmp/edgeface")
    raise ValueError(f"unknown device kind {device.kind!r}; expected local, ssh or adb")


# ---------------------------------------------------------------- deployment

def build_wheel(checkout: str | os.PathLike, out_dir: str | os.PathLike, python: str = sys.executable) -> Path:
    """A wheel of this checkout (no dependencies inside: the device chooses its runtime)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out_dir), str(checkout)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise DeviceError(f"building the edgeface wheel failed: {shlex.join(cmd)}\n{_tail(proc.stderr)}")
    wheels = sorted(out_dir.glob("edgeface-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise DeviceError(f"pip wheel produced no edgeface wheel in {out_dir}")
    return wheels[-1]


def fill_wheelhouse(packages: list[str], wheelhouse: str | os.PathLike, python: str = sys.executable, platforms: tuple[str, ...] = (),
                    python_version: str = "") -> Path:
    """Download the device's runtime wheels once (for this host's platform, or for `platforms` + `python_version`
    when the device is another one, e.g. an aarch64 board's manylinux tags and "3.11") so deployments are offline
    and fast; a marker per package set makes later calls free."""
    import hashlib

    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    key = " ".join(sorted(packages)) + (f" {python_version} {' '.join(platforms)}" if platforms else "")
    marker = wheelhouse / f".complete-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if marker.is_file():
        return wheelhouse
    target = [a for p in platforms for a in ("--platform", p)] + (["--python-version", python_version, "--implementation", "cp"] if platforms else [])
    cmd = [python, "-m", "pip", "download", "-q", "--only-binary=:all:", *target, "-d", str(wheelhouse), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise DeviceError(f"downloading runtime wheels failed: {shlex.join(cmd)}\n{_tail(proc.stderr)}")
    marker.write_text("\n".join(packages))
    return wheelhouse


@dataclass
class Deployment:
    runner: Runner
    python: str  # the device venv's python

    def probe(self, bundle_remote: str, out_remote: str, threads: int = 0, faces_remote: str | None = None, reference_remote: str | None = None,
              batch: int = 1, throughput_batch: int = 8, min_time: float = 1.0, timeout: float = 300, timed: bool = True) -> None:
        argv = [self.python, "-m", "edgeface.bench.probe", bundle_remote, "--out", out_remote, "--threads", str(threads), "--batch", str(batch),
                "--throughput-batch", str(throughput_batch), "--min-time", str(min_time)] + ([] if timed else ["--no-timing"])
        if faces_remote:
            argv += ["--faces", faces_remote]
        if reference_remote:
            argv += ["--reference", reference_remote]
        self.runner.run(argv, timeout=timeout)


def deploy_runtime(runner: Runner, wheel: str | os.PathLike, packages: list[str], device_python: str = "python3", wheelhouse: str | os.PathLike | None = None,
                   system_site_packages: bool = False, forbid: tuple[str, ...] = ("torch",), timeout: float = 600) -> Deployment:
    """A clean venv on the device with only `packages` + the edgeface wheel; checks `forbid` is absent."""
    wheel = Path(wheel)
    runner.run(["mkdir", "-p", runner.path("dist")], timeout=60)
    runner.put(wheel, runner.path("dist", wheel.name))
    venv = runner.path("venv")
    venv_cmd = [device_python, "-m", "venv", "--clear", venv] + (["--system-site-packages"] if system_site_packages else [])
    runner.run(venv_cmd, timeout=timeout)
    py = runner.path("venv", "bin", "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if packages:
        if wheelhouse:
            remote_house = runner.path("wheelhouse")
            runner.run(["mkdir", "-p", remote_house], timeout=60)
            for f in sorted(Path(wheelhouse).glob("*.whl")):
                runner.put(f, runner.path("wheelhouse", f.name))
            runner.run([*pip, "--no-index", "--find-links", remote_house, *packages], timeout=timeout)
        else:
            runner.run([*pip, *packages], timeout=timeout)
    runner.run([*pip, "--no-deps", runner.path("dist", wheel.name)], timeout=timeout)
    check = "import importlib.util, sys; bad = [m for m in sys.argv[1:] if importlib.util.find_spec(m)]; print(','.join(bad)); sys.exit(1 if bad else 0)"
    proc = runner.run([py, "-c", check, *forbid], timeout=120, check=False)
    if proc.returncode != 0:
        raise DeviceError(f"the device venv can import {proc.stdout.strip()}: the runtime must run without it")
    return Deployment(runner, py)


def run_on_device(deployment: Deployment, bundle: str | os.PathLike, local_out: str | os.PathLike, faces: str | os.PathLike | None = None,
                  reference: str | os.PathLike | None = None, threads: tuple[int, ...] = (1, 0), **probe_kwargs) -> list[dict]:
    """Copy a bundle (and parity faces/reference) to the device, probe it once per thread count,
    fetch the JSON results back and return them."""
    r = deployment.runner
    bundle = Path(bundle)
    r.run(["rm", "-rf", r.path("bundle"), r.path("results")], timeout=60)
    r.run(["mkdir", "-p", r.path("bundle"), r.path("results")], timeout=60)
    remote_bundle = r.path("bundle", bundle.name)
    r.put(bundle, remote_bundle)
    if bundle.is_file():  # a plain model file travels with its card
        card = bundle.with_suffix(".card.json")
        if card.is_file():
            r.put(card, r.path("bundle", card.name))
    remote_faces = remote_ref = None
    if faces:
        remote_faces = r.path("bundle", "faces.npy")
        r.put(faces, remote_faces)
    if reference:
        remote_ref = r.path("bundle", "reference.npy")
        r.put(reference, remote_ref)
    results = []
    for t in threads:
        remote_json = r.path("results", f"probe-t{t}.json")
        deployment.probe(remote_bundle, remote_json, threads=t, faces_remote=remote_faces, reference_remote=remote_ref, **probe_kwargs)
        local_json = Path(local_out) / f"probe-t{t}.json"
        r.get(remote_json, local_json)
        results.append(json.loads(local_json.read_text()))
    return results
