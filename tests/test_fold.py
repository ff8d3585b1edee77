"""BatchNorm folding (the int8 paths fold before quantizing): same function, fewer layers."""
import pytest
import torch
from torch import nn

from edgeface.compress.fold import conv_bn_pairs, execution_order, fold_batchnorm
from edgeface.models import build_from_card, get


def _randomise_bn(net: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters (fresh BNs are identities)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("arch", ["mobilefacenet", "mobilenet_v1_a0.25_r64"])
def test_fold_keeps_the_function(arch):
    torch.manual_seed(0)
    card = get(arch).card
    net = build_from_card(card)
    _randomise_bn(net)
    net.eval()
    h, w = card.input_size
    x = torch.randn(3, 3, h, w)
    with torch.no_grad():
        before = net(x)
    n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in net.modules())
    pairs = conv_bn_pairs(net, x[:1])
    folded, count = fold_batchnorm(net, x[:1])
    with torch.no_grad():
        after = folded(x)
    assert count == len(pairs) and count > 0
    left = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    assert left == n_bn - count
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_bn_after_an_activation_is_not_folded():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    _randomise_bn(net)
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = net(x)
    folded, count = fold_batchnorm(net, x)
    assert count == 1 and isinstance(folded[2], nn.BatchNorm2d) and isinstance(folded[4], nn.Identity)
    torch.testing.assert_close(folded(x), before, rtol=1e-5, atol=1e-5)
    assert execution_order(folded, x) == ["0", "3"]
