"""EfficientNet B0-B7 and Lite: sizes, torchvision equivalence, bundled Lite0 weights on real photos."""

from __future__ import annotations

import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from torch import nn

from heron.data.imagenet import IMAGENET_CATEGORIES
from heron.errors import ModelError
from heron.models import build, load_state_dict_file, load_torchvision, weight_spec
from heron.models import efficientnet as E
from heron.nn.layers import Conv2dSame

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise(model: nn.Module) -> None:
    """Non-trivial BN statistics and a unit-scale classifier, so a wrong eps or layer shows in the logits."""
    gen = torch.Generator().manual_seed(1)
    model.classifier[1].weight.data.normal_(0.0, 1.0, generator=gen)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("efficientnet_b0", 5_288_548),
        ("efficientnet_b1", 7_794_184),
        ("efficientnet_b2", 9_109_994),
        ("efficientnet_b3", 12_233_232),
        ("efficientnet_b4", 19_341_616),
        ("efficientnet_b7", 66_347_960),
        ("efficientnet_lite0", 4_652_008),
    ],
)
def test_parameter_counts(name, expected):
    with torch.device("meta"):
        model = build(name)
    assert _params(model) == expected


@pytest.mark.parametrize("variant", ["b0", "b3"])
def test_logits_match_torchvision(variant):
    ref = getattr(torchvision.models, f"efficientnet_{variant}")().eval()
    _randomise(ref)
    ours = build(f"efficientnet_{variant}").eval()
    load_torchvision(ours, ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert expected.abs().max() > 1.0  # the comparison is not between two near-zero tensors
    assert (got - expected).abs().max().item() <= 1e-4


def test_b7_key_map_covers_torchvision_b7():
    with torch.device("meta"):
        ref = torchvision.models.efficientnet_b7()
        ours = build("efficientnet_b7")
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    key_map = ours.torchvision_key_map()
    assert set(key_map) == set(our_state)
    assert set(key_map.values()) == set(ref_state)
    assert all(our_state[k].shape == ref_state[v].shape for k, v in key_map.items())
    bn = ours.body[0][0].conv_dw.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)  # torchvision's B5-B7 use TensorFlow's BN settings


