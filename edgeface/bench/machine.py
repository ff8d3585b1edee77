"""A description of the machine a benchmark ran on: CPU model, cores, memory, OS, library versions.

Standard library only (psutil when present), because the same code runs on the device
(a board or a phone shell) where only numpy and one inference runtime are installed.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

# Distribution names whose versions change the numbers (runtimes, numpy); torch only on the host.
LIBRARIES = ("edgeface", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "ai-edge-litert", "tflite-runtime", "tensorflow", "tensorrt", "MNN", "ncnn",
             "coremltools", "torch")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (sysctl on macOS), else platform's processor/machine, else "unknown"."""
    text = _read("/proc/cpuinfo")
    for key in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Physical core count (psutil, else distinct (physical id, core id) pairs in /proc/cpuinfo); None when unknown."""
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        pass
    cores = set()
    phys = core = None
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
            cores.add((phys, core))
    return len(cores) or None


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's cpuset), not all the host has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def total_memory_mb() -> float | None:
    """Total RAM in MiB (one decimal) from /proc/meminfo, else psutil; None when neither is available."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024, 1)
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**20, 1)
    except ImportError:
        return None


def library_versions(names=LIBRARIES) -> dict[str, str]:
    """Installed versions of the given distributions ({name: version}); ones not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def describe() -> dict:
    """Everything a reader needs to judge a benchmark number."""
    os_name = platform.platform()
    release = _read("/etc/os-release")
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = f"{line.split('=', 1)[1].strip().strip(chr(34))} ({platform.system()} {platform.release()})"
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": usable_cores(),
        "memory_mb": total_memory_mb(),
        "os": os_name,
        "python": platform.python_version(),
        "libraries": library_versions(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def summary_line(m: dict) -> str:
    """One line describing a machine from `describe()`'s dict: CPU, cores, RAM, OS, Python and library versions."""
    libs = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    mem = f"{m['memory_mb'] / 1024:.1f} GiB RAM" if m.get("memory_mb") else "RAM unknown"
    return f"{m['cpu']} ({m['arch']}), {m['usable_cores']} usable / {m['logical_cores']} logical cores, {mem}, {m['os']}, Python {m['python']}; {libs}"
