"""Classic CNN families: LeNet-5, AlexNet, VGG, ResNet, MobileNet v1/v2, 1-D/3-D nets.

References: published parameter counts, and torchvision's own models, whose
randomly initialised weights loaded through our key maps must give the same
logits as torchvision gives.
"""

import pytest
import torch
import torchvision
from torch import nn

from heron.models import build, load_torchvision, names, save_weights
from heron.models.lenet import lenet5

TORCHVISION_NAMES = [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")] + [
    "alexnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2",
]
OURS = ["lenet5", "alexnet", *[n for n in TORCHVISION_NAMES if n.startswith("vgg")],
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v1", "mobilenet_v2",
        "conv1d_net", "conv3d_net"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(name: str, **kwargs) -> nn.Module:
    """Build without allocating or initialising weights: shapes and counts only."""
    with torch.device("meta"):
        return build(name, **kwargs)


def perturbed_torchvision(name: str, **kwargs) -> nn.Module:
    """A torchvision model with random weights and batch-norm statistics that matter."""
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
            m.num_batches_tracked.fill_(7)
    return model.eval()


def ours_from_torchvision(name: str, state: dict, **kwargs) -> nn.Module:
    """Our model with every tensor taken from `state` (built on meta: its own init would be overwritten)."""
    model = on_meta(name, **kwargs).to_empty(device="cpu")
    return load_torchvision(model, state).eval()


def test_all_families_registered():
    assert set(OURS) <= set(names())
    assert names("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("alexnet", 61_100_840),
        ("vgg16", 138_357_544),
        ("vgg16_bn", 138_365_992),
        ("vgg19", 143_667_240),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("mobilenet_v2", 3_504_872),
        ("mobilenet_v1", 4_231_976),
    ],
)
def test_parameter_counts(name, expected):
    assert n_params(on_meta(name)) == expected


def test_lenet5_is_the_seeds_network():
    model = lenet5()
    assert n_params(model) == 61_706
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 6, (5, 5)), (6, 16, (5, 5))]
    assert all(isinstance(stage[-1], nn.AvgPool2d) for stage in model.body)
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [120, 84, 10]
    x = torch.randn(2, 1, 32, 32)
    assert [tuple(s.shape[1:]) for s in model.stages(x)] == [(6, 14, 14), (16, 5, 5)]
    assert model(x).shape == (2, 10)


def test_mobilenet_v1_width_multiplier_thins_every_layer():
    full, half = on_meta("mobilenet_v1"), on_meta("mobilenet_v1", width_mult=0.5)
    widths = [c.out_channels for c in full.modules() if isinstance(c, nn.Conv2d)]
    half_widths = [c.out_channels for c in half.modules() if isinstance(c, nn.Conv2d)]
    assert half_widths == [w // 2 for w in widths]
    assert half.num_features == 512 and half.head.fc.in_features == 512
    dw = [c for c in full.modules() if isinstance(c, nn.Conv2d) and c.groups > 1]
    assert len(dw) == 13 and all(c.groups == c.in_channels == c.out_channels for c in dw)


@pytest.mark.parametrize(
    "name, kwargs",
    [(n, {}) for n in TORCHVISION_NAMES] + [("mobilenet_v2", {"width_mult": 0.5}), ("resnet18", {"num_classes": 7})],
)
def test_key_map_pairs_every_tensor_with_torchvision(name, kwargs):
    with torch.device("meta"):
        tv_state = getattr(torchvision.models, name)(weights=None, **kwargs).state_dict()
    ours = on_meta(name, **kwargs)
    key_map = ours.torchvision_key_map()
    own_state = ours.state_dict()
    assert sorted(key_map) == sorted(own_state)
    assert sorted(key_map.values()) == sorted(tv_state)  # one to one: no key used twice, none left out
    for our_key, tv_key in key_map.items():
        assert own_state[our_key].shape == tv_state[tv_key].shape, (our_key, tv_key)
        assert our_key.rsplit(".", 1)[1] == tv_key.rsplit(".", 1)[1]  # weight -> weight, running_var -> ...


EQUIVALENCE = [("alexnet", 64), ("vgg11", 32), ("vgg16_bn", 32), ("resnet18", 64), ("resnet50", 64),
               ("mobilenet_v2", 64)]
SLOW_EQUIVALENCE = [("vgg13", 32), ("vgg19_bn", 32), ("resnet34", 64), ("resnet101", 32), ("resnet152", 32)]


def _check_same_logits(name: str, size: int) -> None:
    tv = perturbed_torchvision(name)
    ours = ours_from_torchvision(name, tv.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert expected.abs().max() > 1e-3  # the comparison is not between two near-zero outputs
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, size", EQUIVALENCE)
def test_torchvision_weights_give_torchvision_logits(name, size):
    _check_same_logits(name, size)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", SLOW_EQUIVALENCE)
def test_torchvision_weights_give_torchvision_logits_deep_variants(name, size):
    _check_same_logits(name, size)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_build_from_torchvision_file_then_new_head(tmp_path, name):
    tv = perturbed_torchvision(name)
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    model = build(name, weights=path, num_classes=5).eval()
    assert model.head.fc.out_features == 5
    x = torch.randn(2, 3, 64, 64)
    last = "fc" if name.startswith("resnet") else "classifier"
    setattr(tv, last, nn.Identity())  # torchvision's pooled features, before its classifier
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), tv(x),
                                   atol=1e-4, rtol=0)
        assert model(x).shape == (2, 5)


