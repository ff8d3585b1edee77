"""The JNI Java front (sdk/java) on the shared vectors: FaceRecognizer enrol/verify/identify decisions
equal to the Python runtime's, embeddings within tolerance, the same error kinds for bad input with
the core's messages, the vectors' refused bundles refused by the same rule (EdgefaceException.bundleKind)
and an unusable gallery refused. Built by sdk/build.sh."""
import json
import shutil
import subprocess

import pytest
from sdk_vectors import SETS

from test_sdk_cpp import build_core

pytestmark = [pytest.mark.shared]


@pytest.fixture(scope="module", params=SETS)
def sdk_vectors(request, shared):
    """Each shared vector set: the reference bundle and the shipped default's ONNX fp32 / int8 bundles."""
    pytest.importorskip("onnxruntime")
    import sdk_vectors

    return sdk_vectors.build(shared, request.param)


def test_java_front_reproduces_the_vectors(sdk_vectors, tmp_path):
    if shutil.which("java") is None:
        pytest.skip("no JDK (sdk/build.sh installs default-jdk-headless)")
    core = build_core()
    assert (core / "libedgeface_jni.so").is_file() and (core / "java-test").is_dir()
    cp = f"{core / 'java'}:{core / 'java-test'}"
    p = subprocess.run(["java", f"-Djava.library.path={core}", "-cp", cp, "com.edgeface.sdk.VectorsTest", sdk_vectors["bundle"], sdk_vectors["vectors"], str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"Java front differs from the vectors:\n{p.stderr[-6000:]}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["mismatches"] == 0 and out["checks"] > 100
    assert out["raw_cosine_min"] >= 0.999
