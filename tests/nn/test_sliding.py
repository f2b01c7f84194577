"""Sliding windows: the convolutional implementation equals cropping every window, on the seeds' sizes."""

import pytest
import torch

from heron.nn.sliding import WindowClassifier, convolutionalize, sliding_window_scores


@pytest.fixture
def model():
    torch.manual_seed(0)
    return WindowClassifier().eval()


def test_the_window_classifier_has_the_seeds_shapes(model):
    x = torch.randn(2, 3, 14, 14)
    assert model.features(x).shape == (2, 16, 5, 5)
    assert model(x).shape == (2, 4)
    assert [m.out_features for m in model.classifier if isinstance(m, torch.nn.Linear)] == [400, 400, 4]


@pytest.mark.parametrize("side, grid", [(14, 1), (16, 2), (28, 8)])
def test_one_convolutional_pass_equals_every_window_classified(model, side, grid):
    image = torch.randn(2, 3, side, side)
    with torch.no_grad():
        naive = sliding_window_scores(model, image, window=14, stride=2)  # (2, 4, grid, grid)
        conv = convolutionalize(model)(image)
    assert naive.shape == conv.shape == (2, 4, grid, grid)
    assert (naive - conv).abs().max() <= 1e-5
    # the top-left window of the grid is the top-left crop
    torch.testing.assert_close(naive[:, :, 0, 0], model(image[:, :, :14, :14]))


def test_the_windows_follow_the_stride_on_a_wide_image(model):
    image = torch.randn(1, 3, 16, 28)
    with torch.no_grad():
        naive = sliding_window_scores(model, image)
        conv = convolutionalize(model)(image)
    assert naive.shape == conv.shape == (1, 4, 2, 8)
    torch.testing.assert_close(naive[0, :, 1, 3], model(image[:, :, 2:16, 6:20])[0])
    assert (naive - conv).abs().max() <= 1e-5


def test_the_convolutional_net_shares_the_weights(model):
    conv = convolutionalize(model)
    theirs, ours = model.state_dict(), conv.state_dict()
    assert list(theirs) == list(ours)  # one to one, same names
    for name in theirs:
        assert theirs[name].numel() == ours[name].numel()
        assert theirs[name].data_ptr() == ours[name].data_ptr(), name
    assert ours["classifier.1.weight"].shape == (400, 16, 5, 5)
    assert ours["classifier.3.weight"].shape == (400, 400, 1, 1)
    image = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = conv(image).clone()
        model.classifier[5].bias.add_(1.0)  # a change in the classifier shows in its convolutional twin
        after = conv(image)
    torch.testing.assert_close(after, before + 1.0)
