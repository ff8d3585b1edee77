"""Issue 20, finding 6: QAT must not depend on NNCF compiling its C++ extension within 60 s
on first use. With an empty torch-extension cache and no compiler on PATH, an NNCF
fake-quantized network trains through edgeface's kernel selection, and nothing is built."""
import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from edgeface.compress.qat import select_quantize_kernels
    kernels = select_quantize_kernels()
    import nncf
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8 * 6 * 6, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    net = Net()
    data = nncf.Dataset([torch.randn(1, 3, 8, 8) for _ in range(4)])
    q = nncf.quantize(net, data, subset_size=4)
    out = q(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    grads = sum(int(p.grad is not None) for p in q.parameters())
    built = [os.path.join(r, f) for r, _, fs in os.walk(os.environ["TORCH_EXTENSIONS_DIR"]) for f in fs if f.endswith(".so")]
    print(json.dumps({"kernels": kernels, "grads": grads, "built": built, "finite": bool(torch.isfinite(out).all())}))
    """
)


def test_qat_needs_no_jit_compiled_extension(tmp_path):
    pytest.importorskip("nncf")
    pytest.importorskip("torch")
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"), PATH="/nonexistent", CXX="/bin/false", CC="/bin/false",
               NNCF_EXTENSION_LOAD_TIMEOUT="1")  # were a compile attempted, it would fail or time out
    env.pop("EDGEFACE_NNCF_EXTENSION", None)
    p = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    import json

    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res == {"kernels": "reference", "grads": res["grads"], "built": [], "finite": True} and res["grads"] >= 4, res
    assert "Could not compile" not in p.stderr and "Compiling and loading torch extension" not in p.stderr
