"""Default locations of the shared data and models (../shared beside the checkout), overridable
by EDGEFACE_SHARED. Only used for defaults: every command takes explicit paths."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """The shared data folder (datasets, models): $EDGEFACE_SHARED, else the first existing `shared` beside the
    checkout, beside the working directory or in it; else the one beside the checkout (which may not exist)."""
    env = os.environ.get("EDGEFACE_SHARED")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2]  # the checkout (edgeface/core/paths.py)
    for cand in (here.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if cand.is_dir():
            return cand
    return here.parent / "shared"


def yunet_model() -> Path:
    """The YuNet face detector ONNX file in the shared folder."""
    return shared_dir() / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def lfw_dev() -> Path:
    """The LFW-dev pairs dataset folder in the shared folder."""
    return shared_dir() / "datasets" / "lfw-dev"


def reference_mobilefacenet() -> Path:
    """The third-party MobileFaceNet (CASIA) reference checkpoint in the shared folder."""
    return shared_dir() / "models" / "third_party" / "mobilefacenet-casia-xiaoccer" / "068.ckpt"