def test_grey_input_adaptation_sums_rgb_filters(tmp_path):
    tv = perturbed_torchvision("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    rgb = build("resnet18", weights=path).eval()
    grey = build("resnet18", weights=path, in_chans=1).eval()
    assert grey.stem.conv.weight.shape == (64, 1, 7, 7)
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


def test_grey_input_adaptation_finds_first_conv_inside_first_stage(tmp_path):
    path = save_weights(lenet5(num_classes=4, in_chans=3), tmp_path / "lenet.safetensors")
    rgb = build("lenet5", weights=path, num_classes=4).eval()
    grey = build("lenet5", weights=path, num_classes=4, in_chans=1).eval()
    assert grey.body[0][0].conv.in_channels == 1
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "name, channels, sizes",
    [
        ("vgg16", 512, {(224, 224): (7, 7), (400, 400): (12, 12), (360, 640): (11, 20)}),
        ("resnet50", 2048, {(224, 224): (7, 7), (400, 400): (13, 13), (360, 640): (12, 20)}),
        ("mobilenet_v2", 1280, {(224, 224): (7, 7), (360, 640): (12, 20)}),
        ("alexnet", 256, {(224, 224): (6, 6), (400, 400): (11, 11)}),
    ],
)
def test_include_top_false_returns_feature_maps_at_any_size(name, channels, sizes):
    model = on_meta(name, include_top=False)
    assert model.head is None and model.num_features == channels
    for (h, w), grid in sizes.items():
        assert tuple(model(torch.empty(1, 3, h, w, device="meta")).shape) == (1, channels, *grid)
    with pytest.raises(RuntimeError):
        model.forward_head(torch.empty(1, channels, 7, 7, device="meta"))


def test_include_top_false_computes_the_same_trunk():
    full = build("resnet18").eval()
    trunk = build("resnet18", include_top=False).eval()
    trunk.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("head.")})
    for size in (64, 96):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            out = trunk(x)
            assert out.shape == (1, 512, size // 32, size // 32)
            torch.testing.assert_close(out, full.forward_features(x))


@pytest.mark.parametrize(
    "name, shape, expected",
    [
        ("lenet5", (1, 1, 32, 32), [(6, 14), (16, 5)]),
        ("alexnet", (1, 3, 224, 224), [(64, 27), (192, 13), (256, 6)]),
        ("vgg16", (1, 3, 224, 224), [(64, 112), (128, 56), (256, 28), (512, 14), (512, 7)]),
        ("resnet18", (1, 3, 224, 224), [(64, 56), (128, 28), (256, 14), (512, 7)]),
        ("resnet50", (1, 3, 224, 224), [(256, 56), (512, 28), (1024, 14), (2048, 7)]),
        ("mobilenet_v1", (1, 3, 224, 224), [(64, 112), (128, 56), (256, 28), (512, 14), (1024, 7)]),
        ("mobilenet_v2", (1, 3, 224, 224), [(16, 112), (24, 56), (32, 28), (96, 14), (320, 7)]),
        ("conv1d_net", (1, 1, 360), [(32, 90), (64, 45), (128, 22), (256, 11)]),
        ("conv3d_net", (1, 3, 16, 112, 112), [(32, 8), (64, 4), (128, 2)]),
    ],
)
def test_stages_are_the_natural_stages(name, shape, expected):
    model = on_meta(name, include_top=False, in_chans=shape[1])
    maps = model.stages(torch.empty(shape, device="meta"))
    assert [(m.shape[1], m.shape[2]) for m in maps] == expected


@pytest.mark.parametrize(
    "name, groups",
    [
        ("resnet18", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
        ("vgg11", ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head"]),
        ("alexnet", ["stem", "stage1", "stage2", "stage3", "head"]),
        ("mobilenet_v2", ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "neck", "head"]),
        ("mobilenet_v1", ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "head"]),
        ("lenet5", ["stem", "stage1", "stage2", "head"]),
        ("conv1d_net", ["stem", "stage1", "stage2", "stage3", "stage4", "head"]),
    ],
)
def test_layer_groups_run_input_to_output_and_cover_every_parameter(name, groups):
    model = on_meta(name)
    layer_groups = model.layer_groups()
    assert list(layer_groups) == groups
    assert sum(n_params(g) for g in layer_groups.values()) == n_params(model)
    assert layer_groups["head"] is model.head
    assert list(on_meta(name, include_top=False).layer_groups()) == groups[:-1]


def _smallest_input(name: str) -> tuple[int, ...]:
    if name == "lenet5":
        return (2, 1, 16, 16)
    if name == "alexnet":
        return (2, 3, 63, 63)
    if name == "conv1d_net":
        return (2, 1, 32)
    if name == "conv3d_net":
        return (2, 3, 8, 16, 16)
    return (2, 3, 32, 32)


# The dense 4096-wide top is the same in every VGG: it runs once (vgg11), the
# other depths run their trunks, keeping the 100M-parameter tops out of the loop.
@pytest.mark.parametrize("name", OURS)
def test_forward_and_backward_at_smallest_input(name):
    include_top = not (name.startswith("vgg") and name != "vgg11")
    shape = _smallest_input(name)
    model = build(name, include_top=include_top, num_classes=3, in_chans=shape[1]).train()
    x = torch.randn(shape, requires_grad=True)
    out = model(x)
    if include_top:
        assert out.shape == (2, 3)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
