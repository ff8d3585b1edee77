"""Every loss against a brute-force loop over its pairs/triplets."""
import json
import math

import numpy as np
import pytest
import torch

from edgeface.train import losses as L
from edgeface.train.samplers import PKSampler


def _batch(n=12, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.arange(n) % classes
    return emb, labels


def _unit(v):
    return v / v.norm()


def test_multibatch_matches_loop_over_all_ordered_pairs():
    emb, labels = _batch()
    loss = L.MultibatchLoss(scale=3.0, threshold=2.5)
    got = loss(emb, labels).item()
    terms = []
    for i in range(len(emb)):
        for j in range(len(emb)):
            if i == j:
                continue
            y = 1 if labels[i] == labels[j] else -1
            d = (3.0 * _unit(emb[i]) - 3.0 * _unit(emb[j])).norm().item()
            terms.append(max(0.0, 1 - y * (2.5 - d)))
    assert len(terms) == len(emb) ** 2 - len(emb)  # k^2 - k pairs
    assert got == pytest.approx(np.mean(terms), rel=1e-6)


def test_multibatch_gradient_reaches_threshold_and_embeddings():
    emb, labels = _batch()
    emb.requires_grad_(True)
    loss = L.MultibatchLoss()
    loss(emb, labels).backward()
    assert emb.grad.abs().sum() > 0 and loss.threshold.grad is not None


def test_contrastive_matches_loop():
    emb, labels = _batch(seed=1)
    got = L.ContrastiveLoss(margin=0.8)(emb, labels).item()
    terms = []
    for i in range(len(emb)):
        for j in range(len(emb)):
            if i != j:
                d = (_unit(emb[i]) - _unit(emb[j])).norm().item()
                terms.append(0.5 * d * d if labels[i] == labels[j] else 0.5 * max(0.0, 0.8 - d) ** 2)
    assert got == pytest.approx(np.mean(terms), rel=1e-6)


def test_batch_hard_triplet_matches_loop_over_triplets():
    emb, labels = _batch(seed=2)
    got = L.BatchHardTripletLoss(margin=0.3)(emb, labels).item()
    per_anchor = []
    n = len(emb)
    for a in range(n):
        best = None
        # The batch-hard loss of an anchor is the largest loss over all its (p, n) triplets.
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for q in range(n):
                if labels[q] == labels[a]:
                    continue
                dap = (_unit(emb[a]) - _unit(emb[p])).norm().item()
                dan = (_unit(emb[a]) - _unit(emb[q])).norm().item()
                v = max(0.0, dap - dan + 0.3)
                best = v if best is None else max(best, v)
        per_anchor.append(best)
    assert got == pytest.approx(np.mean(per_anchor), rel=1e-6)


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_margin_heads_match_per_sample_formula(kind):
    emb, labels = _batch(seed=3)
    head = L.MarginHead(emb.shape[1], 4, kind, s=16.0).double()
    got = head(emb, labels).item()
    w = head.weight.detach()
    terms = []
    for i in range(len(emb)):
        logits = []
        for c in range(4):
            cos = float(_unit(emb[i]) @ _unit(w[c]))
            if c == labels[i]:
                if kind == "arcface":
                    th = math.acos(cos)
                    cos = math.cos(th + 0.5) if th + 0.5 < math.pi else cos - 0.5 * math.sin(0.5)
                else:
                    cos = cos - 0.35
            logits.append(16.0 * cos)
        m = max(logits)
        terms.append(-(logits[int(labels[i])] - m - math.log(sum(math.exp(v - m) for v in logits))))
    assert got == pytest.approx(np.mean(terms), rel=1e-6)


def test_deepid2_is_softmax_plus_weighted_contrastive():
    emb, labels = _batch(seed=4)
    joint = L.JointIdentificationVerification(emb.shape[1], 4, weight=0.1).double()
    fc = joint.ident.fc
    ce = torch.nn.functional.cross_entropy(fc(emb), labels).item()
    assert joint(emb, labels).item() == pytest.approx(ce + 0.1 * L.ContrastiveLoss()(emb, labels).item(), rel=1e-9)


@pytest.mark.parametrize("kind", ["cosine", "l2"])
def test_distillation_matches_loop(kind):
    emb, _ = _batch(seed=5)
    teacher = torch.randn(len(emb), emb.shape[1], dtype=torch.float64)
    loss = L.DistillationLoss(emb.shape[1], emb.shape[1], kind, pairwise=0.5)
    got = loss(emb, teacher).item()
    n = len(emb)
    direct = []
    for i in range(n):
        s, t = _unit(emb[i]), _unit(teacher[i])
        direct.append(1 - float(s @ t) if kind == "cosine" else float((s - t).pow(2).sum()))
    pair = [(float(_unit(emb[i]) @ _unit(emb[j])) - float(_unit(teacher[i]) @ _unit(teacher[j]))) ** 2 for i in range(n) for j in range(n) if i != j]
    assert got == pytest.approx(np.mean(direct) + 0.5 * np.mean(pair), rel=1e-6)


def test_distillation_projects_to_teacher_size():
    loss = L.DistillationLoss(64, 128)
    assert loss(torch.randn(5, 64), torch.randn(5, 128)).ndim == 0


def test_build_loss_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown loss"):
        L.build_loss("hinge-ish", 8, 3)


def test_pk_sampler_yields_p_by_k_batches():
    labels = np.repeat(np.arange(40), np.r_[[20] * 20, [3] * 15, [1] * 5])
    s = PKSampler(labels, p=8, k=4, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 35 // 8
    for b in batches:
        assert b.shape == (32,)
        ids, counts = np.unique(labels[b], return_counts=True)
        assert len(ids) == 8 and (counts == 4).all()
        assert not set(ids) & set(range(35, 40))  # singletons never drawn (min_images=2)
    # identities with 3 images: each image appears, one repeated
    short = PKSampler(labels, p=2, k=4, short="skip")
    assert set(short.identities) == set(range(20))


def test_pk_sampler_refuses_too_few_identities():
    with pytest.raises(ValueError, match="identities qualify"):
        PKSampler(np.repeat(np.arange(3), 5), p=4, k=2)


def test_relational_distillation_matches_loop_and_ignores_embedding_sizes():
    emb, _ = _batch(seed=6)  # (12, 6)
    teacher = torch.randn(len(emb), 10, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    got = L.RelationalDistillationLoss()(emb, teacher).item()
    n = len(emb)
    pair = [(float(_unit(emb[i]) @ _unit(emb[j])) - float(_unit(teacher[i]) @ _unit(teacher[j]))) ** 2 for i in range(n) for j in range(n) if i != j]
    assert len(pair) == n * n - n
    assert got == pytest.approx(np.mean(pair), rel=1e-9)
    # A student whose similarities equal the teacher's costs nothing, whatever its size.
    rot = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))[0]
    assert L.RelationalDistillationLoss()(teacher @ rot, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_feature_distillation_matches_loop_over_positions():
    g = torch.Generator().manual_seed(8)
    s_map = torch.randn(3, 5, 4, 4, generator=g, dtype=torch.float64)  # student 4x4 grid, 5 channels
    t_map = torch.randn(3, 7, 2, 2, generator=g, dtype=torch.float64)  # teacher 2x2 grid, 7 channels
    loss = L.FeatureDistillationLoss(5, 7).double()
    got = loss(s_map, t_map).item()
    w = loss.adapter.weight.detach()[:, :, 0, 0]  # (7, 5)
    terms = []
    for n in range(3):
        for y in range(2):
            for x in range(2):
                block = s_map[n, :, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].reshape(5, -1).mean(1)  # the 4x4 grid pooled to 2x2
                a = w @ block
                t = t_map[n, :, y, x]
                terms.append(1 - float(a @ t) / (float(a.norm()) * float(t.norm())))
    assert got == pytest.approx(np.mean(terms), rel=1e-9)
    # Gradients reach the adapter and the student map; shape errors are named.
    s_map.requires_grad_(True)
    loss(s_map, t_map).backward()
    assert loss.adapter.weight.grad.abs().sum() > 0 and s_map.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="4-D feature maps"):
        loss(torch.randn(3, 5), t_map)


def test_pk_sampler_state_continues_the_exact_batch_sequence():
    labels = np.repeat(np.arange(30), 6)
    a = PKSampler(labels, p=4, k=3, batches_per_epoch=5, seed=3)
    a.start_epoch()
    first = [a.next_batch() for _ in range(3)]
    state = json.loads(json.dumps(a.state_dict()))  # the state survives JSON (it is stored so)
    rest_a = [a.next_batch() for _ in range(12)]  # crosses identity-order reshuffles
    b = PKSampler(labels, p=4, k=3, batches_per_epoch=5, seed=99)
    b.load_state_dict(state)
    rest_b = [b.next_batch() for _ in range(12)]
    assert all(np.array_equal(x, y) for x, y in zip(rest_a, rest_b))
    assert all(len(np.unique(labels[x])) == 4 for x in first + rest_a)
    fresh = PKSampler(labels, p=4, k=3, batches_per_epoch=5, seed=99)  # the same seed without the state: another sequence
    assert not all(np.array_equal(x, y) for x, y in zip(rest_a, [fresh.next_batch() for _ in range(12)]))
