"""Registry entries added for training: MobileNet v1 (alpha, rho), Light CNN (MFM 2/1, 3/2), default."""

import pytest
import torch

from edgeface import models
from edgeface.models.complexity import count_mflops, count_params
from edgeface.models.lightcnn import MFM


def test_mfm_2_1_and_3_2_against_elementwise_definition():
    x = torch.randn(2, 6, 3, 3)
    y21 = MFM("2/1")(x)
    assert torch.equal(y21, torch.maximum(x[:, :3], x[:, 3:]))
    y32 = MFM("3/2")(x)
    a, b, c = x[:, :2], x[:, 2:4], x[:, 4:]
    stacked = torch.stack([a, b, c]).sort(0).values  # per element: min, median, max
    assert torch.allclose(y32, torch.cat([stacked[2], stacked[1]], 1))
    with pytest.raises(ValueError):
        MFM("4/3")


@pytest.mark.parametrize("name", ["mobilenet_v1_a0.25_r64", "mobilenet_v1_a0.5_r112", "lightcnn9", "lightcnn9_mfm32"])
def test_registry_models_embed_at_their_card_size(name):
    card = models.get(name).card
    net = models.build_from_card(card).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *card.input_size))
    assert out.shape == (2, card.embedding_size)


def test_width_and_resolution_scale_cost_as_in_the_paper():
    def cost(name):
        card = models.get(name).card
        net = models.build_from_card(card)
        return count_params(net), count_mflops(net, card.input_size)

    p1, f1 = cost("mobilenet_v1_a1_r112")
    p5, f5 = cost("mobilenet_v1_a0.5_r112")
    _, f64 = cost("mobilenet_v1_a1_r64")
    assert p5 < p1 / 3  # parameters ~ alpha^2
    assert f5 < f1 / 3
    assert f64 == pytest.approx(f1 * (64 / 112) ** 2, rel=0.15)  # MACs ~ rho^2
    names = models.names()
    for a in ("1", "0.75", "0.5", "0.25"):
        for r in (112, 96, 80, 64):
            assert f"mobilenet_v1_a{a}_r{r}" in names
    assert {"lightcnn9", "lightcnn29", "lightcnn9_mfm32", "lightcnn29_mfm32"} <= set(names)


def test_decomposed_prelu_equals_prelu_in_values_gradients_and_state_dict():
    import copy

    import torch
    from torch import nn

    from edgeface import models
    from edgeface.train.loop import decompose_prelu

    torch.manual_seed(0)
    ref = models.build_from_card(models.get("mobilefacenet").card).eval()
    for m in ref.modules():  # non-trivial slopes, some negative, so both branches matter
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.8)
    fast = copy.deepcopy(ref)
    assert decompose_prelu(fast) == sum(isinstance(m, nn.PReLU) for m in ref.modules()) > 0
    assert not any(isinstance(m, nn.PReLU) for m in fast.modules())
    assert list(fast.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 3, 112, 112)
    y_ref, y_fast = ref(x), fast(x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    y_ref.square().sum().backward()
    y_fast.square().sum().backward()
    for (name, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
