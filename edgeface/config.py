"""Configuration files of the kit (device profiles, export recipes, training recipes): TOML, read
by one reader that names the file in every error. Standard library only."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path


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
