"""The shared SDK vectors (sdk/VECTORS.md): written from real faces, reproduced by the Python runtime,
and the check catches a vector that does not hold."""
import json
import shutil

import numpy as np
import pytest
from sdk_vectors import SETS

pytestmark = [pytest.mark.shared]


@pytest.fixture(scope="module")
def sdk_vectors(shared):
    pytest.importorskip("onnxruntime")
    import sdk_vectors

    return sdk_vectors.build(shared)


def test_vectors_cover_every_part(sdk_vectors):
    from edgeface.runtime.vectors import read_vectors

    doc = read_vectors(sdk_vectors["vectors"])
    analyzed = {f["analyze_verify"] for f in doc["faces"]}
    assert analyzed == {"ok", "quality"}  # accepted faces and gate rejections
    assert {e["kind"] for e in doc["errors"]} >= {"empty", "unreadable", "tiny", "missing", "bad_landmarks"}
    assert {e["id"]: e["kind"] for e in doc["errors"]}["mouth_corners_swapped"] == "quality"  # landmark_residual
    assert all("landmark_residual" in f["measurements"] for f in doc["faces"])
    assert {p["compare_1e-3"] for p in doc["pairs"]} == {"match", "no_match", "rejected"}
    assert {g["codec"] for g in doc["galleries"]} == {"float32", "int8", "binary512"}
    decisions = {s["identify"]["1e-3"]["decision"] for g in doc["galleries"] for s in g["searches"]}
    assert decisions == {"identified", "unknown", "rejected"}
    assert set(doc["thresholds"]) == {"cosine", "binary", "binary256", "binary512"}


@pytest.mark.parametrize("name", SETS)
def test_python_runtime_reproduces_the_vectors(shared, name):
    pytest.importorskip("onnxruntime")
    import sdk_vectors
    from edgeface.runtime.vectors import check_vectors

    v = sdk_vectors.build(shared, name)
    assert check_vectors(v["bundle"], v["vectors"]) == []


def test_check_catches_a_wrong_vector(sdk_vectors, tmp_path):
    from edgeface.runtime.vectors import check_vectors

    d = tmp_path / "v"
    shutil.copytree(sdk_vectors["vectors"], d)
    doc = json.loads((d / "vectors.json").read_text())
    f = doc["faces"][0]
    emb = np.frombuffer((d / f["embedding"]).read_bytes(), "<f4").copy()
    (d / f["embedding"]).write_bytes((-emb).astype("<f4").tobytes())
    doc["errors"][0]["kind"] = "ok"
    (d / "vectors.json").write_text(json.dumps(doc))
    bad = check_vectors(sdk_vectors["bundle"], d)
    assert any(line.startswith(f"{f['id']}: embedding cosine") for line in bad)
    assert any(line.startswith("error case empty_file") for line in bad)
