"""The package's layering: no module imports from a layer above its own.

Every import of every module under edgeface/ is read from its syntax tree, the lazy ones
inside functions included, and checked against LAYERS. A layer may import its own modules
and any lower layer; layers of one rank stand beside each other and import neither the other.

    core      edgeface/core: torch-free basics: card, targets, config, profiles, preprocess, align,
              imageio, detect, landmarks, paths, cache, digest, timing, ort_session
    runtime   the torch-free runtime that reads bundles
    eval      edgeface/eval: pair lists, benchmarks, the face store, pair sets, the protocol
    models    torch architectures, checkpoints, the zoo  |  bench: measures files and bundles
    compress  pruning, quantization (NNCF / PT2E / QAT), fine-tuning
    export    converters and the bundle writer (calls compress for quantization)  |  train
    commands  the CLI: thin handlers over the layers below
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeface"

# (layer, rank): an import must go to the same layer or to a lower rank.
LAYERS = {
    "core": 0,
    "runtime": 1,
    "eval": 2,  # scores any embedder: torch models, bundles, plain model files (runtime)
    "models": 3,
    "bench": 3,  # beside models: the bench never loads a torch model itself
    "compress": 4,
    "export": 5,
    "train": 5,  # beside export
    "commands": 6,
}

# Top-level modules and packages, by layer (a package's modules share its layer).
MODULE_LAYER = {
    "edgeface": "core",  # the package's face (__version__)
    "core": "core",
    "runtime": "runtime",
    "eval": "eval",
    "models": "models", "zoo": "models",
    "bench": "bench",
    "compress": "compress",
    "export": "export",
    "train": "train",
    "commands": "commands", "cli": "commands", "__main__": "commands",
}

# Imports that break the layering today and the step that removes them (empty when done).
KNOWN_BREAKS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every edgeface module `path` imports, at the top or inside a function (relative imports
    resolved; `from pkg import name` counts as pkg.name where that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "edgeface"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "edgeface":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").is_file()
                out.add(sub if is_module else target)
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "edgeface"
    if key not in MODULE_LAYER:
        raise KeyError(f"{module}: not in the layer map (tests/test_layering.py MODULE_LAYER): give it a layer")
    return MODULE_LAYER[key]


def allowed(src: str, dst: str) -> bool:
    a, b = layer_of(src), layer_of(dst)
    return a == b or LAYERS[b] < LAYERS[a]


def all_imports() -> list[tuple[str, str]]:
    return sorted((module_name(p), dst) for p in PACKAGE.rglob("*.py") for dst in imported_modules(p))


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))  # raises with the module's name


def test_no_import_runs_up_the_layers():
    breaks = {(src, dst) for src, dst in all_imports() if not allowed(src, dst)}
    new = sorted(breaks - KNOWN_BREAKS)
    assert not new, "imports from a lower layer to a higher one:\n" + "\n".join(f"  {s} ({layer_of(s)}) -> {d} ({layer_of(d)})" for s, d in new)
    fixed = sorted(KNOWN_BREAKS - breaks)
    assert not fixed, f"these known breaks are gone: remove them from KNOWN_BREAKS: {fixed}"


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    """The check fails on what it must catch: a lazy relative import inside a function."""
    pkg = tmp_path / "edgeface"
    (pkg / "runtime").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "runtime" / "__init__.py").write_text("")
    (pkg / "zoo.py").write_text("")
    (pkg / "runtime" / "bad.py").write_text("def f():\n    from ..zoo import load_embedder\n    from .. import export\n")
    (pkg / "export").mkdir()
    (pkg / "export" / "__init__.py").write_text("")
    globals()["PACKAGE"] = pkg  # the walker reads the package through this global
    try:
        found = imported_modules(pkg / "runtime" / "bad.py")
        assert found == {"edgeface.zoo", "edgeface.export"}
        assert not allowed("edgeface.runtime.bad", "edgeface.zoo") and not allowed("edgeface.runtime.bad", "edgeface.export")
        assert allowed("edgeface.export.x", "edgeface.runtime.bundle") and not allowed("edgeface.bench.x", "edgeface.models")
    finally:
        globals()["PACKAGE"] = Path(__file__).resolve().parent.parent / "edgeface"


@pytest.mark.parametrize("module", ["edgeface.runtime", "edgeface.bench"])
def test_torch_free_layers_stay_torch_free(module):
    """Nothing the runtime or the bench imports (lazily or not) is in a torch layer."""
    torch_layers = {"models", "compress", "export", "train", "commands"}
    for src, dst in all_imports():
        if src.startswith(module):
            assert layer_of(dst) not in torch_layers, f"{src} imports {dst} ({layer_of(dst)})"
