"""Correlation statistics and the paper's lambda sampling against direct numpy loops."""
import numpy as np
import pytest
import torch
from torch import nn

from edgeface.compress.correlation import connection_correlations, top_down_order
from edgeface.models.mobilefacenet import ConvBNAct
from edgeface.compress.prune import _split_counts, magnitude_mask, sample_connections


class Tiny(nn.Module):
    """conv (3x3, padded, strided) -> BN -> PReLU, then a 1x1 conv: two prunable layers."""

    def __init__(self):
        super().__init__()
        self.block = ConvBNAct(2, 3, 3, 2, 1)
        self.head = nn.Conv2d(3, 4, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x):
        return self.dw(self.head(self.block(x)))


def _numpy_correlation(x: np.ndarray, y: np.ndarray, k: int, stride: int, pad: int) -> np.ndarray:
    """Loop over output neuron j, input neuron i, tap (ky, kx) and output position p: Pearson r
    over faces with np.corrcoef, averaged over positions where both sides vary."""
    n, cin, h, w = x.shape
    _, cout, oh, ow = y.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((cout, cin, k, k))
    for j in range(cout):
        for i in range(cin):
            for ky in range(k):
                for kx in range(k):
                    rs = []
                    for oy in range(oh):
                        for ox in range(ow):
                            a = xp[:, i, oy * stride + ky, ox * stride + kx]
                            b = y[:, j, oy, ox]
                            if a.std() > 1e-8 and b.std() > 1e-8:
                                rs.append(np.corrcoef(a, b)[0, 1])
                    out[j, i, ky, kx] = np.mean(rs) if rs else 0.0
    return out


def test_connection_correlations_match_numpy_loops():
    torch.manual_seed(0)
    net = Tiny().eval()
    with torch.no_grad():
        net.block.bn.running_mean.uniform_(-0.5, 0.5)
        net.block.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(40, 2, 6, 5)
    # Two batches: the accumulation over batches must equal the one-shot statistic.
    corr = connection_correlations(net, ["block.conv", "head"], [x[:17], x[17:]])
    with torch.no_grad():
        act = net.block(x)
        head = net.head(act)
    ref_conv = _numpy_correlation(x.numpy().astype(np.float64), act.numpy().astype(np.float64), 3, 2, 1)
    ref_head = _numpy_correlation(act.numpy().astype(np.float64), head.numpy().astype(np.float64), 1, 1, 0)
    assert corr["block.conv"].shape == (3, 2, 3, 3) and corr["head"].shape == (4, 3, 1, 1)
    np.testing.assert_allclose(corr["block.conv"], ref_conv, atol=1e-5)
    np.testing.assert_allclose(corr["head"], ref_head, atol=1e-5)
    # The padded border taps see constant zeros at some positions: they must have been excluded,
    # not averaged in as zeros (which would shrink them towards 0).
    assert np.abs(corr["block.conv"]).max() > 0.05


def test_top_down_order_skips_depthwise():
    assert top_down_order(Tiny()) == ["head", "block.conv"]


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("lam", [0.75, 0.5, 1.0])
def test_lambda_sampling_counts_match_direct_computation(keep, lam):
    rng = np.random.default_rng(1)
    r = rng.uniform(-1, 1, (6, 5, 3, 3))
    r[0, :2] = 0.0  # undefined correlations count as positive
    mask = sample_connections(r, keep, lam, np.random.default_rng(2))
    assert mask.shape == r.shape and mask.dtype == bool
    flat, mflat = r.reshape(6, -1), mask.reshape(6, -1)
    for j in range(6):
        for sign in (flat[j] >= 0, flat[j] < 0):
            idx = np.flatnonzero(sign)
            k = len(idx)
            if k == 0:
                continue
            # Direct: sort by |r|, stronger half = first ceil(k/2), expected counts.
            by_strength = idx[np.argsort(-np.abs(flat[j, idx]), kind="stable")]
            strong, weak = set(by_strength[: (k + 1) // 2]), set(by_strength[(k + 1) // 2 :])
            kept = set(np.flatnonzero(mflat[j]) ) & set(idx)
            n_keep = int(round(keep * k))
            want_strong = min(int(round(lam * keep * k)), len(strong), n_keep)
            want_weak = min(n_keep - want_strong, len(weak))
            want_strong = min(n_keep - want_weak, len(strong))
            assert len(kept & strong) == want_strong, (j, k)
            assert len(kept & weak) == want_weak, (j, k)
            assert len(kept) == n_keep
    assert abs(mask.mean() - keep) < 0.1


def test_lambda_sampling_is_random_within_halves():
    r = np.linspace(0.01, 1, 40)[None, :].repeat(200, 0)  # every neuron: same 40 positive r
    mask = sample_connections(r, 0.5, 0.75, np.random.default_rng(0))
    strong_freq = mask[:, 20:].mean(0)  # the 20 largest |r| are the stronger half
    weak_freq = mask[:, :20].mean(0)
    # 15 of 20 from the strong half, 5 of 20 from the weak, each position equally likely.
    np.testing.assert_allclose(strong_freq, 0.75, atol=0.12)
    np.testing.assert_allclose(weak_freq, 0.25, atol=0.12)


def test_split_counts_and_bad_arguments():
    assert _split_counts(10, 0.5, 0.75) == (5, 4, 1)
    assert _split_counts(10, 0.9, 0.75) == (5, 5, 4)  # strong half too small: rest from the weak
    with pytest.raises(ValueError, match="keep fraction"):
        sample_connections(np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="lambda"):
        sample_connections(np.zeros((2, 2)), 0.5, 1.5)


def test_magnitude_mask_keeps_largest():
    w = torch.tensor([[0.1, -3.0, 0.5, 2.0]])
    assert magnitude_mask(w, 0.5).tolist() == [[False, True, False, True]]
