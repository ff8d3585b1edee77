"""Masks survive retraining, saving/loading and ONNX export; channel pruning = masking."""
import copy

import numpy as np
import pytest
import torch

from edgeface.core.card import ModelCard
from edgeface.compress import channel, finetune, prune
from edgeface.compress.masks import bake_masks, load_pruned, mask_file, save_pruned, zero_masked
from edgeface.models import register_arch
from edgeface.models.mobilefacenet import MobileFaceNet

SMALL = [(2, 16, 1, 2), (2, 16, 1, 1), (2, 32, 1, 2)]  # a 3-bottleneck MobileFaceNet for speed


def _small(seed=0):
    torch.manual_seed(seed)
    net = MobileFaceNet(input_size=(32, 32), embedding_size=16, width=8, setting=SMALL).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


TINY_KW = {"input_size": [32, 32], "embedding_size": 16, "width": 8, "setting": [list(s) for s in SMALL]}
register_arch("tiny_mobilefacenet_test", lambda **kw: MobileFaceNet(input_size=(32, 32), embedding_size=16, width=8, setting=SMALL))
CARD = ModelCard(name="tiny", arch="tiny_mobilefacenet_test", input_size=(32, 32), embedding_size=16, template="arcface_112x112", arch_kwargs=TINY_KW)


def _faces(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_connection_masks_survive_retraining_save_load_and_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    net = _small()
    teacher_net = copy.deepcopy(net)
    faces = _faces(48)
    teacher = finetune.embed(teacher_net, faces, CARD)
    masks, log = prune.prune_connections(
        net, CARD, faces[:32], keep=0.4, method="correlation", steps=[["embedding.conv"], ["conv_expand.conv", "blocks.2.project.conv"]],
        retrain=lambda m, mk: finetune.distill(m, CARD, faces, teacher, mk, epochs=2, batch_size=8, lr=1e-2, show_progress=False),
    )
    assert len(log) == 2 and log[0].retrain_loss_first is not None
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    # Retraining again (high learning rate) must move kept weights but never revive pruned ones.
    finetune.distill(net, CARD, faces, teacher, masks, epochs=2, batch_size=8, lr=1e-2, show_progress=False)
    bake_masks(net)
    for name, m in masks.items():
        w = net.get_submodule(name).weight.detach()
        assert torch.all(w[~m] == 0), name
        assert not torch.equal(w[m], before[name + ".weight"][m]), f"{name} did not train"
        assert 0.35 < m.float().mean() < 0.45
    # Save / load: zeros in the checkpoint, masks in the sidecar, identical outputs.
    path = tmp_path / "pruned.safetensors"
    card = CARD.replace(name="tiny_pruned")
    save_pruned(net, card, masks, path)
    assert mask_file(path).is_file()
    loaded, lcard, lmasks = load_pruned(path)
    assert lcard.name == "tiny_pruned" and set(lmasks) == set(masks)
    for n in masks:
        assert torch.equal(lmasks[n], masks[n])
        assert torch.all(loaded.get_submodule(n).weight[~masks[n]] == 0)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    # Masks hold through a retraining of the loaded model too.
    finetune.distill(loaded, CARD, faces, teacher, lmasks, epochs=1, batch_size=8, lr=1e-2, show_progress=False)
    bake_masks(loaded)
    assert all(torch.all(loaded.get_submodule(n).weight[~m] == 0) for n, m in lmasks.items())
    # Export: every masked weight is exactly zero in the ONNX initialisers (the exporter folds
    # BatchNorm into the conv, which rescales rows but keeps zeros zero).
    from edgeface.compress.evalfast import export_onnx

    export_onnx(loaded, CARD, tmp_path / "pruned.onnx")
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "pruned.onnx")).graph.initializer}
    for n, m in lmasks.items():
        found = [a for a in inits.values() if a.shape == tuple(m.shape) and np.array_equal(a != 0, m.numpy())]
        assert found, f"{n}: no ONNX initialiser has exactly the mask's zero pattern"


def test_magnitude_connection_pruning_without_retraining_keeps_fraction():
    net = _small()
    masks, log = prune.prune_connections(net, CARD, _faces(8), keep=0.25, method="magnitude")
    assert set(masks) == set(prune.top_down_order(net))
    for n, m in masks.items():
        assert abs(m.float().mean().item() - 0.25) < 0.02
        assert torch.all(net.get_submodule(n).weight[~m] == 0)
    with pytest.raises(ValueError, match="unknown pruning method"):
        prune.prune_connections(net, CARD, _faces(8), keep=0.5, method="random")


@pytest.mark.parametrize("method", ["correlation", "magnitude"])
def test_channel_pruning_builds_smaller_network_equal_to_masked(method, tmp_path):
    net = _small()
    x = finetune.to_tensor(_faces(16), CARD)
    acts = channel.expansion_activations(net, [x]) if method == "correlation" else None
    keep = channel.select_channels(net, 0.5, method, acts, min_channels=4)
    assert all(len(v) == max(4, round(0.5 * c)) for v, c in zip(keep.values(), channel.mid_channels(net)))
    masked = copy.deepcopy(net)
    zero_masked(masked, channel.channel_masks(net, keep))
    small = channel.shrink_bottlenecks(copy.deepcopy(net), keep)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(small(x), net(x), atol=1e-3)  # something was removed
    from edgeface.models.complexity import count_mflops, count_params

    assert count_params(small) < count_params(net)
    assert count_mflops(small, (32, 32)) < count_mflops(net, (32, 32))
    # The smaller network round-trips through an ordinary checkpoint (arch mobilefacenet_pruned).
    from edgeface.models.checkpoints import load_checkpoint, save_checkpoint

    card = channel.pruned_card(small, CARD, "tiny_ch", "test")
    assert card.arch == "mobilefacenet_pruned" and card.arch_kwargs["mid_channels"] == channel.mid_channels(small)
    save_checkpoint(small, card, tmp_path / "small.safetensors")
    loaded, lcard = load_checkpoint(tmp_path / "small.safetensors")
    assert lcard.params == count_params(small)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small(x))


