import pickle

import pytest
import torch

from edgeface import models
from edgeface.core.card import ModelCard
from edgeface.models.checkpoints import load_checkpoint, map_foreign_state_dict, save_checkpoint
from edgeface.models.complexity import count_mflops, count_params
from edgeface.zoo import load_torch_model


def test_mobilefacenet_size_matches_paper():
    net = models.build_from_card(models.get("mobilefacenet").card)
    # Chen et al. 2018: ~0.99M parameters, 221M multiply-adds at 112x112.
    assert 0.95e6 < count_params(net) < 1.05e6
    assert 215 < count_mflops(net, (112, 112)) < 228
    assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 128)


def test_card_round_trip_and_validation():
    card = models.get("mobilefacenet").card
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ValueError, match="color_order"):
        card.replace(color_order="XYZ")
    with pytest.raises(ValueError, match="unknown fields"):
        ModelCard.from_dict({**card.to_dict(), "bogus": 1})


def test_a_cards_int8_float_scope_round_trips_and_is_checked():
    from edgeface.compress.float_scope import FloatScope

    card = models.get("mobilefacenet").card
    assert "int8_float_scope" not in card.to_dict()  # cards without a rule of their own serialise as before
    own = card.replace(int8_float_scope={"first": True, "last": 0})
    assert ModelCard.from_json(own.to_json()) == own
    assert FloatScope.for_card(own, FloatScope(first=True, last=3)) == FloatScope(first=True, last=0)
    assert FloatScope.for_card(card, FloatScope(first=True, last=3)) == FloatScope(first=True, last=3)
    for bad in ({"last": -1}, {"last": "1"}, {"first": 1}, {"middle": 2}, [0, 1]):
        with pytest.raises(ValueError, match="int8_float_scope"):
            card.replace(int8_float_scope=bad)


def test_checkpoint_round_trip(tmp_path):
    card = models.get("mobilefacenet").card
    net = models.build_from_card(card).eval()
    path = save_checkpoint(net, card, tmp_path / "m.safetensors")
    net2, card2 = load_checkpoint(path)
    x = torch.randn(2, 3, 112, 112)
    assert card2 == card
    torch.testing.assert_close(net(x), net2(x))


def test_foreign_mapping_refuses_wrong_shapes():
    card = models.get("mobilefacenet").card
    net = models.build_from_card(card)
    sd = {f"layer{i}.{k.rsplit('.', 1)[-1]}": v.clone() for i, (k, v) in enumerate(net.state_dict().items())}
    assert len(map_foreign_state_dict(net, sd)) > 0
    first = next(iter(sd))
    sd[first] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="does not fit"):
        map_foreign_state_dict(net, sd)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/edgeface_pwned",))


def test_untrusted_pickle_is_never_executed(tmp_path):
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    with pytest.raises(ValueError, match="weights-only"):
        load_torch_model(str(bad), arch="mobilefacenet")
    import os

    assert not os.path.exists("/tmp/edgeface_pwned")


def test_unknown_checkpoint_needs_arch(tmp_path):
    p = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(ValueError, match="unknown checkpoint"):
        load_torch_model(str(p))


def test_reference_checkpoint_imports_and_caches(reference_model, shared):
    model, card = reference_model
    assert card.name == "mobilefacenet_casia_xiaoccer" and card.input_size == (112, 96)
    assert card.template == "sphereface_112x96" and card.mean == (127.5,) * 3 and card.std == (128.0,) * 3
    out = model(torch.zeros(1, 3, 112, 96))
    assert out.shape == (1, 128) and torch.isfinite(out).all()
    # The weights-only copy in the cache loads to the very same function.
    from edgeface.core import paths

    model2, _ = load_torch_model(str(paths.reference_mobilefacenet()))
    x = torch.randn(3, 3, 112, 96)
    torch.testing.assert_close(model(x), model2(x))


def test_counting_macs_keeps_every_modules_mode():
    """A network in training with frozen batch norms (how compress.finetune.distill retrains) stays so
    after count_mflops: restoring only the root's mode would switch the batch norms back to training."""
    from edgeface.compress.finetune import _freeze_bn
    from edgeface.models.mobilefacenet import MobileFaceNet

    net = MobileFaceNet(input_size=(32, 32), embedding_size=16, width=8, setting=[(2, 16, 1, 2)])
    net.train()
    _freeze_bn(net)
    modes = {name: m.training for name, m in net.named_modules()}
    assert net.training and not all(modes.values())  # a mixed state, so the check below can fail
    count_mflops(net, (32, 32))
    assert {name: m.training for name, m in net.named_modules()} == modes
