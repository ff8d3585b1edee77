"""Configuration files of the kit (device profiles, export recipes, training recipes): TOML, read
by one reader that names the file in every error. Standard library only."""
from __future__ import annotations

import os
import tomllib
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