def test_greedy_selection_drops_redundant_and_silent_channels():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 4))
    acts = np.concatenate([a, a[:, :1] * 1.0 + 1e-3 * rng.standard_normal((500, 1)), 1e-4 * rng.standard_normal((500, 1))], 1)
    info = acts.std(0)
    info[4] = info[0]  # the duplicate of channel 0 is as "big" as channel 0
    kept = channel.greedy_select(info, np.corrcoef(acts.T), 4)
    assert 5 not in kept  # near-silent channel goes
    assert not ({0, 4} <= set(kept))  # one of the duplicated pair goes


def test_jitter_views_move_and_relight_faces_without_changing_the_input():
    faces = _faces(6, seed=3)
    before = faces.copy()
    rng = np.random.default_rng(0)
    views = finetune.jitter_views(faces, rng)
    assert views.shape == faces.shape and views.dtype == np.uint8
    assert np.array_equal(faces, before), "the training pool must not be changed in place"
    assert all(not np.array_equal(v, f) for v, f in zip(views, faces)), "every face gets a new view"
    # with every range set to zero the view is the face itself
    still = finetune.jitter_views(faces, rng, max_shift=0, max_scale=0, max_degrees=0, max_brightness=0, max_contrast=0)
    assert np.abs(still.astype(int) - faces).max() <= 1


def test_distill_with_teacher_views_and_relations_pulls_the_student_to_the_teacher():
    """With jitter the targets come from the teacher's own view of each face; the relation term
    adds the batch's cosine matrix. A student started elsewhere must move towards the teacher,
    and the options refuse to run without a teacher network."""
    teacher_net, student = _small(seed=0), _small(seed=1)
    faces = _faces(32)
    stale = np.zeros((32, 16), np.float32)  # with teacher views these stored targets must not be used
    eval_faces = _faces(16, seed=9)

    def agreement():
        return float(np.sum(finetune.embed(student, eval_faces, CARD) * finetune.embed(teacher_net, eval_faces, CARD), 1).mean())

    start = agreement()
    steps, states = [], []

    def on_step(step, m):
        # what distill hands the callback; then put the model in eval mode, as an evaluation or export does
        steps.append(step)
        bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
        states.append(m.training and not any(b.training for b in bns))
        m.eval()

    losses = finetune.distill(student, CARD, faces, stale, epochs=6, batch_size=8, lr=5e-3, show_progress=False, teacher_model=teacher_net,
                              jitter=True, relation_weight=1.0, on_step=on_step)
    assert steps == list(range(1, len(losses) + 1))
    assert all(states), "every step trains with frozen batch norms, also after a callback left the model in eval mode"
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert agreement() > start + 0.05, (start, agreement())
    with pytest.raises(ValueError, match="teacher_model"):
        finetune.distill(student, CARD, faces, stale, epochs=1, batch_size=8, show_progress=False, jitter=True)
    with pytest.raises(ValueError, match="teacher embeddings are needed"):
        finetune.distill(student, CARD, faces, None, epochs=1, batch_size=8, show_progress=False)
    # with teacher views no stored targets are needed at all
    finetune.distill(student, CARD, faces, None, epochs=1, batch_size=8, show_progress=False, teacher_model=teacher_net, jitter=True)


def test_distill_mixup_shows_the_teacher_blends_of_the_batch_and_the_rest_real_faces():
    """mixup replaces that fraction of a batch by blends of two of its faces, and the teacher is
    asked about the very same blends (its targets are those of the student's inputs)."""
    teacher_net, student = _small(seed=0), _small(seed=1)
    faces = _faces(8)
    real = finetune.to_tensor(faces, CARD)
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            seen.append(x.clone())
            return self.net(x)

    def matches_a_real_face(x):
        return bool(((real - x[None]).abs().amax(dim=(1, 2, 3)) < 1e-6).any())

    def blends_shown_to_the_teacher(fraction):
        seen.clear()
        finetune.distill(student, CARD, faces, None, epochs=1, batch_size=8, show_progress=False, flip=False,
                         teacher_model=Recorder(teacher_net), relation_weight=1.0, mixup=fraction)
        assert len(seen) == 1 and len(seen[0]) == 8
        return sum(not matches_a_real_face(x) for x in seen[0])

    assert blends_shown_to_the_teacher(0.0) == 0
    # with mixup 1.0 a face blended with itself (the permutation's fixed point) stays real: at most a few
    assert blends_shown_to_the_teacher(1.0) >= 5
    with pytest.raises(ValueError, match="teacher_model"):
        finetune.distill(student, CARD, faces, np.zeros((8, 16), np.float32), epochs=1, batch_size=8, show_progress=False, mixup=0.5)
    with pytest.raises(ValueError, match="mixup is the fraction"):
        finetune.distill(student, CARD, faces, None, epochs=1, batch_size=8, show_progress=False, teacher_model=teacher_net, mixup=1.5)
