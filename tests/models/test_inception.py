"""GoogLeNet and Inception v3 against torchvision: sizes, logits, side classifiers, training step."""

import pytest
import torch
import torchvision
from torch import nn

from heron.errors import ModelError
from heron.models import build, load_torchvision
from heron.models.googlenet import GoogLeNetOutputs
from heron.models.inception import InceptionOutputs
from heron.nn import Branches, InceptionBlock


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> None:
    """Give every BN layer distinct running statistics, as training would.

    Fresh BN layers all hold mean 0 / var 1, so a key map that swapped two of
    their buffers would go unnoticed; afterwards it cannot. Side classifiers
    (not run in eval mode) get random statistics instead.
    """
    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.running_mean.normal_(0.0, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.momentum = 1.0
        bn.train()
    with torch.no_grad():
        model(x)
    model.eval()


def torchvision_twin(name: str, aux: bool, **kwargs) -> nn.Module:
    make = getattr(torchvision.models, name)
    return make(weights=None, aux_logits=aux, init_weights=True, transform_input=False, **kwargs)


@pytest.mark.parametrize(
    "name, aux, expected",
    [
        ("googlenet", False, 6_624_904),
        ("googlenet", True, 13_004_888),
        ("inception_v3", False, 23_834_568),
        ("inception_v3", True, 27_161_264),
    ],
)
def test_parameter_counts_match_the_published_ones(name, aux, expected):
    with torch.device("meta"):  # sizes only: nothing allocated
        model = build(name, aux_logits=aux)
    assert n_params(model) == expected


@pytest.mark.parametrize(
    "name, aux, size",
    # inception_v3 runs on 75x75 but then ends on a 1x1 grid, where BN statistics of 4 samples are too crude
    [("googlenet", False, 32), ("googlenet", True, 32), ("inception_v3", False, 107), ("inception_v3", True, 107)],
)
def test_torchvision_weights_give_the_same_logits(name, aux, size):
    theirs = torchvision_twin(name, aux)
    x = torch.randn(4, 3, size, size)
    calibrate_bn(theirs, x)  # statistics of this batch keep the logits near unit scale
    ours = load_torchvision(build(name, aux_logits=aux), theirs.state_dict()).eval()
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert 1e-2 < expected.abs().max() < 1e2  # logits of a real scale: a 1e-4 tolerance means something
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)


def test_googlenet_side_classifiers_match_torchvision_in_training_mode():
    theirs = torchvision_twin("googlenet", True, dropout=0.0, dropout_aux=0.0).train()
    ours = load_torchvision(build("googlenet", aux_logits=True, dropout=0.0, dropout_aux=0.0), theirs.state_dict())
    ours.train()
    x = torch.randn(2, 3, 48, 48)
    expected, got = theirs(x), ours(x)
    assert isinstance(got, GoogLeNetOutputs)
    pairs = [(got.logits, expected.logits), (got.aux2, expected.aux_logits2), (got.aux1, expected.aux_logits1)]
    for mine, reference in pairs:
        assert torch.allclose(mine, reference, atol=1e-5)
    # the same loss gives the same gradient in both (autograd as the reference)
    (expected.logits.sum() + 0.3 * (expected.aux_logits1.sum() + expected.aux_logits2.sum())).backward()
    (got.logits.sum() + 0.3 * (got.aux1.sum() + got.aux2.sum())).backward()
    assert torch.allclose(ours.stem.conv1.conv.weight.grad, theirs.conv1.conv.weight.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ours.aux1.fc1.weight.grad, theirs.aux1.fc1.weight.grad, atol=1e-5, rtol=1e-4)


def test_inception_v3_trains_with_its_side_classifier():
    model = build("inception_v3", num_classes=5, aux_logits=True).train()
    x, y = torch.randn(2, 3, 299, 299), torch.tensor([1, 3])  # the side classifier needs a 17x17 grid
    out = model(x)
    assert isinstance(out, InceptionOutputs)
    assert out.logits.shape == out.aux.shape == (2, 5)
    loss = nn.functional.cross_entropy(out.logits, y) + 0.4 * nn.functional.cross_entropy(out.aux, y)
    loss.backward()
    for name in ("stem.conv1a.conv.weight", "aux.fc.weight", "head.fc.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    model.eval()
    assert model(x[:1, :, :80, :80]).shape == (1, 5)  # eval: plain logits, small inputs fine


def test_eval_mode_and_no_aux_return_plain_logits():
    model = build("googlenet", num_classes=7, aux_logits=True)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    plain = build("googlenet", num_classes=7).train()
    assert plain(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize(
    "name, size, widths", [("googlenet", 64, (480, 832, 1024)), ("inception_v3", 75, (288, 768, 2048))]
)
def test_backbone_interface(name, size, widths):
    model = build(name, num_classes=3, in_chans=1, aux_logits=True).eval()
    x = torch.randn(1, 1, size, size)
    feats = model.stages(x)
    assert [f.shape[1] for f in feats] == list(widths)
    assert [f.shape[-1] for f in feats] == sorted((f.shape[-1] for f in feats), reverse=True)
    assert model.forward_features(x).shape[1] == model.num_features == widths[-1]
    model.reset_classifier(4)
    assert model(x).shape == (1, 4)
    aux_fc = model.aux1.fc2 if name == "googlenet" else model.aux.fc
    assert aux_fc.out_features == 4
    assert list(model.layer_groups()) == ["stem", "stage1", "stage2", "stage3", "head"]
    trunk = build(name, include_top=False, aux_logits=True)
    assert trunk.head is None and not trunk.aux_logits
    assert trunk.eval()(torch.randn(1, 3, size, size)).shape[1] == widths[-1]


def test_key_map_names_every_tensor_once():
    with torch.device("meta"):
        model = build("inception_v3")
        tv_keys = set(torchvision.models.inception_v3(weights=None, init_weights=False).state_dict())
    key_map = model.torchvision_key_map()
    assert set(key_map) == set(model.state_dict())
    assert set(key_map.values()) == tv_keys and len(tv_keys) == len(key_map)


def test_loading_torchvision_weights_with_side_classifiers_into_a_model_without_them_is_refused():
    theirs = torchvision_twin("googlenet", True).state_dict()
    with pytest.raises(ModelError, match="unexpected"):
        load_torchvision(build("googlenet", aux_logits=False), theirs)


def test_inception_block_stacks_branches_and_keeps_the_grid():
    block = InceptionBlock(192, 64, 96, 128, 16, 32, 32)  # the seeds' inception (3a)
    out = block(torch.randn(2, 192, 28, 28))
    assert out.shape == (2, 256, 28, 28) and block.out_chs == 256
    assert block.conv5x5[1].conv.kernel_size == (5, 5)
    branches = Branches(a=nn.Conv2d(3, 2, 1), b=nn.Conv2d(3, 4, 3, padding=1))
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(branches(x), torch.cat([branches.a(x), branches.b(x)], 1))
