"""Device profiles (configs/profiles/*.toml) and the export recipes they name (configs/export/*.toml;
both found by edgeface.core.config.find: the user's folders first, then the package's).

A profile says what a device runs and what it must achieve: the export recipe (format,
precision, options), the backend, threads, batch, budgets (latency, memory, size) and an
accuracy floor, and how to reach the device (local, ssh, adb). `edgeface export --profile NAME`
uses `export_args(profile)`, `edgeface bench --profile NAME` checks the budgets, and
device_tests/ deploys to `profile.device`.

Standard library only (tomllib), so it is usable on the host and in a device's runtime venv.
Every mistake in a file is reported with the file, the key and what was expected.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .config import read_toml

DEVICE_KINDS = ("local", "ssh", "adb")
PRECISIONS = ("fp32", "fp16", "int8")


def profile_dirs() -> list[Path]:
    """Folders searched for device profiles, first match wins ($EDGEFACE_PROFILES, ./profiles, the package's)."""
    return config.search_dirs("profile")


def recipe_dirs() -> list[Path]:
    """Folders searched for export recipes, first match wins ($EDGEFACE_RECIPES, ./export, the package's)."""
    return config.search_dirs("export")


@dataclass(frozen=True)
class Recipe:
    name: str
    format: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None


@dataclass(frozen=True)
class Budgets:
    latency_ms: float | None = None
    memory_mb: float | None = None
    size_mb: float | None = None
    accuracy_floor: float | None = None


@dataclass(frozen=True)
class Device:
    kind: str = "local"
    host: str = ""
    user: str = ""
    port: int = 22
    key: str = ""
    serial: str = ""
    python: str = "python3"
    workdir: str = ""
    packages: tuple[str, ...] = ()
    system_site_packages: bool = False
    requires_gpu: str = ""


@dataclass(frozen=True)
class Profile:
    name: str
    recipe: Recipe
    backend: str
    precision: str
    threads: int = 0
    batch: int = 32
    budgets: Budgets = Budgets()
    device: Device = Device()
    description: str = ""
    path: Path | None = None

    @property
    def target(self) -> str:
        return self.recipe.format


class ProfileError(ValueError):
    """A profile or recipe file that cannot be used; the message names the file and the key."""


_PROFILE_KEYS = {"name": str, "description": str, "recipe": str, "backend": str, "precision": str, "threads": int, "batch": int, "budgets": dict, "device": dict}
_BUDGET_KEYS = {"latency_ms": (int, float), "memory_mb": (int, float), "size_mb": (int, float), "accuracy_floor": (int, float)}
_DEVICE_KEYS = {"kind": str, "host": str, "user": str, "port": int, "key": str, "serial": str, "python": str, "workdir": str, "packages": list, "system_site_packages": bool, "requires_gpu": str}


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _check_table(where: str, table: dict, schema: dict, required: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(schema)}")
    for key in required:
        if key not in table:
            raise ProfileError(f"{where}: missing required key {key!r}")
    for key, value in table.items():
        want = schema[key]
        if isinstance(value, bool) and want is not bool and not (isinstance(want, tuple) and bool in want):
            raise ProfileError(f"{where}: {key} must be {_type_name(want)}, got {value!r}")
        if not isinstance(value, want):
            raise ProfileError(f"{where}: {key} must be {_type_name(want)}, got {type(value).__name__} {value!r}")


def _check_target(where: str, fmt: str, precision: str, backend: str | None = None, graph: str | None = None) -> None:
    """Format, precision and backend must be a target the kit knows (edgeface.core.targets)."""
    if precision not in PRECISIONS:
        raise ProfileError(f"{where}: precision must be one of {list(PRECISIONS)}, got {precision!r}")
    try:
        from . import targets
    except ImportError:  # the target table is not installed in this (device) environment
        return
    _check_against_target_table(where, targets, fmt, precision, backend, graph)


def _check_against_target_table(where, targets, fmt, precision, backend, graph=None) -> None:
    try:
        row = targets.target(fmt, precision)
    except ValueError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    if graph is not None and graph not in row.graphs:
        raise ProfileError(f"{where}: graph {graph!r}: {row.key} writes the {' or '.join(row.graphs)} graph")
    if backend is not None and backend != row.backend:
        raise ProfileError(f"{where}: backend {backend!r} does not run {fmt}-{precision}; the target table's backend for it is {row.backend!r}")


RECIPE_KEYS = {"format", "precision", "graph", "n_calib", "n_verify", "n_impostor", "lfw_folds", "threads",
               "quantizer", "qat", "qat_faces", "qat_lr", "verify"}


def load_recipe(name: str | os.PathLike) -> Recipe:
    """An export recipe (export/NAME.toml): `format`, `precision` and the exporter's options
    (graph, n_calib, n_verify, n_impostor, lfw_folds, threads; int8: quantizer, qat, qat_faces, qat_lr).
    The one reader of recipes:
    `edgeface export --recipe` and a profile read it here, so a recipe means the same thing to both."""
    path = config.find("export", name)
    data = read_toml(path, ProfileError)
    unknown = set(data) - RECIPE_KEYS
    if unknown:
        raise ProfileError(f"{path}: unknown recipe keys {sorted(unknown)}; allowed: {sorted(RECIPE_KEYS)}")
    if "format" not in data:
        raise ProfileError(f"{path}: missing required key 'format'")
    for key, value in data.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ProfileError(f"{path}: {key} must be a string, number or boolean, got {type(value).__name__}")
    precision = data.get("precision", "fp32")
    _check_target(str(path), data["format"], precision, graph=data.get("graph"))
    options = {k: v for k, v in data.items() if k not in ("format", "precision")}
    return Recipe(path.stem, data["format"], precision, options, "", path)


def load_profile(name: str | os.PathLike) -> Profile:
    """A profile by name (profiles/NAME.toml) or path, validated, with its recipe loaded."""
    path = config.find("profile", name)
    data = read_toml(path, ProfileError)
    where = str(path)
    _check_table(where, data, _PROFILE_KEYS, ("recipe", "backend"))
    budgets_t = data.get("budgets", {})
    _check_table(f"{where} [budgets]", budgets_t, _BUDGET_KEYS)
    for key, value in budgets_t.items():
        if value <= 0:
            raise ProfileError(f"{where} [budgets]: {key} must be > 0, got {value}")
    if budgets_t.get("accuracy_floor", 0) > 1:
        raise ProfileError(f"{where} [budgets]: accuracy_floor is a fraction (e.g. 0.975), got {budgets_t['accuracy_floor']}")
    device_t = data.get("device", {"kind": "local"})
    _check_table(f"{where} [device]", device_t, _DEVICE_KEYS, ("kind",))
    kind = device_t["kind"]
    if kind not in DEVICE_KINDS:
        raise ProfileError(f"{where} [device]: kind must be one of {list(DEVICE_KINDS)}, got {kind!r}")
    if kind == "ssh" and not device_t.get("host"):
        raise ProfileError(f"{where} [device]: kind 'ssh' needs host (and usually user, port, key)")
    if not 0 < device_t.get("port", 22) < 65536:
        raise ProfileError(f"{where} [device]: port must be 1-65535, got {device_t['port']}")
    if not all(isinstance(p, str) for p in device_t.get("packages", [])):
        raise ProfileError(f"{where} [device]: packages must be a list of pip requirement strings")
    recipe = load_recipe(data["recipe"])
    precision = data.get("precision", recipe.precision)
    if precision != recipe.precision:
        raise ProfileError(f"{where}: precision {precision!r} differs from its recipe {recipe.path.name} ({recipe.precision!r}); a profile runs exactly what its recipe exports")
    for key in ("threads", "batch"):
        if data.get(key, 0) < 0 or (key == "batch" and data.get(key, 1) < 1):
            raise ProfileError(f"{where}: {key} must be {'>= 1' if key == 'batch' else '>= 0 (0 = all cores)'}, got {data[key]}")
    _check_target(where, recipe.format, precision, data["backend"])
    device = Device(**{**device_t, "packages": tuple(device_t.get("packages", ()))})
    return Profile(
        name=data.get("name", path.stem),
        recipe=recipe,
        backend=data["backend"],
        precision=precision,
        threads=data.get("threads", 0),
        batch=data.get("batch", 32),
        budgets=Budgets(**budgets_t),
        device=device,
        description=data.get("description", ""),
        path=path,
    )


def list_profiles() -> list[str]:
    """Names of every device profile found in the profile folders, sorted."""
    return config.names("profile")


def export_args(profile: Profile | str) -> tuple[str, str, dict[str, Any]]:
    """(target, precision, options) that `edgeface export --profile NAME` must use, so the file a
    profile is benchmarked with is exactly the file the device runs."""
    p = load_profile(profile) if isinstance(profile, (str, os.PathLike)) else profile
    return p.recipe.format, p.recipe.precision, dict(p.recipe.options)


def check_budgets(profile: Profile, measured: dict) -> dict[str, dict]:
    """Pass/fail per budget. `measured` holds latency_ms (p50 batch 1), memory_mb (peak RSS),
    size_mb and accuracy (fraction); a missing measurement is reported as not checked."""
    b = profile.budgets
    checks = {
        "latency_ms": (b.latency_ms, measured.get("latency_ms"), "<="),
        "memory_mb": (b.memory_mb, measured.get("memory_mb"), "<="),
        "size_mb": (b.size_mb, measured.get("size_mb"), "<="),
        "accuracy": (b.accuracy_floor, measured.get("accuracy"), ">="),
    }
    out = {}
    for key, (limit, value, op) in checks.items():
        if limit is None:
            continue
        ok = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out[key] = {"limit": limit, "value": value, "op": op, "pass": ok}
    return out
