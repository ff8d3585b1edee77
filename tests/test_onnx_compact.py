"""Storage compaction of int8 ONNX graphs (edgeface.compress.onnx_compact) on a small hand-built
graph: what it stores changes, what it computes stays within the rounding it introduces."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgeface.compress.onnx_compact import compact_int8, float_params_fp16, float_weights_int8, short_names  # noqa: E402


def _graph(rng):
    """x (N, 64, 4, 4) -> Conv 3x3 (64->128, float weight 295 kB, bias) -> PRelu -> Conv 1x1 (128->8, small) -> y."""
    w1 = rng.normal(0, 0.05, (128, 64, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 128).astype(np.float32)
    slope = rng.uniform(0.1, 0.3, (128, 1, 1)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (8, 128, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "a_long/path/to/weight", "a_long/path/to/bias"], ["a_long/path/conv_out"], pads=[1, 1, 1, 1], name="a_long/conv/node"),
             helper.make_node("PRelu", ["a_long/path/conv_out", "a_long/path/slope"], ["a_long/path/prelu_out"], name="a_long/prelu/node"),
             helper.make_node("Conv", ["a_long/path/prelu_out", "small_weight"], ["y"], name="a_long/conv2/node")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 4, 4])],
                          [numpy_helper.from_array(w1, "a_long/path/to/weight"), numpy_helper.from_array(b1, "a_long/path/to/bias"),
                           numpy_helper.from_array(slope, "a_long/path/slope"), numpy_helper.from_array(w2, "small_weight")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), w1


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_compaction_shrinks_storage_and_keeps_outputs():
    rng = np.random.default_rng(0)
    model, w1 = _graph(rng)
    x = rng.normal(size=(3, 64, 4, 4)).astype(np.float32)
    ref = _run(model, x)
    before = len(model.SerializeToString())
    info = compact_int8(model)
    after = len(model.SerializeToString())
    assert info["weight_only_int8"] == ["a_long/path/to/weight"]  # only the large float weight
    assert info["float_params_stored_fp16"] == 3  # bias, slope, small conv weight
    assert info["names_shortened"] > 0
    # 295 kB of float32 weight became 74 kB of int8: about a quarter of the file.
    assert after < 0.3 * before
    names = {t.name for t in model.graph.initializer}
    assert not any("a_long" in n for n in names) and not any("a_long" in n.name for n in model.graph.node)
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["y"]
    out = _run(model, x)
    # The error is the int8 weight rounding (half a step of 1/127 of each channel's max) and fp16
    # parameters: small against the output's scale, but not zero (the check can fail both ways).
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert 1e-6 < rel < 0.02


def test_weight_only_int8_matches_numpy_per_channel_rounding():
    rng = np.random.default_rng(1)
    model, w1 = _graph(rng)
    float_weights_int8(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q, s = inits["a_long/path/to/weight_int8"], inits["a_long/path/to/weight_scale"]
    assert q.dtype == np.int8 and s.shape == (128,)
    np.testing.assert_allclose(s, np.abs(w1).reshape(128, -1).max(1) / 127, rtol=1e-6)
    np.testing.assert_array_equal(q, np.round(w1 / s[:, None, None, None]).astype(np.int8))
    assert np.abs(q).max() == 127


def test_parts_can_be_applied_alone():
    rng = np.random.default_rng(2)
    model, _ = _graph(rng)
    x = rng.normal(size=(2, 64, 4, 4)).astype(np.float32)
    ref = _run(model, x)
    assert short_names(model) > 0
    np.testing.assert_array_equal(_run(model, x), ref)  # renaming changes nothing computed
    assert float_params_fp16(model) == 4  # without the int8 step, the big weight is fp16 too
    assert all(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)
    np.testing.assert_allclose(_run(model, x), ref, rtol=0, atol=2e-3 * np.abs(ref).max())


def test_verification_fails_outputs_that_are_not_unit_length():
    from edgeface.export import verify as V
    from edgeface.core.preprocess import l2_normalize

    unit = l2_normalize(np.random.default_rng(3).normal(size=(20, 8)))
    assert V.norm_failures(V.output_norms(unit)) == []
    off = unit.copy()
    off[4] *= 1.05  # one face 5 % long: what a quantized normalisation produced
    fails = V.norm_failures(V.output_norms(off))
    assert len(fails) == 1 and "not unit-length" in fails[0] and "1.0500" in fails[0]


def test_fold_weight_quantize_stores_exactly_what_quantizelinear_computes():
    """A QAT export's weights: float initializer -> QuantizeLinear (per output channel, zero point
    shared through an Identity as the TorchScript exporter writes it) -> DequantizeLinear -> Conv."""
    from edgeface.compress.onnx_compact import fold_weight_quantize

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.05, (16, 8, 3, 3)).astype(np.float32)
    scale = (np.abs(w).reshape(16, -1).max(1) / 127).astype(np.float32)
    w[1, 0, 0, 0] = 2.5 * scale[1]  # a tie: QuantizeLinear rounds half to even (2), not away from zero (3)
    zp = np.zeros(16, np.int8)
    nodes = [helper.make_node("Identity", ["zp"], ["zp_shared"]),
             helper.make_node("QuantizeLinear", ["w", "scale", "zp_shared"], ["w_q"], axis=0),
             helper.make_node("DequantizeLinear", ["w_q", "scale", "zp_shared"], ["w_dq"], axis=0),
             helper.make_node("Conv", ["x", "w_dq"], ["y"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 5, 5])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(zp, "zp")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(2, 8, 5, 5)).astype(np.float32)
    ref = _run(model, x)
    before = len(model.SerializeToString())
    assert fold_weight_quantize(model) == ["w"]
    onnx.checker.check_model(model)
    assert "QuantizeLinear" not in [n.op_type for n in model.graph.node]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert "w" not in inits and inits["w_q"].dtype == np.int8
    expected = np.clip(np.round(w / scale[:, None, None, None]), -128, 127).astype(np.int8)  # numpy rounds half to even, as ONNX does
    assert np.array_equal(inits["w_q"], expected)
    assert inits["w_q"][1, 0, 0, 0] == 2
    assert np.array_equal(_run(model, x), ref)  # the graph computes exactly the same
    assert len(model.SerializeToString()) < 0.35 * before
