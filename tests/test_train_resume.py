"""Resuming at the exact step, teachers inside the loop, augmentation re-made from its draws
(CPU, synthetic faces, a tiny model, a few steps)."""
import numpy as np
import pytest
import torch

from edgeface.train.data import AlignedSet


def _synthetic_set(n_ids=8, per_id=6, size=64, seed=0) -> AlignedSet:
    rng = np.random.default_rng(seed)
    # Each identity is a random base image plus per-photo noise, so there is something to learn.
    base = rng.integers(0, 255, (n_ids, size, size, 3))
    crops = np.clip(np.repeat(base, per_id, 0) + rng.normal(0, 25, (n_ids * per_id, size, size, 3)), 0, 255).astype(np.uint8)
    n = len(crops)
    return AlignedSet(crops, np.repeat(np.arange(n_ids), per_id), [f"id{i}" for i in range(n_ids)], [f"x{i}.jpg" for i in range(n)], np.zeros((n, 4), np.float32), np.zeros((n, 5, 2), np.float32), np.array(["synthetic"] * n))


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _config(**kw):
    from edgeface.train.loop import TrainConfig

    base = dict(arch="mobilenet_v1_a0.25_r64", losses=["multibatch"], epochs=3, p=4, k=3, batches_per_epoch=3, lr=2e-3, device="cpu", eval_lfw=False, warmup_epochs=0.5, checkpoint_every=2, bn_recalibration_batches=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("stop_at", [4, 6])  # mid-epoch, and exactly at an epoch boundary
def test_interrupted_run_resumes_to_bit_identical_weights(tmp_path, stop_at):
    from edgeface.train.loop import train

    torch.set_num_threads(1)
    data = _synthetic_set()
    whole = train(_config(), data, tmp_path / "whole", show_progress=False)
    assert whole["stopped"] is None and len(whole["steps"]) == 9

    first = train(_config(), data, tmp_path / "split", show_progress=False, stop_after_steps=stop_at)
    assert first["stopped"] == "stop_after_steps" and len(first["steps"]) == stop_at
    assert (tmp_path / "split" / "state.safetensors").is_file()
    second = train(_config(), data, tmp_path / "split", resume=True, show_progress=False)
    assert second["stopped"] is None

    # Same per-step losses and bit-identical weights (running BatchNorm statistics included).
    assert [s["loss"] for s in second["steps"]] == [s["loss"] for s in whole["steps"]]
    a, b = _weights(tmp_path / "whole" / "last.safetensors"), _weights(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # The state holds no pickle: safetensors tensors + a JSON document.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "split" / "state.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert "edgeface_training_state" in fh.metadata()
    assert {"rng.augment", "rng.torch"} <= keys and any(k.startswith("model.") for k in keys) and any(k.startswith("opt.") for k in keys)


def test_resume_without_state_is_a_clear_error(tmp_path):
    from edgeface.train.loop import train

    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_config(), _synthetic_set(), tmp_path / "empty", resume=True, show_progress=False)


def test_augmentation_applied_per_row_equals_the_batch():
    """The distributed loop draws augmentations for the global batch and applies each
    rank's rows: the rows must come out as in the one-process batch."""
    from edgeface.train.loop import FaceAugment

    aug = FaceAugment(p_blur=0.5, p_gray=0.5)
    x = torch.from_numpy(_synthetic_set().crops[:12]).permute(0, 3, 1, 2).float()
    u = aug.draw(12, torch.Generator().manual_seed(1))
    whole = aug.apply(x, u)
    halves = torch.cat([aug.apply(x[:6], u[:6]), aug.apply(x[6:], u[6:])])
    assert torch.allclose(whole, halves, atol=1e-4)
    assert not torch.allclose(whole, x)  # it did augment


def test_teacher_crops_reframe_the_training_crop_as_the_teacher_template(rng):
    from edgeface.core.align import ARCFACE_112, align_face
    from edgeface.train.teacher import crop_to_template

    img = rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)
    img = np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(img).permute(2, 0, 1)[None].float(), 5, 1, 2)[0].permute(1, 2, 0)).astype(np.uint8)  # smooth, so resampling differences stay small
    lm = ARCFACE_112 * 1.4 + np.array([45.0, 40.0])  # a face somewhere in the image
    arc = torch.from_numpy(align_face(img, lm, "arcface_112x112", (112, 112))).permute(2, 0, 1)[None].float()
    sph = torch.from_numpy(align_face(img, lm, "sphereface_112x96", (112, 96))).permute(2, 0, 1)[None].float()
    sliced = crop_to_template(arc, "sphereface_112x96", (112, 96))  # a whole-pixel shift: sliced exactly
    assert sliced.data_ptr() == arc[..., 8:104].data_ptr()
    assert (sliced - sph).abs().mean() < 0.5
    warped = crop_to_template(arc, "sphereface_112x96", (112, 96), allow_slice=False)  # the general resampling path
    assert (warped - sph).abs().mean() < 0.5, (warped - sph).abs().mean()
    half = crop_to_template(arc, "sphereface_112x96", (56, 48), allow_slice=False)  # another scale
    small = torch.from_numpy(align_face(img, lm, "sphereface_112x96", (56, 48))).permute(2, 0, 1)[None].float()
    assert (half - small).abs().mean() < 3.0, (half - small).abs().mean()
    with pytest.raises(ValueError, match="cannot be cut"):
        crop_to_template(arc, "no_such_template", (112, 112))


@pytest.mark.parametrize("mode", ["views", "online"])
def test_torch_teacher_in_the_loop_with_every_distillation_loss(tmp_path, mode):
    """A registry model as teacher (stand-in for dlib_resnet): cached views or online, with
    embedding + relational (+ feature, online) distillation; losses logged and finite."""
    from edgeface.train.loop import train
    from edgeface.train.teacher import TorchTeacher
    from edgeface.models.checkpoints import save_checkpoint
    from edgeface import models

    torch.manual_seed(0)
    entry = models.get("mobilenet_v1_a0.25_r64")
    tmodel = models.build_from_card(entry.card).eval()
    save_checkpoint(tmodel, entry.card.replace(name="tiny-teacher"), tmp_path / "teacher.safetensors")
    teacher = TorchTeacher(str(tmp_path / "teacher.safetensors"), device="cpu")
    cfg = _config(epochs=1, teacher_mode=mode, teacher_views=2, relational_weight=1.0, feature_weight=1.0 if mode == "online" else 0.0, distill_extra=3)
    result = train(cfg, _synthetic_set(), tmp_path / mode, teacher=teacher, show_progress=False)
    rec = result["history"][-1]
    expected = {"loss_multibatch", "loss_distill", "loss_relational"} | ({"loss_feature"} if mode == "online" else set())
    assert expected <= set(rec), rec
    assert all(np.isfinite(rec[k]) for k in expected)
    assert 0 < rec["loss_feature" if mode == "online" else "loss_distill"] < 2.5
