"""Face-embedding losses as small composable pieces (pytorch-metric-learning's split:
a distance, a pair/triplet selection, a reducer), each vectorised over the whole batch.

Every loss here has a brute-force twin in tests/test_train_losses.py that loops over the
pairs or triplets one by one; the two must agree.

Conventions: `emb` is (N, D) student embeddings (not necessarily normalised), `labels`
(N,) integer identities. Pair losses use every ordered pair i != j of the batch (the
multibatch estimate: k^2 - k pairs from k faces).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_distance(emb: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """(N, N) Euclidean distances. The sqrt never sees 0 (clamped to the dtype's tiny, whose
    clamp passes no gradient), so d(i, i) = 0 has a zero rather than infinite gradient."""
    sq = emb.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * emb @ emb.t()).clamp_min(0)
    if squared:
        return d2
    tiny = torch.finfo(d2.dtype).tiny
    return torch.where(d2 > tiny, torch.sqrt(d2.clamp_min(tiny)), torch.zeros_like(d2))


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(same, different) boolean (N, N) masks over ordered pairs i != j."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class MultibatchLoss(nn.Module):
    """Tadmor et al. 2016, "Learning a Metric Embedding for Face Recognition using the
    Multibatch Method": the loss of a pair is a hinge around a distance threshold b,

        l(i, j) = max(0, 1 - y_ij * (b - d(f_i, f_j))),   y_ij = +1 same person, -1 not,

    averaged over all k^2 - k ordered pairs of the batch (an unbiased, O(1/k^2)-variance
    estimate of the all-pairs loss). b is learned with the network. Our embeddings are
    L2-normalised and multiplied by `scale` first (the paper's signatures are unnormalised;
    the scale gives the unit margin room: distances then lie in [0, 2*scale]).
    """

    def __init__(self, scale: float = 4.0, threshold: float = 4.0, learn_threshold: bool = True, normalize: bool = True):
        super().__init__()
        self.scale = scale
        self.normalize = normalize
        t = torch.tensor(float(threshold))
        self.threshold = nn.Parameter(t) if learn_threshold else nn.Buffer(t) if hasattr(nn, "Buffer") else t

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = F.normalize(emb, dim=1) * self.scale if self.normalize else emb
        d = pairwise_distance(x)
        same, diff = pair_masks(labels)
        y = same.float() - diff.float()  # +1, -1; 0 on the diagonal
        loss = F.relu(1 - y * (self.threshold - d))
        offdiag = same | diff
        return loss[offdiag].mean()


class _DistanceMarginLoss(nn.Module):
    """A loss on the batch's pairwise Euclidean distances with a fixed margin, on normalised
    embeddings by default: `distances` gives (d, same, different) for the subclasses."""

    def __init__(self, margin: float, normalize: bool = True):
        super().__init__()
        self.margin = margin
        self.normalize = normalize

    def distances(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.normalize(emb, dim=1) if self.normalize else emb
        return (pairwise_distance(x), *pair_masks(labels))


class ContrastiveLoss(_DistanceMarginLoss):
    """DeepID2's verification signal (Sun et al. 2014) over all ordered pairs i != j:
    same: 1/2 ||f_i - f_j||^2; different: 1/2 max(0, m - ||f_i - f_j||)^2, on normalised
    embeddings by default. Averaged over all pairs."""

    def __init__(self, margin: float = 1.0, normalize: bool = True):
        super().__init__(margin, normalize)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d, same, diff = self.distances(emb, labels)
        pos = 0.5 * d.pow(2)
        neg = 0.5 * F.relu(self.margin - d).pow(2)
        loss = torch.where(same, pos, neg)
        return loss[same | diff].mean()


class BatchHardTripletLoss(_DistanceMarginLoss):
    """Hermans et al. 2017 "batch hard": for each anchor the farthest positive and the
    nearest negative in the batch, max(0, d_ap - d_an + margin), averaged over anchors that
    have both (P x K batches guarantee it for K >= 2)."""

    def __init__(self, margin: float = 0.3, normalize: bool = True):
        super().__init__(margin, normalize)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d, same, diff = self.distances(emb, labels)
        valid = same.any(1) & diff.any(1)
        if not valid.any():
            return emb.sum() * 0.0
        hardest_pos = torch.where(same, d, torch.full_like(d, -float("inf"))).amax(1)
        hardest_neg = torch.where(diff, d, torch.full_like(d, float("inf"))).amin(1)
        return F.relu(hardest_pos - hardest_neg + self.margin)[valid].mean()


class MarginHead(nn.Module):
    """Normalised-softmax classifier head with an additive margin on the target class:
    ArcFace (Deng et al. 2019): s * cos(theta + m); CosFace (Wang et al. 2018): s * (cos(theta) - m).
    Returns the cross-entropy; `logits()` gives the margin-adjusted logits."""

    def __init__(self, embedding_size: int, num_classes: int, kind: str = "arcface", s: float = 32.0, m: float | None = None):
        super().__init__()
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"margin head kind must be arcface or cosface, got {kind!r}")
        self.kind = kind
        self.s = s
        self.m = m if m is not None else (0.5 if kind == "arcface" else 0.35)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).t()

    def logits(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(emb).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        if self.kind == "arcface":
            theta = torch.acos(target)
            # Past pi - m, cos(theta + m) is no longer monotonic; use the CosFace-like
            # fallback of InsightFace (cos(theta) - m sin(m)) there.
            adjusted = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m), target - self.m * math.sin(self.m))
        else:
            adjusted = target - self.m
        out = cos.scatter(1, labels[:, None], adjusted)
        return self.s * out

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels), labels)


class SoftmaxHead(nn.Module):
    """Plain linear softmax identification (DeepID2's identification signal)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(emb), labels)


class JointIdentificationVerification(nn.Module):
    """DeepID2 (Sun et al. 2014): softmax identification + lambda * contrastive verification."""

    def __init__(self, embedding_size: int, num_classes: int, weight: float = 0.05, margin: float = 1.0):
        super().__init__()
        self.ident = SoftmaxHead(embedding_size, num_classes)
        self.verif = ContrastiveLoss(margin)
        self.weight = weight

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.ident(emb, labels) + self.weight * self.verif(emb, labels)


class DistillationLoss(nn.Module):
    """Embedding distillation from a teacher's (N, Dt) embeddings.

    The student's embedding is mapped to the teacher's size by a learned linear layer when
    the sizes differ (kept only for training). kind='cosine': mean(1 - cos(s_i, t_i));
    kind='l2': mean ||s_i/|s_i| - t_i/|t_i| ||^2. With pairwise > 0, also matches the
    batch's similarity structure: pairwise * mean over i != j of (cos(s_i,s_j) - cos(t_i,t_j))^2
    (computed on the student's own embedding, so it needs no projection).
    """

    def __init__(self, student_size: int, teacher_size: int, kind: str = "cosine", pairwise: float = 0.0):
        super().__init__()
        if kind not in ("cosine", "l2"):
            raise ValueError(f"distillation kind must be cosine or l2, got {kind!r}")
        self.kind = kind
        self.pairwise = pairwise
        self.proj = nn.Identity() if student_size == teacher_size else nn.Linear(student_size, teacher_size, bias=False)

    def forward(self, emb: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        s = F.normalize(self.proj(emb), dim=1)
        t = F.normalize(teacher, dim=1)
        if self.kind == "cosine":
            loss = (1 - (s * t).sum(1)).mean()
        else:
            loss = (s - t).pow(2).sum(1).mean()
        if self.pairwise > 0 and len(emb) > 1:
            loss = loss + self.pairwise * pairwise_similarity_loss(emb, teacher)
        return loss


def pairwise_similarity_loss(emb: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """mean over ordered pairs i != j of (cos(s_i, s_j) - cos(t_i, t_j))^2."""
    s = F.normalize(emb, dim=1)
    t = F.normalize(teacher, dim=1)
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    return (s @ s.t() - t @ t.t()).pow(2)[~eye].mean()


class RelationalDistillationLoss(nn.Module):
    """Relational distillation (Park et al. 2019, RKD-angle's simpler cousin; Tung & Mori 2019):
    the student's within-batch cosine-similarity matrix matched to the teacher's,
    mean over ordered pairs i != j of (cos(s_i, s_j) - cos(t_i, t_j))^2.

    It needs no projection (only similarities are compared, so embedding sizes may differ) and
    teaches exactly what verification uses: which faces are close. Teacher embeddings are
    passed already centred by the loop when centring is on (dlib's raw cosines between
    different people are ~0.84; centred they spread over [-1, 1])."""

    def forward(self, emb: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if len(emb) < 2:
            return emb.sum() * 0.0
        return pairwise_similarity_loss(emb, teacher)


class FeatureDistillationLoss(nn.Module):
    """Feature distillation (FitNets, Romero et al. 2015) onto one teacher stage through a
    learned 1x1 convolution (student channels -> teacher channels; kept only for training).

    Student (N, Cs, Hs, Ws) and teacher (N, Ct, Ht, Wt) maps; the larger spatial grid is
    average-pooled to the smaller when they differ (adaptive pooling; both maps must be 4-D). Loss: mean over samples and
    positions of 1 - cos(adapter(s)[n, :, y, x], t[n, :, y, x]) -- per-position channel
    directions, so the teacher's activation scale (arbitrary across networks) does not matter.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.adapter = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        nn.init.kaiming_normal_(self.adapter.weight)

    @staticmethod
    def match_grids(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError(f"feature distillation needs 4-D feature maps, got student {tuple(s.shape)} and teacher {tuple(t.shape)}")
        hs, ws = s.shape[-2:]
        ht, wt = t.shape[-2:]
        h, w = min(hs, ht), min(ws, wt)
        if (hs, ws) != (h, w):
            s = F.adaptive_avg_pool2d(s, (h, w))
        if (ht, wt) != (h, w):
            t = F.adaptive_avg_pool2d(t, (h, w))
        return s, t

    def forward(self, student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
        if student_map.dim() != 4:
            raise ValueError(f"feature distillation needs 4-D feature maps, got student {tuple(student_map.shape)}")
        s, t = self.match_grids(self.adapter(student_map), teacher_map.to(student_map.dtype))
        cos = F.cosine_similarity(s, t, dim=1, eps=1e-8)  # (N, H, W)
        return (1 - cos).mean()


METRIC_LOSSES = {"multibatch": MultibatchLoss, "contrastive": ContrastiveLoss, "triplet": BatchHardTripletLoss}
HEAD_LOSSES = ("arcface", "cosface", "deepid2", "softmax")


def build_loss(name: str, embedding_size: int, num_classes: int) -> nn.Module:
    """One named identity loss: a module called as loss(emb, labels)."""
    if name in METRIC_LOSSES:
        return METRIC_LOSSES[name]()
    if name in ("arcface", "cosface"):
        return MarginHead(embedding_size, num_classes, name)
    if name == "deepid2":
        return JointIdentificationVerification(embedding_size, num_classes)
    if name == "softmax":
        return SoftmaxHead(embedding_size, num_classes)
    raise ValueError(f"unknown loss {name!r}; choose from {sorted(METRIC_LOSSES) + list(HEAD_LOSSES)} (plus --teacher for distillation)")
