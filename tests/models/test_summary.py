"""heron.models.summary: the course's cost arithmetic, parameter totals, Keras' count, the CLI."""

import argparse

import pytest
import torch
import torchvision
from torch import nn

from heron.cli import summary as summary_cli
from heron.errors import ModelError
from heron.models import build, summary


def macs_by_layer(s):
    return [row.macs for row in s.rows if row.type == "Conv2d"]


def test_five_by_five_conv_costs_120_million_multiplications():
    s = summary(nn.Sequential(nn.Conv2d(192, 32, 5, padding=2)), (192, 28, 28))  # 28*28*32 * 5*5*192
    assert s.total_macs == 120_422_400
    assert s.rows[0].output_shape == (1, 32, 28, 28)


def test_one_by_one_bottleneck_cuts_the_cost_to_12_million():
    net = nn.Sequential(nn.Conv2d(192, 16, 1), nn.ReLU(), nn.Conv2d(16, 32, 5, padding=2))
    s = summary(net, (192, 28, 28))
    assert macs_by_layer(s) == [2_408_448, 10_035_200]  # 28*28*16*192 and 28*28*32*5*5*16
    assert s.total_macs == 12_443_648


def test_depthwise_separable_conv_costs_672_against_2160():
    normal = summary(nn.Sequential(nn.Conv2d(3, 5, 3)), (3, 6, 6))
    separable = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 5, 1))  # biases cost no multiplications
    s = summary(separable, (3, 6, 6))
    assert normal.total_macs == 2_160
    assert macs_by_layer(s) == [432, 240] and s.total_macs == 672
    assert s.rows[-1].output_shape == (1, 5, 4, 4)


def test_linear_and_recurrent_macs():
    s = summary(nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 2)), (10,))
    assert s.total_macs == 10 * 4 + 4 * 2
    lstm = summary(nn.LSTM(8, 16, batch_first=True), (5, 8))  # 5 steps, 4 gates * 16 * (8 + 16)
    assert lstm.total_macs == 5 * 4 * 16 * (8 + 16)
    assert lstm.rows[0].output_shape == (1, 5, 16)


def small_model():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def test_totals_and_the_trainable_split():
    model = small_model()
    for p in model[0].parameters():
        p.requires_grad_(False)
    s = summary(model, (3, 16, 16))
    assert s.total_params == sum(p.numel() for p in model.parameters()) == 216 + 16 + 1168 + 68
    assert s.non_trainable_params == 216
    assert s.trainable_params == s.total_params - 216
    assert sum(row.params for row in s.rows) == s.total_params
    assert [row.trainable for row in s.rows][:2] == [0, 16]
    assert s.keras_total_params == s.total_params + 2 * 8  # BN moving mean and variance
    types = ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert [row.type for row in s.rows] == types
    assert s.rows[3].output_shape == (1, 16, 7, 7) and s.rows[-1].output_shape == (1, 4)


def test_summary_leaves_the_model_as_it_was():
    model = small_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (3, 16, 16), batch_size=4)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


def test_mobilenet_v1_pytorch_and_keras_counts():
    s = summary(build("mobilenet_v1"), (3, 32, 32))
    assert s.total_params == 4_231_976  # PyTorch: parameters only
    assert s.keras_total_params == 4_253_864  # Keras: plus BN moving mean/var, as non-trainable
    assert s.keras_non_trainable_params == 21_888


INIT = {"googlenet": {"init_weights": False}, "inception_v3": {"init_weights": False}}  # silences a FutureWarning


@pytest.mark.parametrize(
    "name", ["googlenet", "inception_v3", "vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0", "alexnet"]
)
def test_macs_agree_with_torchvision_published_figures(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0]
    with torch.device("meta"):  # shapes only: no weights allocated, no arithmetic done
        model = torchvision.models.get_model(name, weights=None, **INIT.get(name, {}))
    s = summary(model, (3, size, size))
    assert round(s.total_macs / 1e9, 3) == pytest.approx(weights.meta["_ops"], abs=1e-3)


def test_vgg16_table_matches_the_keras_one():
    with torch.device("meta"):
        model = build("vgg16")
    s = summary(model, (3, 224, 224))
    pools = [row.output_shape for row in s.rows if row.type == "MaxPool2d"]
    assert pools == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14), (1, 512, 7, 7)]
    convs = [row.params for row in s.rows if row.type == "Conv2d"]
    assert convs == [1792, 36928, 73856, 147584, 295168, 590080, 590080] + [1180160, 2359808, 2359808] + [2359808] * 3
    dense = [row.params for row in s.rows if row.type == "Linear"]
    assert dense == [102_764_544, 16_781_312, 4_097_000]
    assert s.total_params == s.trainable_params == 138_357_544 and s.non_trainable_params == 0


def test_meta_device_gives_the_same_table_as_a_real_run():
    real = summary(build("googlenet", aux_logits=True), (3, 64, 64))
    with torch.device("meta"):
        model = build("googlenet", aux_logits=True)
    meta = summary(model, (3, 64, 64))
    assert str(meta) == str(real)


def test_table_shows_rows_and_both_totals():
    s = summary(build("googlenet", aux_logits=True), (3, 64, 64), depth=2)
    text = str(s)
    assert "body.stage2 (Sequential)" in text and "(1, 832, 4, 4)" in text
    assert "Total params: 13,004,888" in text
    assert f"Keras-style total (counts BN moving mean/var): {s.keras_total_params:,}" in text
    assert "aux1.fc1 (Linear)" in text  # side classifiers: listed, marked as not run in eval mode
    assert [r.name for r in s.rows if r.output_shape is None][0].startswith("aux1")
    assert sum(r.params for r in s.rows) == s.total_params
    assert sum(r.macs for r in s.rows) == s.total_macs  # at depth 2 no row nests in another


def test_too_small_input_is_one_clear_error():
    with torch.device("meta"):
        model = build("inception_v3")
    with pytest.raises(ModelError, match=r"InceptionV3 cannot run on input \(1, 3, 32, 32\)"):
        summary(model, (3, 32, 32))


def run_cli(argv):
    parser = argparse.ArgumentParser()
    summary_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_the_table(capsys):
    assert run_cli(["summary", "googlenet", "--size", "64", "64", "--in-chans", "1", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Model: "GoogLeNet"   input (1, 1, 64, 64)')
    assert "Total params: 6,618,632" in out  # 6,624,904 less 2 input channels * 64 * 7 * 7


def test_cli_lists_names(capsys):
    assert run_cli(["summary", "--list", "inc*"]) == 0
    assert capsys.readouterr().out.split() == ["inception_v3"]
    assert run_cli(["summary", "--list"]) == 0
    assert {"googlenet", "inception_v3", "vgg16"} <= set(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "argv, message",
    [
        (["summary", "googlenot"], "unknown architecture 'googlenot'.*googlenet"),
        (["summary"], "give a model name"),
        (["summary", "--list", "zzz*"], "no registered model matches"),
        (["summary", "googlenet", "--size", "0", "64"], "must be positive"),
    ],
)
def test_cli_errors_are_model_errors(argv, message):
    with pytest.raises(ModelError, match=message) as err:
        run_cli(argv)
    assert "\n" not in str(err.value)
