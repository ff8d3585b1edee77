"""The runtime works with torch (and the training side) impossible to import."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

BLOCK = textwrap.dedent(
    """
    import sys, importlib.abc
    BLOCKED = ("torch", "torchvision", "torchao", "edgeface.models", "edgeface.zoo", "edgeface.train")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked for this test: {name}")
    sys.meta_path.insert(0, Block())
    for b in BLOCKED:
        sys.modules.pop(b, None)
    """
)


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=300)


def test_runtime_modules_and_commands_import_without_torch(tmp_path):
    code = """
    import importlib, sys
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch import was not blocked")
    for m in ["edgeface.runtime.codecs", "edgeface.runtime.quality", "edgeface.runtime.gallery", "edgeface.runtime.face",
              "edgeface.commands.recognize", "edgeface.cli", "edgeface.core.align", "edgeface.core.detect", "edgeface.core.imageio"]:
        importlib.import_module(m)
    from edgeface.cli import build_parser, main
    build_parser()
    from edgeface.core.card import ModelCard
    from edgeface.runtime.gallery import Gallery
    import numpy as np
    card = ModelCard(name="n", arch="a", input_size=(112, 112), embedding_size=8, template="arcface_112x112")
    with Gallery(sys.argv[1], card=card) as g:
        g.add("x", np.ones(8))
    rc = main(["gallery", "info", "--gallery", sys.argv[1], "--json"])
    assert rc == 0, rc
    bad = [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "edgeface.models", "edgeface.zoo"))]
    assert not bad, bad
    print("OK")
    """
    p = run_blocked(code, str(tmp_path / "g.db"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("OK")
    info = json.loads(p.stdout[: p.stdout.rindex("OK")])
    assert info["identities"] == 1 and info["codec"] == "float32"


@pytest.fixture(scope="module")
def onnx_model(reference_model, tmp_path_factory):
    """The reference MobileFaceNet exported to ONNX (test fixture; real apps use a bundle)."""
    import torch

    model, card = reference_model
    out = tmp_path_factory.mktemp("onnx") / "mfn.onnx"
    h, w = card.input_size
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, h, w),), str(out), input_names=["faces"], output_names=["emb"],
                      dynamic_axes={"faces": {0: "n"}, "emb": {0: "n"}}, dynamo=False)
    (out.parent / "card.json").write_text(card.to_json())
    return out


def test_enroll_and_verify_through_onnxruntime_without_torch(onnx_model, shared, tmp_path):
    code = """
    import sys, glob, numpy as np, onnxruntime as ort
    from pathlib import Path
    from edgeface.core.card import ModelCard
    from edgeface.core.preprocess import normalize, l2_normalize
    from edgeface.runtime.face import FaceRecognizer

    class OrtEmbedder:
        backend = "onnxruntime"
        def __init__(self, path):
            self.card = ModelCard.from_json((Path(path).parent / "card.json").read_text())
            self.sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        def embed(self, faces):
            return l2_normalize(self.sess.run(None, {"faces": normalize(faces, self.card)})[0])

    model, gallery, lfw, yunet = sys.argv[1:5]
    rec = FaceRecognizer(OrtEmbedder(model), gallery=gallery, detector=yunet, thresholds={"1e-3": 0.4})
    a = sorted(glob.glob(lfw + "/Hugo_Chavez/*.jpg"))
    b = sorted(glob.glob(lfw + "/Laura_Bush/*.jpg"))
    for name, files in [("hugo", a[:3]), ("laura", b[:3])]:
        r = rec.enroll(name, files)
        assert r.enrolled, r.to_dict()
    decided = 0
    for probe, right, wrong in [(p, "hugo", "laura") for p in a[5:10]] + [(p, "laura", "hugo") for p in b[5:10]]:
        v, w, i = rec.verify(probe, right), rec.verify(probe, wrong), rec.identify(probe)
        if v.match is None:  # a probe the quality gate refused: refused consistently
            assert w.match is None and i.name is None and v.rejected[0].reason == "quality", v.to_dict()
            continue
        decided += 1
        assert v.match is True and w.match is False and i.name == right, (probe, v.to_dict(), i.to_dict())
    assert decided >= 8
    assert "torch" not in sys.modules
    print("OK")
    """
    lfw = shared / "datasets" / "lfw-dev" / "images"
    from edgeface.core import paths

    p = run_blocked(code, str(onnx_model), str(tmp_path / "g.db"), str(lfw), str(paths.yunet_model()))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "OK" in p.stdout
