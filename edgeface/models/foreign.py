"""Foreign models: a face embedder the kit did not define, brought in by the user.

Three ways in, each with a model card (core.card) that says how to feed it:
- a PyTorch module by import path, `my_pkg.nets:build` (a factory called with no arguments, or a
  module instance), weights from `--weights W.safetensors` (safetensors only: no pickle is read);
- a `torch.export` program saved with `torch.export.save` (`.pt2`), loaded with
  `torch.export.load` under `no_pickle()`: the PT2 archive stores its graph as JSON and its
  tensors as raw bytes, but torch falls back to full unpickling for tensor subclasses, pickled
  constants and opaque objects (`weights_only=False`, `pickle.loads`); here every such fallback
  is refused, so a hostile .pt2 fails to load instead of running code;
- an ONNX file (the export layer reads it: converters wrap its bare float network into the kit's
  uint8 NHWC graph).

`describe()` reads what the graph itself says (input size and layout, the embedding size by
running it) and `new_card()` writes the card, so every command takes the model afterwards with
`--card` (or the `<file>.card.json` beside a .pt2 / .onnx file).
"""
from __future__ import annotations

import contextlib
import importlib
import re
import sys
from pathlib import Path

import numpy as np

from ..core.card import ModelCard

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
PT2_SUFFIX = ".pt2"
CARD_SUFFIX = ".card.json"


def is_import_path(spec: str) -> bool:
    """`pkg.module:attr` that is not a file here."""
    return bool(IMPORT_PATH.match(spec)) and not Path(spec).exists()


def is_foreign_torch(spec: str) -> bool:
    """A user's module by import path or a torch.export .pt2 file."""
    return is_import_path(spec) or Path(spec).suffix.lower() == PT2_SUFFIX


def sidecar_card(path: str | Path) -> Path:
    """Where `edgeface card new` puts the card of a model file: model.pt2 -> model.card.json."""
    return Path(path).with_suffix(CARD_SUFFIX)


def find_card(spec: str, card: str | ModelCard | None) -> ModelCard | None:
    """The card given (a ModelCard or a JSON path), else the sidecar of a model file, else None."""
    from ..core.card import read_card_file

    if isinstance(card, ModelCard):
        return card
    if card:
        return read_card_file(card)
    if not is_import_path(spec) and sidecar_card(spec).is_file():
        return read_card_file(sidecar_card(spec))
    return None


# --------------------------------------------------------------------------- loading


def load_safetensors_weights(model, weights: str | Path) -> None:
    """Load a .safetensors state dict into `model`, strictly (every key, every shape)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(weights)
    if path.suffix != ".safetensors":
        raise ValueError(f"--weights {path}: weights are read from .safetensors files only (a .pt/.pth pickle can run code when read); "
                         "convert once where you trust the file: safetensors.torch.save_file(model.state_dict(), 'W.safetensors')")
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"--weights {path}: not a readable safetensors file ({exc})") from None
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{label} {keys[:5]}{' ...' if len(keys) > 5 else ''}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape differs for", wrong)) if keys]
        raise ValueError(f"--weights {path} does not fit the module: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def build_from_import_path(spec: str, weights: str | Path | None = None):
    """The nn.Module `pkg.module:attr` names (called with no arguments when it is a factory or a
    class), in eval mode, with `weights` loaded when given."""
    from torch import nn

    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{spec}: cannot import {module_name!r} ({exc}); is its folder on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{spec}: {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    if not isinstance(model, nn.Module):
        raise ValueError(f"{spec}: expected an nn.Module or a factory returning one, got {type(model).__name__}")
    if weights:
        load_safetensors_weights(model, weights)
    return model.eval()


@contextlib.contextmanager
def no_pickle():
    """While active: torch.load only with weights_only=True, pickle.loads and torch's own object
    unpickler refuse. torch.export.load takes those fallbacks for tensor subclasses, pickled
    constants and opaque objects; a face embedder's program needs none of them."""
    import pickle

    import torch

    real_load, real_obj = torch.load, torch._C._pickle_load_obj

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("refused: this file holds a pickled object (it could run code when read)")

    class _Pickle:  # the pickle module as torch's PT2 reader sees it, without loads
        def __getattr__(self, name):
            return refuse if name in ("loads", "load") else getattr(pickle, name)

    pkg = sys.modules.get("torch.export.pt2_archive._package")
    if pkg is None:
        import torch.export.pt2_archive._package as pkg
    real_pickle = pkg.pickle
    torch.load, torch._C._pickle_load_obj, pkg.pickle = safe_load, refuse, _Pickle()
    try:
        yield
    finally:
        torch.load, torch._C._pickle_load_obj, pkg.pickle = real_load, real_obj, real_pickle


