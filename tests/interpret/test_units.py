"""`heron units`: the streaming top-k is the brute-force top-k, and each patch is its position's receptive field.

Receptive fields are checked against autograd: backprop from one position of
a layer to the input and the pixels with a nonzero gradient must fill exactly
the computed box. The models are made linear and positive first (activations
removed, max pools turned into average pools, weights made positive) so no
gradient can vanish by chance inside the field; what remains is the zoo's
own convolution, pooling, padding and branch arithmetic.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from heron.cli import main
from heron.data.loader import ImageFiles, image_loader
from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import ModelError
from heron.interpret.units import DEFAULT_UNITS, crop_patches, top_patches
from heron.models import build
from heron.models.receptive import receptive_field, receptive_fields

SIZE = 64


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """20 small photo-like PNGs (64x80): coloured blobs and stripes on noise."""
    root = tmp_path_factory.mktemp("units_images")
    rng = np.random.default_rng(0)
    for i in range(20):
        pixels = rng.normal(120, 30, size=(64, 80, 3))
        y, x = rng.integers(0, 48), rng.integers(0, 64)
        pixels[y : y + 16, x : x + 16] = rng.uniform(0, 255, size=3)
        pixels[:, rng.integers(0, 76) :][:, :4] = rng.uniform(0, 255, size=3)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def dataset(folder):
    pre = Preprocessing(size=(SIZE, SIZE), crop_pct=1.0)
    return ImageFiles([(p, None) for p in sorted(folder.glob("*.png"))], eval_transform(pre))


@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return build("efficientnet_lite0", include_top=False).eval()


def _all_activations(model, layer, dataset) -> torch.Tensor:
    """Brute force: the layer's output for every image at once, (N, C, h, w)."""
    x = torch.stack([dataset[i][0] for i in range(len(dataset))]).float().div(255.0)
    out = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: out.update(o=o))
    with torch.inference_mode():
        model(x)
    handle.remove()
    return out["o"].float()


def _stream(model, layer, dataset, **options):
    loader = image_loader(dataset, batch_size=6, workers=0)  # 20 images: batches of 6, 6, 6, 2
    return top_patches(model, layer, loader, **options)


# ---------------------------------------------------------------- top-k


