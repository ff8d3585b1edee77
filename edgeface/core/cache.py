"""Where edgeface keeps its per-user cache (converted weights, landmarks, teacher features)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Folder under the edgeface cache ($EDGEFACE_CACHE, else $XDG_CACHE_HOME/edgeface or ~/.cache/edgeface), created if missing."""
    root = Path(os.environ.get("EDGEFACE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeface")
    d = root.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
