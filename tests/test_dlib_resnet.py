"""dlib's CC0 face ResNet: the file reader, parity with dlib itself, and the registry entry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from edgeface.models.dlib_resnet import (  # noqa: E402
    CARD,
    DLIB_MEAN_RGB,
    DlibFormatError,
    build_dlib_resnet,
    dlib_model_files,
    read_dlib_layers,
    read_dlib_resnet,
)


@pytest.fixture(scope="module")
def dat():
    try:
        return dlib_model_files()[1]
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def port(dat):
    state, mean = read_dlib_resnet(dat)
    model = build_dlib_resnet().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model, state, mean


@pytest.fixture(scope="module")
def dlib_net(dat):
    return dlib.face_recognition_model_v1(str(dat))


def _port_embed(model, chips: np.ndarray, mean) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
    x = (x - torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)) / 256.0
    with torch.no_grad():
        return model(x).double().numpy()


def test_reader_shapes_match_the_architecture(port, dat):
    model, state, mean = port
    assert np.allclose(mean, DLIB_MEAN_RGB, atol=1e-3)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k: tuple(v.shape) for k, v in state.items()} == ours
    assert state["stem.conv.weight"].shape == (32, 3, 7, 7)
    assert state["fc.weight"].shape == (128, 256)
    _, layers = read_dlib_layers(dat)
    convs = [layer for layer in layers if layer.kind == "con"]
    assert len(convs) == 29  # dlib's "29 conv layers"
    # the first stored conv's filters are the port's stem weights, element for element
    first = convs[0].params["params"].reshape(-1)[: 32 * 3 * 7 * 7].reshape(32, 3, 7, 7)
    assert np.array_equal(first, state["stem.conv.weight"])
    assert all(np.isfinite(v).all() for v in state.values())


@pytest.mark.parametrize("pattern", ["grey", "gradient", "checker", "noise"])
def test_port_matches_dlib_on_crafted_chips(port, dlib_net, pattern):
    model, _, mean = port
    yy, xx = np.mgrid[0:150, 0:150]
    if pattern == "grey":
        chip = np.full((150, 150, 3), 128, np.uint8)
    elif pattern == "gradient":  # exercises the zero-padded residual adds at the borders
        chip = np.stack([xx * 255 // 149, yy * 255 // 149, (xx + yy) * 255 // 298], axis=2).astype(np.uint8)
    elif pattern == "checker":
        chip = np.repeat((((xx // 7 + yy // 7) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        chip = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    ref = np.array(dlib_net.compute_face_descriptor(chip), np.float64)
    out = _port_embed(model, chip[None], mean)[0]
    assert np.abs(out - ref).max() < 1e-4, np.abs(out - ref).max()


def _lfw_faces(yunet, count: int):
    """(pixels, YuNet detection) of `count` LFW-dev photos of different people, spread over the pair list."""
    from edgeface.core import paths
    from edgeface.eval.datasets import load_pairs
    from edgeface.core.detect import pick_primary
    from edgeface.core.imageio import read_image

    out = []
    for f in sorted({p.a for p in load_pairs(paths.lfw_dev())})[::97][:count]:
        img = read_image(f).pixels
        det = pick_primary(yunet.detect(img), img.shape)
        assert det is not None, f
        out.append((img, det))
    return out


def test_port_matches_dlib_on_real_faces(port, dlib_net, shared, yunet):

    from edgeface.train.teacher import DlibTeacher

    model, _, mean = port
    teacher = DlibTeacher()  # dlib's own chip: its 5-point predictor in YuNet's box, get_face_chip
    chips = np.stack([teacher.chip(img, det.box) for img, det in _lfw_faces(yunet, 6)])
    ref = np.array([np.array(dlib_net.compute_face_descriptor(c)) for c in chips])
    out = _port_embed(model, chips, mean)
    cos = np.sum(out * ref, axis=1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.99999, cos
    # and they are faces of different people, not one vector: parity is not trivial
    assert (out @ out.T / np.outer(np.linalg.norm(out, axis=1), np.linalg.norm(out, axis=1)))[~np.eye(len(out), dtype=bool)].min() < 0.9


def test_registry_card_round_trip(tmp_path, dat):
    from edgeface import models
    from edgeface.models.checkpoints import load_checkpoint, read_checkpoint_card, save_checkpoint
    from edgeface.zoo import load_torch_model

    entry = models.get("dlib_resnet")
    assert entry.card == CARD and entry.card.template == "dlib_150x150"
    model, card = load_torch_model("dlib_resnet")  # converts the .dat once into the (test) cache
    assert card == CARD and read_checkpoint_card(entry.weights_path()) == CARD
    path = save_checkpoint(model, card, tmp_path / "copy.safetensors")
    again, card2 = load_checkpoint(path)
    assert card2 == card
    x = torch.randn(2, 3, 150, 150)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_damaged_files_are_refused(tmp_path, dat):
    raw = dat.read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DlibFormatError, match="runs past the end|ends early"):
        read_dlib_resnet(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(raw.replace(b"input_rgb_image_sized", b"input_rgb_image_sizeX", 1))
    with pytest.raises(DlibFormatError, match="input layer"):
        read_dlib_resnet(other)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(raw + b"\x00")
    with pytest.raises(DlibFormatError, match="unread bytes"):
        read_dlib_resnet(extra)


def test_wrong_input_size_is_refused():
    with pytest.raises(ValueError, match="150x150"):
        build_dlib_resnet(input_size=(112, 112))


@pytest.mark.parametrize("method", ["correlation", "magnitude"])
def test_channel_pruning_of_residual_blocks_equals_masking(method):
    """Removing a block's inner channels computes exactly what zeroing conv2's input columns does,
    and the pruned card rebuilds the same architecture."""
    import copy

    from edgeface.compress import channel
    from edgeface.compress.masks import apply_masks
    from edgeface.models import build_from_card

    torch.manual_seed(0)
    net = build_dlib_resnet().eval()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    assert len(channel.units(net)) == 14
    x = torch.randn(4, 3, 150, 150)
    acts = channel.expansion_activations(net, [x]) if method == "correlation" else None
    keep = channel.select_channels(net, 0.5, method, acts)
    assert [len(v) for v in keep.values()] == [max(8, round(0.5 * c)) for c in channel.mid_channels(net)]
    masked = copy.deepcopy(net)
    apply_masks(masked, channel.channel_masks(masked, keep))
    small = channel.shrink_bottlenecks(copy.deepcopy(net), keep)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-4)
        assert not torch.allclose(small(x), net(x), atol=1e-3)
    card = channel.pruned_card(small, CARD, "dlib_resnet_half", "test")
    assert card.arch == "dlib_resnet" and card.arch_kwargs["widths"] == channel.mid_channels(small)
    rebuilt = build_from_card(card)
    rebuilt.load_state_dict(small.state_dict())
    assert card.params < 0.6 * sum(p.numel() for p in net.parameters())


def test_the_packaged_edge_model_is_small_and_follows_the_dense_network(shared, yunet):
    """dlib_resnet_edge (edgeface distill --recipe default-edge): under 2 M parameters, CC0 card, and on real LFW faces its
    embeddings agree with the dense network it was distilled from while still telling people apart
    (a network with its channels pruned but not retrained, or random weights, fails the agreement)."""
    from edgeface import zoo
    from edgeface.core.align import align_face
    from edgeface.compress.finetune import embed
    from edgeface.models import names

    if "dlib_resnet_edge" not in names():
        pytest.fail("the package ships edgeface/weights/dlib_resnet_edge.safetensors: dlib_resnet_edge must be registered")
    edge, card = zoo.load_torch_model("dlib_resnet_edge")
    dense, dense_card = zoo.load_torch_model("dlib_resnet")
    assert card.template == dense_card.template and card.input_size == dense_card.input_size
    assert "CC0" in card.licence
    n_params = sum(p.numel() for p in edge.parameters())
    assert n_params < 2_000_000 and n_params == card.params
    crops = np.stack([align_face(img, det.landmarks, card.template, tuple(card.input_size)) for img, det in _lfw_faces(yunet, 12)])
    e, d = embed(edge, crops, card), embed(dense, crops, dense_card)
    agreement = np.sum(e * d, axis=1)
    assert agreement.mean() >= 0.9 and agreement.min() >= 0.8, agreement
    # each face's edge embedding is nearest to the dense embedding of the same face, not of another person
    # (dlib's impostor cosines sit near 0.8, so agreement alone would not show this)
    assert (np.argmax(e @ d.T, axis=1) == np.arange(len(e))).all()


def test_default_is_the_packaged_edge_model():
    """`default` (what `make main` and a new user get) is the shipped edge model: its weights file in
    the package (≤ 5 MB, CC0-derived card naming dlib), the same network as dlib_resnet_edge, and a
    description that names the export recipes of its int8 bundles, which exist."""
    from edgeface import zoo
    from edgeface.core.profiles import load_recipe
    from edgeface.models import get

    entry, edge_entry = get("default"), get("dlib_resnet_edge")
    path = Path(entry.weights_path())
    assert path == Path(edge_entry.weights_path()) and path.stat().st_size <= 5 * 2**20
    assert "CC0" in entry.card.licence and "dlib" in entry.card.source and entry.card.params < 2_000_000
    # an honest card: every set the weights were distilled on, with its terms (a user judges commercial use from it)
    for source, terms in (("CelebA", "non-commercial"), ("All-Age-Faces", "research"), ("LFW", "research")):
        assert source in entry.card.licence and terms in entry.card.licence.split(source, 1)[1].split(")")[0], entry.card.licence
    for recipe in ("x86-openvino-int8-qat", "android-tflite-int8-qat"):
        assert recipe in entry.card.description
        r = load_recipe(recipe)
        assert r.precision == "int8" and r.options["quantizer"] == "pt2e" and r.options["qat"] > 0
    net, card = zoo.load_torch_model("default")
    edge, _ = zoo.load_torch_model("dlib_resnet_edge")
    x = torch.randn(2, 3, *card.input_size)
    with torch.no_grad():
        assert torch.equal(net(x), edge(x))
