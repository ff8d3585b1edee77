"""Helpers shared by the device tests (kept out of conftest so they import by a unique name)."""
from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
LOCK = CHECKOUT / "requirements" / "lock.txt"


def pinned(packages: tuple[str, ...] | list[str]) -> list[str]:
    """Pin bare package names to the versions in requirements/lock.txt (what CI has measured)."""
    lock = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.strip().lower().replace("_", "-")] = version.strip()
    out = []
    for p in packages:
        name = p.strip()
        key = name.lower().replace("_", "-")
        out.append(f"{name}=={lock[key]}" if key in lock and not any(c in name for c in "<>=!~") else name)
    return out


def wheelhouse_dir() -> Path:
    # Kept across runs (CI included): the runtime wheels are downloaded once per package set.
    return Path(os.environ.get("EDGEFACE_WHEELHOUSE") or Path.home() / ".cache" / "edgeface" / "wheelhouse")