def load_exported_program(path: str | Path):
    """torch.export.load under no_pickle(); a refused or unreadable file raises ValueError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with no_pickle():
            return torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch's reader raises many kinds; all mean "cannot use this file"
        raise ValueError(f"{path}: not a loadable torch.export program ({type(exc).__name__}: {str(exc)[:300]})") from None


def program_input_shape(program) -> list[int | None]:
    """The first user input's shape as the program was exported (None: a dynamic dimension)."""
    import torch

    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    return [None if isinstance(d, torch.SymInt) else int(d) for d in node.meta["val"].shape]


def _exported_net_class():
    from torch import nn

    class ExportedNet(nn.Module):
        """A torch.export program's module as a plain nn.Module: eval()/train() are no-ops (the
        program was captured in one mode), everything else calls through."""

        def __init__(self, program, source: str):
            super().__init__()
            self.program = program.module()
            self.source = source
            self.input_shape = program_input_shape(program)

        def train(self, mode: bool = True):
            self.training = False
            return self

        def forward(self, x):
            return self.program(x)

    return ExportedNet


def load_pt2(path: str | Path):
    """The nn.Module of a .pt2 file. Its batch dimension must be dynamic: the kit embeds batches
    and exports graphs with a free batch (torch.export.Dim on dimension 0 when saving)."""
    program = load_exported_program(path)
    shape = program_input_shape(program)
    if len(shape) != 4:
        raise ValueError(f"{path}: the program's input has shape {shape}; expected a 4-d face batch")
    if shape[0] is not None:
        raise ValueError(f"{path}: the program was exported for batch {shape[0]} only; export it with a dynamic batch: "
                         "torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))")
    return _exported_net_class()(program, str(path))


def load_foreign_torch(spec: str, weights: str | None = None, card: str | ModelCard | None = None):
    """(nn.Module in eval mode, ModelCard) of a user's module by import path or a .pt2 file."""
    found = find_card(spec, card)
    if found is None:
        where = "" if is_import_path(spec) else f" and no {sidecar_card(spec).name} beside it"
        raise ValueError(f"{spec}: a foreign model needs its card (--card CARD.json{where}): write one with "
                         f"`edgeface card new {spec}{' --weights ' + str(weights) if weights else ''} --template T --mean M --std S`")
    if is_import_path(spec):
        net = build_from_import_path(spec, weights)
    else:
        if weights:
            raise ValueError(f"--weights: a .pt2 file carries its own weights ({spec})")
        net = load_pt2(spec)
    return net, found


# --------------------------------------------------------------------------- describing a model


def describe(spec: str, weights: str | None = None, input_size: tuple[int, int] | None = None) -> dict:
    """What the model's graph says about its input and output: {"input_size", "layout",
    "input_dtype", "embedding_size", "format"}. Input size and layout are read from the graph
    (ONNX input, .pt2 program) or, for a module by import path, taken from `input_size`; the
    embedding size is measured by running the model on two different random inputs, which must
    give finite, different outputs."""
    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        return _describe_onnx(path, input_size)
    import torch

    if is_import_path(spec):
        net, fmt, shape = build_from_import_path(spec, weights), "pytorch module (import path)", None
    elif path.suffix.lower() == PT2_SUFFIX:
        net = load_pt2(path)
        fmt, shape = "torch.export program (.pt2)", net.input_shape
    else:
        raise ValueError(f"{spec}: `card new` describes an ONNX file, a .pt2 file or a module by import path (pkg.module:factory)")
    if shape is not None:
        layout, (h, w) = _layout(shape, spec)
        if layout != "NCHW":
            raise ValueError(f"{spec}: the program takes {shape} (NHWC); a PyTorch face embedder here takes normalised NCHW faces")
        if input_size and tuple(input_size) != (h, w):
            raise ValueError(f"{spec}: the graph takes {h}x{w}, not --input-size {input_size[0]}x{input_size[1]}")
    else:
        if input_size is None:
            raise ValueError(f"{spec}: a module does not say its input size: pass --input-size HxW (e.g. 112x112)")
        layout, (h, w) = "NCHW", tuple(input_size)
    x = torch.from_numpy(_probe_inputs(layout, h, w))
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # noqa: BLE001 - the user's module: any failure means this input does not fit
        raise ValueError(f"{spec}: running it on a {list(x.shape)} float input failed ({type(exc).__name__}: {str(exc)[:200]})") from None
    return _check_output(spec, out.detach().float().numpy(), {"format": fmt, "input_size": [h, w], "layout": layout, "input_dtype": "float32"})


