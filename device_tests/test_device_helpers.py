from device_helpers import pinned


def test_pinned_uses_the_lock_and_keeps_explicit_specs():
    assert pinned(["numpy", "onnxruntime", "ai_edge_litert"]) == ["numpy==2.4.6", "onnxruntime==1.32.0", "ai_edge_litert==2.3.0"]
    assert pinned(["numpy<2", "not-in-lock"]) == ["numpy<2", "not-in-lock"]
