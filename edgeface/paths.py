"""Default locations of the shared data and models (../shared beside the checkout), overridable
by EDGEFACE_SHARED. Only used for defaults: every command takes explicit paths."""
from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    env = os.environ.get("EDGEFACE_SHARED")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent  # the checkout
    for cand in (here.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if cand.is_dir():
            return cand
    return here.parent / "shared"


def yunet_model() -> Path:
    return shared_dir() / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def lfw_dev() -> Path:
    return shared_dir() / "datasets" / "lfw-dev"


def reference_mobilefacenet() -> Path:
    return shared_dir() / "models" / "third_party" / "mobilefacenet-casia-xiaoccer" / "068.ckpt"
