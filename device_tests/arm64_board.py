"""An emulated ARM64 board for the device tests: a Debian bookworm arm64 root (Python 3.11), made once
with `debootstrap --arch arm64` and cached, that every ssh login enters (sshd's ChrootDirectory) so
each command the ssh runner sends runs as an aarch64 binary under qemu-user (binfmt_misc).

What is emulated is the instruction set and its kernels: ONNX Runtime, LiteRT/XNNPACK, MNN, ncnn and
OpenVINO load their aarch64 builds and run their NEON / dot-product int8 / fp16 code paths on the
emulated CPU (QEMU_CPU, by default cortex-a76: a Raspberry Pi 5's core, which has the dot-product and
fp16 arithmetic extensions). What is not: the board's speed. Time under qemu is an x86 host translating
ARM code, so the profile says `emulated = "qemu-aarch64"` and the device tests record no latency for it.

The transport is this machine's own OpenSSH server on 127.0.0.1 (device_tests/sshd.py); the board side
(shell, python3, pip, the venv, the runtime) is arm64 code in the root.

    python device_tests/arm64_board.py root      # make the cached root (debootstrap; minutes) and print its path
    python device_tests/arm64_board.py host      # check / set up qemu + binfmt_misc on this host

Needs root (debootstrap, mounts, ChrootDirectory), Debian's qemu-user-static, binfmt-support and
debootstrap, and a Debian mirror (read from this host's apt sources; EDGEFACE_DEBIAN_MIRROR overrides).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sshd import LoopbackSshd, start_sshd  # noqa: E402

# Everything that decides what the root holds: a change here makes a new cache key (a new root).
ROOT_RECIPE = {"suite": "bookworm", "arch": "arm64", "variant": "minbase", "include": ["python3", "python3-venv"], "recipe_version": 1}
HOST_PACKAGES = ("qemu-user-static", "binfmt-support", "debootstrap")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
DEFAULT_CPU = "cortex-a76"
PYTHON_TAG = "3.11"  # bookworm's python3
# pip download tags for the board: bookworm's glibc is 2.36, so any manylinux tag up to it runs there.
WHEEL_PLATFORMS = ("manylinux2014_aarch64",) + tuple(f"manylinux_2_{g}_aarch64" for g in (17, 24, 26, 27, 28, 29, 31, 34, 35, 36))


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(ROOT_RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def cache_root() -> Path:
    env = os.environ.get("EDGEFACE_ARM64_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "edgeface" / f"arm64-root-{recipe_key()}"


def _complete_marker(root: Path) -> Path:
    return root.parent / f"{root.name}.complete"


def host_problem() -> str | None:
    """None when this host can run the board, else why not (and what to install)."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the emulated ARM64 board needs root (debootstrap, mounts, sshd ChrootDirectory)"
    missing = [p for p, exe in zip(HOST_PACKAGES, ("qemu-aarch64-static", "update-binfmts", "debootstrap")) if not shutil.which(exe)]
    if missing:
        return f"not installed: {' '.join(missing)} (apt-get install -y {' '.join(HOST_PACKAGES)})"
    if not ensure_binfmt():
        return "qemu-aarch64 is not registered in binfmt_misc (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)"
    return None


