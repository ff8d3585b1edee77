"""Configuration files of the kit (device profiles, export recipes, training recipes): TOML, read
by one reader that names the file in every error, found by one finder. Standard library only.

The kit's own files ship inside the package (edgeface/configs/<kind>/NAME.toml), so an installed
wheel finds them outside any checkout; a user's own files are found first, from the folders in
the kind's environment variable and then ./<folder> of the current directory:

    kind      folder     variable                 read by
    profile   profiles   EDGEFACE_PROFILES        profiles.load_profile  (edgeface bench/export --profile)
    export    export     EDGEFACE_RECIPES         profiles.load_recipe   (edgeface export --recipe)
    train     train      EDGEFACE_TRAIN_RECIPES   commands.train         (edgeface train --recipe)
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path


PACKAGED = Path(__file__).resolve().parent.parent / "configs"  # edgeface/configs
# kind -> (folder, environment variable, what the error messages call it)
KINDS = {"profile": ("profiles", "EDGEFACE_PROFILES", "device profile"), "export": ("export", "EDGEFACE_RECIPES", "export recipe"),
         "train": ("train", "EDGEFACE_TRAIN_RECIPES", "training recipe")}


def search_dirs(kind: str) -> list[Path]:
    """Where files of `kind` are looked for, first match wins: $VARIABLE's folders, ./<folder>, the package's."""
    if kind not in KINDS:
        raise ValueError(f"unknown configuration kind {kind!r}; known: {sorted(KINDS)}")
    folder, variable, _ = KINDS[kind]
    env = os.environ.get(variable)
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    return dirs + [Path.cwd() / folder, PACKAGED / folder]


def find(kind: str, name: str | os.PathLike) -> Path:
    """The file of a configuration given by name (searched, see `search_dirs`) or by path (a .toml or a name with a folder in it)."""
    dirs = search_dirs(kind)
    what = KINDS[kind][2]
    p = Path(name)
    if p.suffix == ".toml" or os.sep in str(name):
        if p.is_file():
            return p
        raise FileNotFoundError(f"{what} file {p} not found")
    for d in dirs:
        cand = d / f"{name}.toml"
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"no {what} named {str(name)!r}; known: {', '.join(names(kind)) or 'none'} (searched {', '.join(str(d) for d in dirs)})")


def names(kind: str) -> list[str]:
    """Every name of `kind` that `find` resolves, the user's and the package's."""
    return sorted({f.stem for d in search_dirs(kind) if d.is_dir() for f in d.glob("*.toml")})


def load_table(kind: str, name: str | os.PathLike, section: str | None = None, error: type[Exception] = ValueError) -> tuple[dict, Path]:
    """(table, path) of a configuration found by `find`; `section`: read [section] when the file has one."""
    path = find(kind, name)
    table = read_toml(path, error)
    if section is not None:
        table = table.get(section, table)
    return table, path


def load(kind: str, name: str | os.PathLike):
    """A validated, typed configuration: a profiles.Profile ("profile") or a profiles.Recipe ("export").
    Training recipes are read and checked by edgeface.commands.train.load_recipe (their keys are
    the train command's options)."""
    if kind == "profile":
        from .profiles import load_profile

        return load_profile(name)
    if kind == "export":
        from .profiles import load_recipe

        return load_recipe(name)
    raise ValueError(f"config.load reads profiles and export recipes, not {kind!r}" + ("; use edgeface.commands.train.load_recipe" if kind == "train" else ""))


def read_toml(path: str | os.PathLike, error: type[Exception] = ValueError) -> dict:
    """The TOML table in `path`; a missing file is FileNotFoundError, invalid TOML is `error`, both naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with open(p, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{p}: not valid TOML ({exc})") from None


@dataclass(kw_only=True)
class ModelJob:
    """The part every library job that starts from a model shares (prune, quantize): the model (a
    registry name or checkpoint) and, for a foreign checkpoint, its architecture, input size,
    template and embedding size. A job's fields are its command's options, by name."""

    model: str
    arch: str | None = None
    input_size: tuple[int, int] | None = None
    template: str | None = None
    embedding_size: int = 128
    card: str | None = None  # a foreign model's card JSON (models.foreign)
    weights: str | None = None  # a module by import path: its .safetensors weights
    eval_folds: int = 5  # LFW-dev folds measured before and after (0: none)
    out: str | None = None

    @classmethod
    def from_namespace(cls, ns):
        """The job from an argparse namespace (or any object with the fields as attributes)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


@dataclass(kw_only=True)
class JobResult:
    """What every library job that writes a report returns besides its own outputs."""

    report: dict
    report_files: tuple[Path, Path]  # JSON, Markdown