def test_b0_forward_backward_matches_torchvision_gradients():
    ref = torchvision.models.efficientnet_b0(dropout=0.0, stochastic_depth_prob=0.0).train()
    ours = build("efficientnet_b0", dropout=0.0).train()
    load_torchvision(ours, ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    ref(x).logsumexp(1).sum().backward()
    ours(x).logsumexp(1).sum().backward()
    ref_params = dict(ref.named_parameters())
    for key, param in ours.named_parameters():
        expected = ref_params[ours.torchvision_key_map()[key]].grad
        assert param.grad is not None and torch.isfinite(param.grad).all(), key
        torch.testing.assert_close(param.grad, expected, rtol=1e-4, atol=1e-5, msg=key)


def test_lite0_forward_backward_reaches_every_parameter():
    model = build("efficientnet_lite0", num_classes=5, drop_path_rate=0.2).train()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_stages_channels_and_strides():
    model = build("efficientnet_b0", include_top=False).eval()
    with torch.no_grad():
        outputs = model.stages(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [16, 24, 40, 80, 112, 192, 320]
    assert [64 // o.shape[-1] for o in outputs] == [2, 4, 8, 16, 16, 32, 32]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)
    assert list(model.layer_groups())[:2] == ["stem", "stage1"]


def test_lite_structure_differs_from_b():
    with torch.device("meta"):
        lite, b4 = build("efficientnet_lite4"), build("efficientnet_b4")
    assert not any(isinstance(m, E.SqueezeExcite) for m in lite.modules())
    assert not any(isinstance(m, nn.SiLU) for m in lite.modules())
    assert lite.stem.conv.out_channels == 32 and lite.num_features == 1280  # not scaled by width 1.4
    assert b4.stem.conv.out_channels == 48 and b4.num_features == 1792
    # Lite keeps the first and last stage at one block; B4 scales them to ceil(1.8) = 2.
    assert [len(s) for s in lite.body] == [1, 4, 4, 6, 6, 8, 1]
    assert [len(s) for s in b4.body] == [2, 4, 4, 6, 6, 8, 2]


def test_padding_is_a_builder_option():
    lite = build("efficientnet_lite0")
    strided = [m for m in lite.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5 and all(isinstance(m, Conv2dSame) for m in strided)
    assert not any(isinstance(m, Conv2dSame) for m in build("efficientnet_b0").modules())
    assert not any(isinstance(m, Conv2dSame) for m in build("efficientnet_lite0", padding="symmetric").modules())
    with pytest.raises(ModelError):
        build("efficientnet_b0", padding="valid")


def test_drop_path_only_in_training():
    block = E.MBConv(16, 16, 3, 1, 6, 0.25, nn.SiLU, 1e-5, 0.1, drop_path_rate=0.5)
    x = torch.randn(64, 16, 4, 4)
    block.eval()
    assert torch.equal(block(x), block(x))
    out = E.drop_path(torch.ones(10_000, 1, 1, 1), 0.5, training=True)
    dropped = (out == 0).float().mean().item()
    assert 0.45 < dropped < 0.55 and set(out.unique().tolist()) == {0.0, 2.0}


def test_convert_lukemelas_fits_lite0_exactly():
    state = load_state_dict_file(E._lite0_file())
    converted = E.convert_lukemelas(state)
    assert len(converted) == len(state) == 296
    assert set(converted) == set(build("efficientnet_lite0").state_dict())
    with pytest.raises(ModelError):
        E.convert_lukemelas({"features.0.0.weight": torch.zeros(1)})


def test_imagenet_categories():
    assert len(IMAGENET_CATEGORIES) == 1000
    assert IMAGENET_CATEGORIES[ESPRESSO] == "espresso"
    assert IMAGENET_CATEGORIES[281] == "tabby"
    from torchvision.models import ResNet50_Weights

    assert IMAGENET_CATEGORIES == tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])  # the file matches


@pytest.fixture(scope="module")
def lite0():
    return build("efficientnet_lite0", weights="imagenet").eval()


def _preprocess(image, spec) -> torch.Tensor:
    """Shorter side to 224 / crop_pct (bilinear, antialiased), centre crop 224, normalise."""
    x = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W) uint8
    x = TF.resize(x, round(spec.input_size[0] / spec.crop_pct), antialias=True)
    x = TF.center_crop(x, list(spec.input_size))
    x = TF.to_dtype(x, torch.float32, scale=True)
    return TF.normalize(x, list(spec.mean), list(spec.std))[None]  # (1, 3, 224, 224)


def _probabilities(model, image) -> torch.Tensor:
    with torch.no_grad():
        return model(_preprocess(image, weight_spec("efficientnet_lite0"))).softmax(-1)[0]


def test_lite0_pretrained_sees_a_cat(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    probs = _probabilities(lite0, skimage_data.chelsea())
    assert probs.argmax().item() in CAT_CLASSES
    # Chelsea is a tabby; Lite0 splits its belief among tabby / tiger cat / Egyptian cat.
    assert probs[CAT_CLASSES].sum().item() >= 0.70


def test_lite0_pretrained_sees_espresso(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    probs = _probabilities(lite0, skimage_data.coffee())
    assert probs.argmax().item() == ESPRESSO
    assert probs[ESPRESSO].item() >= 0.85
    assert lite0.pretrained_cfg.categories[probs.argmax().item()] == "espresso"


def test_lite0_tensorflow_padding_beats_symmetric(lite0):
    """The weights were trained with TensorFlow "SAME" padding; symmetric padding costs confidence."""
    skimage_data = pytest.importorskip("skimage.data")
    symmetric = build("efficientnet_lite0", padding="symmetric").eval()
    symmetric.load_state_dict(lite0.state_dict())
    image = skimage_data.coffee()
    assert _probabilities(lite0, image)[ESPRESSO] > _probabilities(symmetric, image)[ESPRESSO]