def ensure_binfmt() -> bool:
    """Mount binfmt_misc and enable Debian's qemu-aarch64 entry if needed; True when aarch64 ELF files run here.
    The entry must carry the F flag (Debian's does): the interpreter is opened when registered, so it
    works inside the chroot without a copy of qemu there."""
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    return entry.exists() and "enabled" in entry.read_text() and "F" in next((ln.split()[1] for ln in entry.read_text().splitlines() if ln.startswith("flags:")), "")


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses (deb822 .sources or sources.list), or EDGEFACE_DEBIAN_MIRROR."""
    env = os.environ.get("EDGEFACE_DEBIAN_MIRROR")
    if env:
        return env
    files = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            parts = line.split()
            if f.suffix == ".sources" and parts[:1] == ["URIs:"] and len(parts) > 1 and not parts[1].endswith("-security"):
                return parts[1]
            if parts[:1] == ["deb"]:
                uri = next((p for p in parts[1:] if "://" in p), "")
                if uri and "security" not in uri:
                    return uri
    raise RuntimeError("no Debian mirror in /etc/apt sources; set EDGEFACE_DEBIAN_MIRROR")


def make_root(root: Path | None = None, log=print) -> Path:
    """The cached arm64 root, made by debootstrap the first time (into ROOT.partial, renamed when done)."""
    root = root or cache_root()
    if _complete_marker(root).is_file() and (root / "usr" / "bin" / "python3").exists():
        return root
    problem = host_problem()
    if problem:
        raise RuntimeError(problem)
    partial = root.parent / f"{root.name}.partial"
    _unmount_under(partial)
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    r = ROOT_RECIPE
    cmd = ["debootstrap", f"--arch={r['arch']}", f"--variant={r['variant']}", f"--include={','.join(r['include'])}", r["suite"], str(partial), debian_mirror()]
    t0 = time.monotonic()
    log(f"[arm64] {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    _unmount_under(partial)
    if proc.returncode != 0:
        raise RuntimeError(f"debootstrap failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    # ssh logins run `cd $HOME`; keep the apt caches out of the cached root.
    shutil.rmtree(partial / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (partial / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    partial.rename(root)
    _complete_marker(root).write_text(json.dumps({**ROOT_RECIPE, "made_s": round(time.monotonic() - t0, 1)}))
    log(f"[arm64] root ready in {time.monotonic() - t0:.0f} s: {root}")
    return root


def _mounts() -> list[str]:
    return [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]


def _unmount_under(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    for m in sorted((m for m in _mounts() if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


@dataclass
class Arm64Board:
    """The board: sshd on 127.0.0.1 whose logins are chrooted into `root`; `workdir` is its per-session folder (inside the root)."""
    root: Path
    sshd: LoopbackSshd
    workdir: str
    cpu: str

    @property
    def port(self) -> int:
        return self.sshd.port

    def runner(self, sub: str = ""):
        from edgeface.bench.runners import SshRunner

        return SshRunner(host="127.0.0.1", user=self.sshd.user, port=self.sshd.port, key=str(self.sshd.key), workdir=f"{self.workdir}/{sub}" if sub else self.workdir)

    def stop(self) -> None:
        """Stop this board's sshd and delete its work folder. /proc stays mounted in the root: another test session
        may run a board on the same root at the same time (make_root unmounts it before it rebuilds a root)."""
        self.sshd.stop()
        shutil.rmtree(self.root / self.workdir.lstrip("/"), ignore_errors=True)


# A Raspberry Pi 5's CPU as Linux describes it in sysfs and /proc/cpuinfo: Cortex-A76 cores (MIDR 0x414fd0b1: Arm,
# r4p1, part 0xd0b; the A76's features: dot product, fp16 arithmetic), one cluster, 64K+64K L1 and 512K L2 per core,
# 2M shared L3. qemu-user shows the x86 host's /sys and /proc/cpuinfo, which the ARM runtimes misread: with the
# host's (or a synthetic /sys but the host's cpuinfo) ONNX Runtime's cpuinfo crashes (SIGSEGV); with no /sys
# OpenVINO's ARM CPU plugin crashes (oneDNN's xbyak_aarch64 reads MIDR_EL1, hwloc the topology). The board gets
# both, consistent: /sys on a tmpfs, /proc/cpuinfo bind-mounted. As many cores as this host has (a Pi 5 has 4):
# ONNX Runtime pins its threads to the cores it is told exist, and the emulated threads run on the host's.
PI5_CORES = max(1, min(4, os.cpu_count() or 1))
PI5_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def pi5_cpuinfo() -> str:
    """/proc/cpuinfo of the synthetic Pi 5 (the aarch64 kernel's format)."""
    return "".join(f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {PI5_FEATURES}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
                   f"CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for n in range(PI5_CORES))
PI5_MIDR = "0x00000000414fd0b1"
PI5_CACHES = ((1, "Data", "64K"), (1, "Instruction", "64K"), (2, "Unified", "512K"), (3, "Unified", "2048K"))


def write_pi5_sysfs(sys_dir: Path) -> None:
    """The files of a Pi 5's /sys/devices/system/cpu (+ node0 and /sys/bus/cpu links) under `sys_dir`."""
    def w(p: Path, v: str) -> None:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(v + "\n")

    cpu = sys_dir / "devices" / "system" / "cpu"
    every = f"0-{PI5_CORES - 1}"
    mask_all = f"{(1 << PI5_CORES) - 1:x}"
    for f in ("possible", "present", "online"):
        w(cpu / f, every)
    for n in range(PI5_CORES):
        c = cpu / f"cpu{n}"
        w(c / "regs" / "identification" / "midr_el1", PI5_MIDR)
        w(c / "regs" / "identification" / "revidr_el1", "0x0000000000000000")
        w(c / "online", "1")
        topo = {"physical_package_id": "0", "core_id": str(n), "cluster_id": "0", "core_siblings_list": every, "thread_siblings_list": str(n),
                "package_cpus_list": every, "core_cpus_list": str(n), "cluster_cpus_list": every, "core_siblings": mask_all, "package_cpus": mask_all,
                "cluster_cpus": mask_all, "thread_siblings": f"{1 << n:x}", "core_cpus": f"{1 << n:x}"}
        for k, v in topo.items():
            w(c / "topology" / k, v)
        for i, (level, kind, size) in enumerate(PI5_CACHES):
            for k, v in {"level": str(level), "type": kind, "size": size, "coherency_line_size": "64", "ways_of_associativity": "4",
                         "number_of_sets": "256", "shared_cpu_list": every if level == 3 else str(n)}.items():
                w(c / "cache" / f"index{i}" / k, v)
        link = sys_dir / "bus" / "cpu" / "devices" / f"cpu{n}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f"../../../devices/system/cpu/cpu{n}")
    w(sys_dir / "devices" / "system" / "node" / "online", "0")
    w(sys_dir / "devices" / "system" / "node" / "possible", "0")
    w(sys_dir / "devices" / "system" / "node" / "node0" / "cpulist", every)


def start_board(tmp: Path, root: Path | None = None, cpu: str | None = None) -> Arm64Board:
    """Bring the board up: the cached root (made if missing), /proc with a Pi 5's cpuinfo and a synthetic Pi 5 /sys
    (tmpfs) mounted in it, an sshd on a free loopback port."""
    root = make_root(root)
    proc_dir, sys_dir = root / "proc", root / "sys"
    if str(proc_dir.resolve()) not in _mounts():
        subprocess.run(["mount", "-t", "proc", "proc", str(proc_dir)], check=True)
    if str(sys_dir.resolve()) not in _mounts():
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "edgeface-pi5-sysfs", str(sys_dir)], check=True)
        write_pi5_sysfs(sys_dir)
        (sys_dir / "edgeface-cpuinfo").write_text(pi5_cpuinfo())
    cpuinfo = proc_dir / "cpuinfo"
    if str(cpuinfo.resolve()) not in _mounts():
        subprocess.run(["mount", "--bind", str(sys_dir / "edgeface-cpuinfo"), str(cpuinfo)], check=True)
    cpu = cpu or os.environ.get("EDGEFACE_QEMU_CPU", DEFAULT_CPU)
    workdir = f"/tmp/edgeface-board-{uuid.uuid4().hex[:8]}"
    # ChrootDirectory: the root and every folder above it must be root-owned and not group/world-writable.
    sshd = start_sshd(tmp, extra_config=[f"ChrootDirectory {root.resolve()}", f"SetEnv QEMU_CPU={cpu} HOME=/root"])
    return Arm64Board(root, sshd, workdir, cpu)


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "root"
    if what == "host":
        problem = host_problem()
        print(problem or "ok: root, qemu-aarch64 in binfmt_misc (F flag), debootstrap")
        return 1 if problem else 0
    if what == "root":
        print(make_root())
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
