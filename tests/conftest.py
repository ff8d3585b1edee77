import os
from pathlib import Path

import numpy as np
import pytest

from edgeface.core import paths

SHARED = paths.shared_dir()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "datasets" / "lfw-dev" / "pairs.txt").is_file():
        pytest.skip(f"../shared not found at {SHARED} (set EDGEFACE_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def yunet(shared):
    from edgeface.core.detect import YuNetDetector

    return YuNetDetector(paths.yunet_model())


@pytest.fixture(scope="session")
def reference_model(shared):
    from edgeface.zoo import load_torch_model

    return load_torch_model(str(paths.reference_mobilefacenet()))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Tests write converted weights / landmark caches into a private cache, never the user's,
    # except the landmark cache which is safe to share and saves minutes of detection.
    os.environ.setdefault("EDGEFACE_CACHE", str(tmp_path_factory.mktemp("edgeface-cache")))
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
