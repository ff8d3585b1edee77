"""dlib's face-recognition ResNet (CC0) as a PyTorch module, read from dlib's own model file.

dlib's `dlib_face_recognition_resnet_model_v1.dat` (Davis King, public domain / CC0, shipped by
the PyPI package `face-recognition-models`) is the `anet_type` network of dlib's
dnn_face_recognition_ex.cpp: a 7x7/2 conv, 3x3/2 max pool, residual stages of 32/64/128/256
channels (29 conv layers), global average pooling and a 128-d fully connected layer without
bias. Its published LFW accuracy is 99.38 %.

This module has two halves:

* :func:`read_dlib_resnet` parses dlib's binary serialization format (``dlib/serialize.h``,
  ``dlib/dnn/core.h``, ``layers.h``, ``input.h``, ``loss.h``) with numpy only: no dlib needed,
  nothing executed from the file. Every version tag, shape and layer parameter is checked
  against the architecture, so a different or damaged file is refused with the offset and
  what was expected there.
* :class:`DlibResNet` is the same network in PyTorch. Three dlib rules matter for parity:
  strided convolutions and pools have **no padding** (dlib's default padding is k/2 only for
  stride 1); dlib's ``affine`` layers are per-channel ``gamma * x + beta`` (frozen batch norm);
  and dlib's ``add_prev`` adds tensors of **different shapes** by zero-padding the smaller one
  (channels and the bottom/right border): the down-sampling residuals add a 32-channel skip to
  a 64-channel branch, and at 8x8 -> 3x3 / 4x4 the branch is smaller than the pooled skip.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.card import ModelCard

# Stage layout of anet_type, input side first: (channels, number of residual blocks, first one down-samples).
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
INPUT_SIZE = 150


# sha256 of face_recognition_models 0.3.0's dlib_face_recognition_resnet_model_v1.dat: the one
# file this port is verified against (parity tests, template fit, accuracy in the card).
DLIB_RESNET_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized's defaults, also stored in the file

CARD = ModelCard(
    name="dlib_resnet",
    arch="dlib_resnet",
    input_size=(INPUT_SIZE, INPUT_SIZE),
    embedding_size=128,
    template="dlib_150x150",
    color_order="RGB",
    mean=DLIB_MEAN_RGB,
    std=(256.0, 256.0, 256.0),
    licence="CC0 1.0 (public domain): Davis King's dlib face recognition model, as shipped by the PyPI package face-recognition-models",
    description="dlib's face-recognition ResNet (29 conv layers, 150x150 RGB, 128-d), ported to PyTorch from dlib's own file",
    source="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat (sha256 55533b28a958...)",
    arch_kwargs={"input_size": [INPUT_SIZE, INPUT_SIZE], "embedding_size": 128},
)


def dlib_model_files() -> tuple[Path, Path]:
    """(5-point shape predictor, ResNet descriptor) from the installed face_recognition_models
    package, located without importing it (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib_resnet needs the package face-recognition-models (`pip install face-recognition-models`); it was not found")
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    sp, rn = models / "shape_predictor_5_face_landmarks.dat", models / "dlib_face_recognition_resnet_model_v1.dat"
    for f in (sp, rn):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: dlib model file missing from face_recognition_models")
    return sp, rn


def dlib_resnet_weights() -> str:
    """The safetensors copy of dlib's weights (with CARD), converted once from the installed
    package's .dat after checking its sha256; later calls return the cached file."""
    from ..core.cache import cache_dir
    from ..core.digest import file_sha256
    from .checkpoints import save_checkpoint

    cached = cache_dir("weights") / f"dlib_resnet-{DLIB_RESNET_SHA256[:12]}.safetensors"
    if cached.is_file():
        return str(cached)
    dat = dlib_model_files()[1]
    digest = file_sha256(dat)
    if digest != DLIB_RESNET_SHA256:
        raise DlibFormatError(f"{dat}: sha256 {digest[:16]}... is not the dlib face-recognition ResNet this port was verified on ({DLIB_RESNET_SHA256[:16]}...)")
    import torch

    state, mean = read_dlib_resnet(dat)
    if not np.allclose(mean, DLIB_MEAN_RGB, atol=1e-3):
        raise DlibFormatError(f"{dat}: input mean {mean} differs from the card's {DLIB_MEAN_RGB}")
    model = build_dlib_resnet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    save_checkpoint(model.eval(), CARD, cached, extra={"converted_from": str(dat), "converted_from_sha256": digest})
    return str(cached)


class DlibFormatError(ValueError):
    """The file is not the dlib face-recognition ResNet this reader knows."""


class _Reader:
    """dlib's serialization primitives over a bytes buffer (serialize.h)."""

    def __init__(self, data: bytes, name: str):
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: not dlib's face-recognition ResNet: {what} (at byte {self.pos})")

    def int(self) -> int:
        # 1 control byte: low 4 bits = number of little-endian value bytes, 0x80 = negative.
        if self.pos >= len(self.data):
            raise self.fail("file ends early")
        ctrl = self.data[self.pos]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        raw = self.data[self.pos + 1 : self.pos + 1 + size]
        if len(raw) != size:
            raise self.fail("file ends early")
        self.pos += 1 + size
        value = int.from_bytes(raw, "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        # float_details: mantissa (int64) * 2**exponent (int16), each as an int above.
        mantissa = self.int()
        exponent = self.int()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        ch = self.data[self.pos : self.pos + 1]
        if ch not in (b"0", b"1"):
            raise self.fail(f"expected a bool ('0'/'1'), found {ch!r}")
        self.pos += 1
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 256:
            raise self.fail(f"implausible string length {n}")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII version string") from None

    def expect_version(self, allowed: tuple[int, ...], what: str) -> int:
        v = self.int()
        if v not in allowed:
            raise self.fail(f"{what} version {v}, expected one of {allowed}")
        return v

    def tensor(self) -> np.ndarray:
        # resizable_tensor v2: dims as 4 ints, then raw little-endian float32 (tensor.h).
        self.expect_version((2,), "tensor")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        nbytes = 4 * count
        if self.pos + nbytes > len(self.data):
            raise self.fail(f"tensor of shape {shape} runs past the end of the file")
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32).reshape(shape)
        self.pos += nbytes
        return arr

    def alias(self) -> tuple[int, int, int, int]:
        self.expect_version((1,), "alias_tensor")
        return tuple(self.int() for _ in range(4))


@dataclass
class DlibLayer:
    """One layer's details as stored in the file (kind = dlib's layer class without the version)."""

    kind: str
    params: dict = field(default_factory=dict)


def _architecture_outer_to_inner() -> list[str]:
    """The wrapper nodes of anet_type from the loss inwards: 'L' = add_layer, 'T' = tag, 'S' = skip.

    dlib writes each wrapper's version before its sub-network, so the file starts with the
    whole chain of wrapper versions, then the input layer, then each layer's details from
    the input side outwards."""

    def block() -> list[str]:  # BN<con<relu<BN<con<...>>>>>: affine, con, relu, affine, con
        return ["L"] * 5

    def ares() -> list[str]:  # relu<add_prev1<block<tag1<...>>>>
        return ["L", "L"] + block() + ["T"]

    def ares_down() -> list[str]:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<...>>>>>>>
        return ["L", "L", "L", "S", "T"] + block() + ["T"]

    nodes = ["L", "L"]  # fc_no_bias, avg_pool_everything
    for channels, count, down in reversed(STAGES):
        stage = []
        for i in range(count):
            stage.append(ares_down() if (down and i == 0) else ares())
        for part in reversed(stage):  # the first block of a stage is the innermost
            nodes += part
    nodes += ["L", "L", "L", "L"]  # max_pool, relu, affine, con (the last sits on the input)
    return nodes


def _read_details(r: _Reader) -> DlibLayer:
    version = r.string()
    if version in ("con_4", "con_5", "con_6"):
        p = {"params": r.tensor(), "num_filters": r.int(), "nr": r.int(), "nc": r.int(), "stride_y": r.int(), "stride_x": r.int(), "padding_y": r.int(), "padding_x": r.int()}
        p["filters"], p["biases"] = r.alias(), r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.float()
        p["use_bias"] = r.bool() if version in ("con_5", "con_6") else True
        if version == "con_6":
            r.bool()
        return DlibLayer("con", p)
    if version in ("affine_", "affine_2"):
        p = {"params": r.tensor(), "gamma": r.alias(), "beta": r.alias(), "mode": r.int()}
        p["disabled"] = r.bool() if version == "affine_2" else False
        return DlibLayer("affine", p)
    if version in ("relu_", "relu_2"):
        return DlibLayer("relu", {"disabled": r.bool() if version == "relu_2" else False})
    if version in ("max_pool_2", "avg_pool_2"):
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(version[:-2], {k: r.int() for k in keys})
    if version == "add_prev_":
        return DlibLayer("add_prev")
    if version in ("fc_2", "fc_3"):
        p = {"num_outputs": r.int(), "num_inputs": r.int(), "params": r.tensor()}
        p["weights"], p["biases"] = r.alias(), r.alias()
        p["bias_mode"] = r.int()
        for _ in range(4):
            r.float()
        p["use_bias"] = r.bool() if version == "fc_3" else True
        return DlibLayer("fc", p)
    raise r.fail(f"unexpected layer {version!r}")


def read_dlib_layers(path: str | Path) -> tuple[dict, list[DlibLayer]]:
    """Parse the file: (input layer settings, layer details from the input side outwards)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), str(path))
    r.expect_version((1,), "add_loss_layer")
    loss = r.string()
    if loss not in ("loss_metric_", "loss_metric_2"):
        raise r.fail(f"loss layer {loss!r}, expected loss_metric")
    if loss == "loss_metric_2":
        r.float(), r.float()  # margin, distance threshold: training-only
    nodes = _architecture_outer_to_inner()
    versions = []
    for i, kind in enumerate(nodes):
        innermost = i == len(nodes) - 1
        versions.append(r.expect_version((2, 3) if innermost else ((1, 2) if kind == "L" else (1,)), f"wrapper {i} ({kind})"))
    if r.string() != "input_rgb_image_sized":
        raise r.fail("input layer is not input_rgb_image_sized")
    inp = {"avg_red": r.float(), "avg_green": r.float(), "avg_blue": r.float(), "nr": r.int(), "nc": r.int()}
    if (inp["nr"], inp["nc"]) != (INPUT_SIZE, INPUT_SIZE):
        raise r.fail(f"input is {inp['nr']}x{inp['nc']}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    layers = []
    for i in range(len(nodes) - 1, -1, -1):
        if nodes[i] != "L":
            continue  # tags and skips carry nothing after their sub-network
        layers.append(_read_details(r))
        r.bool(), r.bool(), r.bool()  # setup called, gradient stale, output disabled
        r.tensor(), r.tensor()  # x_grad, cached_output (empty in a saved model)
        if i == len(nodes) - 1:
            r.tensor()  # grad_final
            if versions[i] >= 3:
                r.int()  # sample expansion factor
        elif versions[i] == 2:
            r.tensor()  # params_grad
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unread bytes after the network")
    return inp, layers


def read_dlib_resnet(path: str | Path) -> tuple[dict[str, np.ndarray], tuple[float, float, float]]:
    """Weights of :class:`DlibResNet` (state-dict names -> float32 arrays) and dlib's per-channel
    input mean (R, G, B); dlib feeds (pixel - mean) / 256."""
    inp, layers = read_dlib_layers(path)
    name = str(path)
    state: dict[str, np.ndarray] = {}
    queue = list(layers)

    def take(kind: str, **checks) -> DlibLayer:
        if not queue:
            raise DlibFormatError(f"{name}: the file has fewer layers than dlib's face ResNet")
        layer = queue.pop(0)
        if layer.kind != kind:
            raise DlibFormatError(f"{name}: expected a {kind} layer, found {layer.kind} (layer {len(layers) - len(queue)})")
        for key, want in checks.items():
            if layer.params.get(key) != want:
                raise DlibFormatError(f"{name}: {kind} layer {len(layers) - len(queue)} has {key}={layer.params.get(key)}, expected {want}")
        return layer

    def conv(prefix: str, cin: int, cout: int, k: int, stride: int) -> None:
        layer = take("con", num_filters=cout, nr=k, nc=k, stride_y=stride, stride_x=stride, padding_y=0 if stride != 1 else k // 2, padding_x=0 if stride != 1 else k // 2)
        p = layer.params["params"].reshape(-1)
        nw = cout * cin * k * k
        if layer.params["filters"] != (cout, cin, k, k) or p.size != nw + (cout if layer.params["use_bias"] else 0):
            raise DlibFormatError(f"{name}: conv {prefix} has filters {layer.params['filters']}, expected {(cout, cin, k, k)}")
        state[f"{prefix}.weight"] = p[:nw].reshape(cout, cin, k, k)
        state[f"{prefix}.bias"] = p[nw:] if layer.params["use_bias"] else np.zeros(cout, np.float32)

    def affine(prefix: str, channels: int) -> None:
        layer = take("affine", disabled=False)
        p = layer.params["params"].reshape(-1)
        if p.size != 2 * channels:
            raise DlibFormatError(f"{name}: affine {prefix} has {p.size} values, expected {2 * channels}")
        # Frozen batch norm that computes exactly gamma * x + beta: mean 0, var 1 - eps.
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = p[:channels], p[channels:]
        state[f"{prefix}.running_mean"] = np.zeros(channels, np.float32)
        state[f"{prefix}.running_var"] = np.full(channels, 1.0 - BN_EPS, np.float32)

    conv("stem.conv", 3, 32, 7, 2)
    affine("stem.bn", 32)
    take("relu", disabled=False)
    take("max_pool", nr=3, nc=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
    cin = 32
    index = 0
    for channels, count, down in STAGES:
        for i in range(count):
            is_down = down and i == 0
            prefix = f"blocks.{index}"
            conv(f"{prefix}.conv1", cin, channels, 3, 2 if is_down else 1)
            affine(f"{prefix}.bn1", channels)
            take("relu", disabled=False)
            conv(f"{prefix}.conv2", channels, channels, 3, 1)
            affine(f"{prefix}.bn2", channels)
            if is_down:
                take("avg_pool", nr=2, nc=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
            take("add_prev")
            take("relu", disabled=False)
            cin = channels
            index += 1
    take("avg_pool", nr=0, nc=0, stride_y=1, stride_x=1, padding_y=0, padding_x=0)
    fc = take("fc", num_outputs=128, num_inputs=256, bias_mode=1)  # FC_NO_BIAS
    state["fc.weight"] = fc.params["params"].reshape(256, 128).T.copy()  # dlib computes x @ W
    if queue:
        raise DlibFormatError(f"{name}: {len(queue)} layers more than dlib's face ResNet")
    return state, (inp["avg_red"], inp["avg_green"], inp["avg_blue"])


BN_EPS = 1e-5


def _torch_module():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """dlib's add_prev: the sum over the larger shape, the smaller tensor zero-padded at
        the end of the channel, row and column axes (cpu_dlib.cpp, add)."""
        if a.shape == b.shape:
            return a + b
        c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

        def grow(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

        return grow(a) + grow(b)

    class ResidualBlock(nn.Module):
        def __init__(self, cin: int, cout: int, down: bool):
            super().__init__()
            stride = 2 if down else 1
            self.down = down
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if down else 1)
            self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
            self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            skip = F.avg_pool2d(x, 2, 2) if self.down else x
            return F.relu(add_zero_padded(skip, y))

    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 32, 7, 2, 0)
            self.bn = nn.BatchNorm2d(32, eps=BN_EPS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(F.relu(self.bn(self.conv(x))), 3, 2)

    class DlibResNet(nn.Module):
        """dlib's anet_type: (N, 3, 150, 150) RGB normalised as (x - mean) / 256 -> (N, 128).

        ``widths`` overrides each block's inner (conv1 output) width, which is what channel
        pruning removes; the residual widths stay dlib's."""

        def __init__(self, input_size=(INPUT_SIZE, INPUT_SIZE), embedding_size: int = 128, widths: list[int] | None = None):
            super().__init__()
            if tuple(input_size) != (INPUT_SIZE, INPUT_SIZE):
                raise ValueError(f"dlib_resnet takes {INPUT_SIZE}x{INPUT_SIZE} crops, not {tuple(input_size)}")
            self.stem = Stem()
            blocks = []
            cin = 32
            for channels, count, down in STAGES:
                for i in range(count):
                    blocks.append(ResidualBlock(cin, channels, down and i == 0))
                    cin = channels
            if widths is not None:
                if len(widths) != len(blocks):
                    raise ValueError(f"widths needs {len(blocks)} values, got {len(widths)}")
                for block, width in zip(blocks, widths):
                    _narrow_block(block, int(width))
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, embedding_size, bias=False)

        def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            """(embedding, [stem output, each stage's output]) in one pass, for feature distillation."""
            y = self.stem(x)
            feats = [y]
            index = 0
            for _, count, _ in STAGES:
                for _ in range(count):
                    y = self.blocks[index](y)
                    index += 1
                feats.append(y)
            return self.fc(y.mean(dim=(2, 3))), feats

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.blocks(self.stem(x))
            return self.fc(y.mean(dim=(2, 3)))

    def _narrow_block(block: ResidualBlock, width: int) -> None:
        cin, cout = block.conv1.in_channels, block.conv2.out_channels
        block.conv1 = nn.Conv2d(cin, width, 3, block.conv1.stride, block.conv1.padding)
        block.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        block.conv2 = nn.Conv2d(width, cout, 3, 1, 1)

    return DlibResNet


def build_dlib_resnet(**kw):
    """Registry builder: arch_kwargs may carry `widths` (a pruned network's inner widths)."""
    cls = _torch_module()
    return cls(input_size=tuple(kw.get("input_size", (INPUT_SIZE, INPUT_SIZE))), embedding_size=kw.get("embedding_size", 128), widths=kw.get("widths"))