@pytest.mark.parametrize("per_image", [False, True])
def test_streaming_top_k_is_the_brute_force_top_k(lite0, dataset, per_image):
    layer = "body.2.0.conv_pwl"  # linear output: no ties, so the winners are unique
    acts = _all_activations(lite0, layer, dataset)  # (20, C, h, w)
    n, channels, h, w = acts.shape
    result = _stream(lite0, layer, dataset, k=9, per_image=per_image)

    mean = acts.mean(dim=(0, 2, 3))
    assert result.units == mean.argsort(descending=True)[:DEFAULT_UNITS].tolist()
    torch.testing.assert_close(result.mean_activation, mean, rtol=1e-4, atol=1e-5)
    assert result.map_size == (h, w) and result.images == n == 20
    for unit, patches in zip(result.units, result.patches):
        per_position = acts[:, unit].reshape(n, h * w)  # (image, position)
        if per_image:
            best, where = per_position.max(dim=1)
            values, images = best.topk(9)
            flat = where[images]
        else:
            values, top = per_position.flatten().topk(9)
            images, flat = top // (h * w), top % (h * w)
        expected = [(int(img), (int(f) // w, int(f) % w)) for img, f in zip(images, flat)]
        assert [(p.image, p.position) for p in patches] == expected
        torch.testing.assert_close(torch.tensor([p.activation for p in patches]), values, rtol=1e-5, atol=1e-5)


def test_chosen_units_after_a_relu6_keep_exact_values_even_with_ties(lite0, dataset):
    layer = "body.1.0.conv_dw"  # ends in ReLU6: zeros and sixes can tie
    acts = _all_activations(lite0, layer, dataset)
    n, _, h, w = acts.shape
    units = [3, 17, 5]
    result = _stream(lite0, layer, dataset, units=units, k=7)
    assert result.units == units
    for unit, patches in zip(units, result.patches):
        brute = acts[:, unit].flatten().topk(7).values
        got = torch.tensor([p.activation for p in patches])
        torch.testing.assert_close(got, brute, rtol=1e-5, atol=1e-5)
        assert len({(p.image, p.position) for p in patches}) == 7  # seven different places
        for p in patches:  # each place really has the activation it is reported with
            assert acts[p.image, unit, p.position[0], p.position[1]].item() == pytest.approx(p.activation, abs=1e-5)


def test_bad_units_and_layers_are_clear_errors(lite0, dataset):
    with pytest.raises(ModelError, match="40 units"):
        _stream(lite0, "body.2.0.conv_pwl", dataset, units=[40])
    with pytest.raises(ModelError, match="unknown layer 'body.99'"):
        _stream(lite0, "body.99", dataset)


def test_crops_are_the_boxes_of_the_winners_and_each_image_is_decoded_once(lite0, dataset):
    layer = "body.2"
    field = receptive_field(lite0, layer, (SIZE, SIZE))
    result = _stream(lite0, layer, dataset, units=[0, 1, 2], k=5)

    class Counting(torch.utils.data.Dataset):
        calls: list[int] = []

        def __len__(self):
            return len(dataset)

        def __getitem__(self, i):
            self.calls.append(i)
            return dataset[i]

    counted = Counting()
    crops = crop_patches(result, counted, field)
    assert sorted(counted.calls) == sorted({p.image for row in result.patches for p in row})
    for row, patches in zip(crops, result.patches):
        for crop, p in zip(row, patches):
            # the window from the field's own numbers, cut to the image, not from the box crop_patches uses
            (i, j), (height, width) = p.position, dataset[p.image][0].shape[1:]
            y1, x1 = field.start[0] + i * field.jump[0], field.start[1] + j * field.jump[1]
            y2, x2 = min(y1 + field.size[0], height), min(x1 + field.size[1], width)
            y1, x1 = max(y1, 0), max(x1, 0)
            assert torch.equal(crop, dataset[p.image][0][:, y1:y2, x1:x2])


# ---------------------------------------------------------------- receptive fields


def _linear_positive(model: nn.Module) -> nn.Module:
    """Same geometry, no vanishing gradients: activations out, max -> average pools, weights >= 0, float64."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Tanh)):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode))
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    return model.double().eval()


def _gradient_support(model, layer, size, position):
    """Bounding box (x1, y1, x2, y2) of the input pixels whose gradient is nonzero, and whether it is full."""
    out = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: out.update(o=o))
    dtype = next(model.parameters()).dtype
    x = torch.rand(1, 3, *size, dtype=dtype, generator=torch.Generator().manual_seed(0)).add_(0.5).requires_grad_()
    model(x)
    handle.remove()
    out["o"][0, :, position[0], position[1]].sum().backward()  # every unit at that position
    seen = x.grad[0].abs().sum(0) > 0  # (H, W)
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return box, bool(seen[box[1] : box[3], box[0] : box[2]].all())


@pytest.mark.parametrize(
    "arch, size, layers",
    [
        ("alexnet", (131, 117), ["body.1", "body.2.1"]),  # 11x11/4 conv, pools that drop edge pixels
        ("resnet18", (75, 67), ["body.1.0", "body.2.1.conv1"]),  # strided 1x1 shortcut beside the main path
        ("efficientnet_lite0", (75, 67), ["body.2", "body.3.0.conv_dw"]),  # TF "SAME" asymmetric padding
        ("googlenet", (75, 67), ["body.stage1.inception3a"]),  # concatenated branches
    ],
)
def test_field_box_is_exactly_the_gradient_support(arch, size, layers):
    torch.manual_seed(0)
    model = _linear_positive(build(arch, include_top=False))
    fields = receptive_fields(model, size)
    for layer in layers:
        field = fields[layer]
        h, w = field.map_size
        for position in [(0, 0), (h // 2, w // 2), (h - 1, w - 1), (h - 1, 1)]:
            box, full = _gradient_support(model, layer, size, position)
            assert box == field.box(position), (layer, position)
            assert full


def test_with_relu_and_max_pool_the_gradient_stays_inside_the_box():
    torch.manual_seed(0)
    model = build("vgg11", include_top=False).double().eval()
    field = receptive_field(model, "body.2.1", (64, 64))
    for position in [(0, 0), (4, 5), (7, 7)]:
        x1, y1, x2, y2 = field.box(position)
        (bx1, by1, bx2, by2), _ = _gradient_support(model, "body.2.1", (64, 64), position)
        assert x1 <= bx1 and y1 <= by1 and bx2 <= x2 and by2 <= y2


def test_receptive_fields_match_the_textbook_numbers():
    fields = receptive_fields(build("resnet18", include_top=False), (224, 224))
    assert (fields["body.3"].size, fields["body.3"].jump, fields["body.3"].map_size) == ((435, 435), (32, 32), (7, 7))
    alex = receptive_fields(build("alexnet", include_top=False), (224, 224))["body.2"]
    assert (alex.size, alex.jump, alex.channels) == ((195, 195), (32, 32), 256)
    with pytest.raises(ModelError, match="unknown layer"):
        receptive_field(build("lenet5"), "body.7", (32, 32))


# ---------------------------------------------------------------- command line


def test_cli_writes_the_grid(folder, tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["units", "efficientnet_lite0", "--layer", "body.2", "--data", str(folder), "-o", str(out),
                 "--size", str(SIZE), "--workers", "0", "--k", "4", "--units", "3", "7"])
    assert code == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300
    printed = capsys.readouterr().out
    assert "units 3 7" in printed and "20 images" in printed


def test_cli_lists_layers_with_their_receptive_fields(capsys):
    assert main(["units", "efficientnet_lite0", "--list-layers", "--size", str(SIZE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    body2 = next(line for line in lines if line.split()[0] == "body.2")
    assert "40x8x8" in body2 and "67x67 px, jump 8" in body2


def test_cli_unknown_layer_is_one_line_naming_list_layers(folder, tmp_path, capsys):
    code = main(["units", "efficientnet_lite0", "--layer", "body.42", "--data", str(folder), "-o", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--list-layers" in err and "body.42" in err
    assert not Path(tmp_path / "g.png").exists()


def test_cli_looks_into_a_trained_run_with_the_zoo_layer_names(color_dataset, tmp_path, capsys):
    from heron.tasks.classify import fit

    run = fit(color_dataset, out=str(tmp_path / "run"), size=[SIZE], epochs=1, lr=1e-3, figures="none",
              quiet=True, cache_dir=str(tmp_path / "cache"), workers=0)
    out = tmp_path / "run_grid.png"
    code = main(["units", str(run.path), "--layer", "body.3", "--data", str(color_dataset), "-o", str(out),
                 "--workers", "0", "--k", "3", "--per-image"])
    assert code == 0 and out.exists()
    assert "body.3 (147x147 px, jump 16" in capsys.readouterr().out  # the run's 64 px input, the zoo's geometry