def _layout(shape: list, spec) -> tuple[str, tuple[int, int]]:
    if len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise ValueError(f"{spec}: input shape {shape} is not a batch of 3-channel faces (N, 3, H, W) or (N, H, W, 3)")
    layout = "NCHW" if shape[1] == 3 else "NHWC"
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if h is None or w is None:
        raise ValueError(f"{spec}: the input's height and width are dynamic; pass --input-size HxW")
    return layout, (int(h), int(w))


def _probe_inputs(layout: str, h: int, w: int) -> np.ndarray:
    x = np.random.default_rng(0).normal(0.0, 0.5, (2, 3, h, w)).astype(np.float32)
    return x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _check_output(spec, out: np.ndarray, desc: dict) -> dict:
    out = out.reshape(len(out), -1)
    if not np.isfinite(out).all():
        raise ValueError(f"{spec}: the output is not finite on random inputs")
    if np.allclose(out[0], out[1]):
        raise ValueError(f"{spec}: two different inputs give the same output: not a face embedder (or its weights were not loaded)")
    return {**desc, "embedding_size": int(out.shape[1])}


def _describe_onnx(path: Path, input_size) -> dict:
    import onnx

    from ..core.ort_session import onnxruntime_session

    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    m = onnx.load(str(path), load_external_data=False)
    inp = m.graph.input[0]
    if inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
        raise ValueError(f"{path}: takes uint8 faces: an edgeface graph already (its card is in its metadata)")
    shape = [d.dim_value if d.dim_value > 0 else None for d in inp.type.tensor_type.shape.dim]
    if input_size and len(shape) == 4:
        i_h, i_w = (2, 3) if shape[1] == 3 else (1, 2)
        for k, v in ((i_h, input_size[0]), (i_w, input_size[1])):
            if shape[k] is not None and shape[k] != v:
                raise ValueError(f"{path}: the graph takes {shape}, which does not fit --input-size {input_size[0]}x{input_size[1]}")
            shape[k] = v
    layout, (h, w) = _layout(shape, path)
    x = _probe_inputs(layout, h, w)
    sess = onnxruntime_session(str(path))
    if shape[0] is not None:  # a fixed batch: probe one face at a time
        out = np.concatenate([sess.run(None, {inp.name: x[k : k + 1]})[0] for k in range(len(x))])
    else:
        out = sess.run(None, {inp.name: x})[0]
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    return _check_output(path, np.asarray(out, np.float32), {"format": f"onnx (opset {opset})", "input_size": [h, w], "layout": layout,
                                                             "input_dtype": "float32", "batch": shape[0] or "dynamic"})


def new_card(spec: str, *, template: str, mean, std, color_order: str = "RGB", name: str | None = None, weights: str | None = None,
             input_size: tuple[int, int] | None = None, licence: str = "user-supplied weights", description: str = "") -> tuple[ModelCard, dict]:
    """(card, describe()'s findings) for a foreign model: size and embedding size from the graph and
    a run of it, template and normalisation from the user (no defaults: a wrong one is silent)."""
    from ..core.align import TEMPLATES

    if template not in TEMPLATES:
        raise ValueError(f"--template {template!r}: known templates are {', '.join(sorted(TEMPLATES))}")
    found = describe(spec, weights, input_size)
    mean3, std3 = _three(mean, "--mean"), _three(std, "--std")
    stem = spec.partition(":")[0].rsplit(".", 1)[-1] if is_import_path(spec) else Path(spec).stem
    card = ModelCard(name=name or stem, arch=f"foreign:{found['format'].split(' ')[0]}", input_size=tuple(found["input_size"]),
                     embedding_size=found["embedding_size"], template=template, color_order=color_order, mean=mean3, std=std3,
                     licence=licence, description=description or f"{found['format']}, {found['layout']} input", source=str(spec))
    return card, found


def _three(values, flag: str) -> tuple[float, float, float]:
    vals = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise ValueError(f"{flag}: one value or three (per channel), got {len(vals)}")
    return tuple(vals)
