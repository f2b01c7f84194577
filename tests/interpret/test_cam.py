"""CAM, Grad-CAM, the FCN head and `heron heatmap`: checked against their definitions and on planted objects."""

from collections import OrderedDict

import pytest
import torch
from PIL import Image
from torch import nn

from heron.cli import main
from heron.interpret.cam import cam, choose_method, class_maps, default_layer, fcn_map, grad_cam, upsample
from heron.models import build
from heron.models._base import Backbone
from heron.transfer.dilate import dilate_last_stride
from heron.transfer.heads import FCNHead, GapHead, feature_kind, make_head
from heron.transfer.model import ClassifierModel

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _resnet_gap(num_classes=3, bn=False) -> ClassifierModel:
    backbone = build("resnet18", weights=None, include_top=False)
    return ClassifierModel(backbone, GapHead(512, num_classes, bn=bn), MEAN, STD).eval()


def _last_map(model: ClassifierModel, x: torch.Tensor) -> torch.Tensor:
    """The trunk's last feature map, caught by a forward hook during an ordinary forward pass."""
    kept = []
    handle = default_layer(model).register_forward_hook(lambda m, i, o: kept.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return kept[-1]


# ---- CAM and Grad-CAM against their definitions ----------------------------------------------------
@pytest.mark.parametrize("bn", [False, True])
def test_cam_is_the_class_weighted_sum_of_the_last_feature_maps(bn):
    model = _resnet_gap(bn=bn)
    if bn:  # a head batch norm with non-trivial statistics is folded into the weights
        model.head.bn.running_mean.normal_()
        model.head.bn.running_var.uniform_(0.5, 2.0)
        model.head.bn.weight.data.normal_()
        model.head.bn.bias.data.normal_()
    x = torch.rand(2, 3, 64, 64)
    result = cam(model, x, class_idx=[2, 0])
    feats = _last_map(model, x)  # (2, 512, 2, 2)
    weight, bias = model.head.fc.weight, model.head.fc.bias
    if bn:
        norm = model.head.bn
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        bias = bias + weight @ (norm.bias - norm.running_mean * scale)
        weight = weight * scale
    for n, c in enumerate([2, 0]):
        expected = torch.einsum("k,khw->hw", weight[c], feats[n])
        assert torch.allclose(result.maps[n], expected, atol=1e-5)
    # convention: no bias in the map; its spatial mean plus the bias is the logit
    logits = model(x)
    assert torch.allclose(result.maps.mean((1, 2)) + bias[[2, 0]], logits[[0, 1], [2, 0]], atol=1e-5)
    assert torch.allclose(result.probs, torch.softmax(logits, 1), atol=1e-6)
    assert result.classes.tolist() == [2, 0]


def test_grad_cam_equals_cam_up_to_scale_for_a_gap_linear_head():
    model = _resnet_gap()
    x = torch.rand(2, 3, 96, 96)
    plain, gradient = cam(model, x), grad_cam(model, x)
    h, w = plain.maps.shape[1:]
    assert gradient.maps.shape == plain.maps.shape == (2, 3, 3)
    assert torch.equal(gradient.classes, plain.classes)
    # alpha_k = W[c, k] / (h w), so Grad-CAM = ReLU(CAM) / (h w)
    assert torch.allclose(gradient.maps * h * w, plain.maps.relu(), atol=1e-5)
    for g, c in zip(gradient.maps, plain.maps.relu()):
        if c.max() > 0:
            assert torch.allclose(g / g.max(), c / c.max(), atol=1e-5)
            assert torch.corrcoef(torch.stack([g.flatten(), c.flatten()]))[0, 1] > 0.9999


def test_grad_cam_works_on_zoo_models_through_the_model_interface():
    x = torch.randn(1, 3, 64, 64)
    resnet = build("resnet18", weights=None).eval()  # GAP + linear top: Grad-CAM is CAM again
    assert choose_method(resnet) == "cam"
    a, b = cam(resnet, x), grad_cam(resnet, x)
    assert torch.allclose(b.maps * 4, a.maps.relu(), atol=1e-5)
    vgg = build("vgg11", weights=None).eval()  # a dense top: only Grad-CAM applies
    assert choose_method(vgg) == "gradcam"
    assert grad_cam(vgg, x).maps.shape == (1, 2, 2)
    assert grad_cam(vgg, x, layer="stage4").maps.shape == (1, 4, 4)
    with pytest.raises(ValueError, match="grad_cam"):
        cam(vgg, x)
    with pytest.raises(ValueError, match="no layer"):
        grad_cam(vgg, x, layer="stage9")


def test_grad_cam_needs_no_trainable_parameters_and_leaves_grads_alone():
    model = _resnet_gap()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        result = grad_cam(model, torch.rand(1, 3, 64, 64), class_idx=1)
    assert result.maps.shape == (1, 2, 2) and result.classes.tolist() == [1]
    assert all(p.grad is None for p in model.parameters())


# ---- the FCN head ----------------------------------------------------------------------------
def test_fcn_head_takes_the_map_or_its_flattened_cache_and_exposes_its_class_map():
    head = FCNHead(16, 3, map_size=(5, 7), hidden=(8, 8), pools=1).eval()
    fmap = torch.randn(2, 16, 5, 7)
    assert torch.allclose(head(fmap), head(fmap.flatten(1)))
    assert head.class_map(fmap).shape == (2, 3, 3, 4)  # one 2x2 pool, ceil mode
    assert head.class_map(fmap, pool=False).shape == (2, 3, 5, 7)
    assert torch.allclose(head(fmap), head.class_map(fmap).mean((2, 3)))
    assert head(torch.randn(1, 16, 12, 20)).shape == (1, 3)  # the map itself at any size
    with pytest.raises(ValueError, match="flattened"):
        head(torch.randn(2, 16 * 6 * 7))
    assert feature_kind("fcn") == "map"
    assert isinstance(make_head("fcn", 16, 3, (5, 7), hidden=(8,)), FCNHead)


def test_fcn_classifier_runs_at_360x640():
    backbone = build("resnet18", weights=None, include_top=False).eval()
    with torch.no_grad():
        size = tuple(backbone.forward_features(torch.zeros(1, 3, 360, 640)).shape[2:])
    assert size == (12, 20)
    model = ClassifierModel(backbone, make_head("fcn", 512, 4, size, hidden=(16, 16)), MEAN, STD, "map").eval()
    x = torch.rand(1, 3, 360, 640)
    with torch.no_grad():
        assert model(x).shape == (1, 4)
    result = fcn_map(model, x)
    assert result.maps.shape == (1, 12, 20) and choose_method(model) == "fcn"
    pooled = FCNHead(512, 4, size, hidden=(16, 16), pools=2).eval()
    assert pooled.class_map(torch.randn(1, 512, *size)).shape == (1, 4, 3, 5)


def test_classifier_trained_at_one_size_runs_gap_and_fcn_heads_at_another():
    backbone = build("resnet18", weights=None, include_top=False).eval()
    for kind, head in (("map", make_head("fcn", 512, 3, (2, 2), hidden=(8,))), ("pooled", make_head("gap", 512, 3))):
        model = ClassifierModel(backbone, head, MEAN, STD, kind).eval()
        x = torch.rand(2, 3, 64, 64)  # the trained size: a 2x2 map
        with torch.no_grad():
            torch.testing.assert_close(model(x), head(model.features(x)))  # the cached path, the same logits
            assert model(torch.rand(1, 3, 96, 160)).shape == (1, 3)  # a 3x5 map, no retraining


def test_dilating_the_last_stride_doubles_the_map():
    x = torch.rand(1, 3, 64, 64)
    for arch in ("resnet18", "efficientnet_lite0"):
        model = build(arch, weights=None).eval()
        before = grad_cam(model, x).maps.shape
        dilate_last_stride(model)
        assert grad_cam(model, x).maps.shape[1:] == (2 * before[1], 2 * before[2]), arch


# ---- a planted object: every method finds its quadrant --------------------------------------------------
class _TinyNet(Backbone):
    """Three conv stages (stride 1, 2, 2): 32x32 images -> an 8x8 map of 32 channels."""

    def __init__(self) -> None:
        super().__init__()

        def conv(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.stem = conv(3, 8, 1)
        self.body = nn.Sequential(conv(8, 16, 2), conv(16, 32, 2))
        self.neck, self.head, self.num_features = nn.Identity(), None, 32


CORNERS = {"top-left": (0, 0), "top-right": (0, 1), "bottom-left": (1, 0), "bottom-right": (1, 1)}


def _planted(n: int, gen: torch.Generator, corner=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images (N, 3, 32, 32); label 1: a bright 6x6 square well inside a corner (random unless given)."""
    x = (0.45 + 0.15 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(0, 1)
    y = torch.randint(0, 2, (n,), generator=gen) if corner is None else torch.ones(n, dtype=torch.long)
    for i in range(n):
        if y[i]:
            row, col = CORNERS[corner] if corner else divmod(int(torch.randint(0, 4, (1,), generator=gen)), 2)
            top, left = (row * 21 + int(torch.randint(1, 5, (1,), generator=gen)),
                         col * 21 + int(torch.randint(1, 5, (1,), generator=gen)))
            x[i, :, top:top + 6, left:left + 6] = 1.0
    return x, y


def _train(head: nn.Module, kind: str) -> ClassifierModel:
    torch.manual_seed(0)
    model = ClassifierModel(_TinyNet(), head, MEAN, STD, kind)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(100):
        x, y = _planted(32, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def planted_models():
    torch.manual_seed(0)
    return OrderedDict(gap=_train(GapHead(32, 2, dropout=0.0), "pooled"),
                       fcn=_train(FCNHead(32, 2, (8, 8), hidden=(16,), dropout=0.0), "map"))


@pytest.mark.parametrize("head,method", [("gap", "cam"), ("gap", "gradcam"), ("fcn", "fcn"), ("fcn", "gradcam")])
def test_the_heatmap_maximum_lies_in_the_object_quadrant(planted_models, head, method):
    model = planted_models[head]
    gen = torch.Generator().manual_seed(1)
    for corner, (row, col) in CORNERS.items():
        x, _ = _planted(4, gen, corner)
        result = class_maps(model, x, method, class_idx=1)
        assert (result.probs.argmax(1) == 1).all(), f"{head}: the object was not recognised ({corner})"
        heat = upsample(result.maps, (32, 32))  # (4, 32, 32)
        for image in heat:
            y, x_ = divmod(int(image.argmax()), 32)
            assert (y >= 16, x_ >= 16) == (bool(row), bool(col)), f"{head}/{method}: peak at {(y, x_)}, {corner}"


# ---- the command line ---------------------------------------------------------------------------
def _train_cli(data, out, cache, *flags) -> None:
    code = main(["train", str(data), "--out", str(out), "--arch", "resnet18", "--weights", "none",
                 "--crop-pct", "1.0", "--epochs", "2", "--lr", "1e-2", "--quiet", "--figures", "none",
                 "--cache-dir", str(cache), "--workers", "0", *flags])
    assert code == 0


def test_fcn_run_trains_at_a_rectangular_size_and_draws_heatmaps(color_dataset, tmp_path, capsys):
    _train_cli(color_dataset, tmp_path / "fcn", tmp_path / "cache", "--head", "fcn", "--hidden", "8",
               "--size", "36", "64")
    images = sorted((color_dataset / "valid" / "red").glob("*.jpg"))[:2]
    capsys.readouterr()
    assert main(["heatmap", str(tmp_path / "fcn"), *map(str, images), "-o", str(tmp_path / "maps")]) == 0
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in written] == [f"{p.stem}_fcn.png" for p in images]
    with Image.open(written[0]) as png:
        assert png.format == "PNG" and png.width > png.height  # the 36x64 view, drawn wide
    assert main(["heatmap", str(tmp_path / "fcn"), str(images[0]), "-o", str(tmp_path / "maps"),
                 "--method", "gradcam", "--class", "BLUE", "--hires"]) == 0
    assert (tmp_path / "maps" / f"{images[0].stem}_gradcam_hires.png").is_file()


def test_heatmap_errors_are_one_line_with_exit_2(color_dataset, tmp_path, capsys):
    _train_cli(color_dataset, tmp_path / "gap", tmp_path / "cache", "--size", "32")
    image = str(sorted((color_dataset / "valid" / "red").glob("*.jpg"))[0])
    for extra, message in ((["--class", "purple"], "not a class of this model"),
                           (["--method", "fcn"], "--head fcn")):
        capsys.readouterr()
        assert main(["heatmap", str(tmp_path / "gap"), image, "-o", str(tmp_path / "m"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert main(["heatmap", str(tmp_path / "gap"), image, str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "m")]) == 2
    assert (tmp_path / "m" / f"{sorted((color_dataset / 'valid' / 'red').glob('*.jpg'))[0].stem}_cam.png").is_file()


def test_heatmap_without_a_run_uses_the_pretrained_imagenet_model(tmp_path, capsys):
    skdata = pytest.importorskip("skimage.data")
    Image.fromarray(skdata.chelsea()).save(tmp_path / "chelsea.jpg", quality=95)
    assert main(["heatmap", str(tmp_path / "chelsea.jpg"), "-o", str(tmp_path / "maps")]) == 0
    assert capsys.readouterr().out.strip().endswith("chelsea_cam.png")
    model = build("efficientnet_lite0", weights="imagenet").eval()
    spec = model.pretrained_cfg
    from heron.data.images import load_image
    from heron.data.transforms import Preprocessing, eval_transform

    pre = Preprocessing.from_spec(spec)
    x = eval_transform(pre)(load_image(tmp_path / "chelsea.jpg"))[None].float() / 255
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    result = cam(model, x)
    assert "cat" in spec.categories[int(result.classes[0])]


def test_overlay_covers_the_network_view_and_blends_by_alpha():
    from heron.data.transforms import Preprocessing
    from heron.interpret.heatmap import blend, network_view

    image = torch.randint(0, 256, (3, 90, 200), dtype=torch.uint8)
    view = network_view(image, Preprocessing(size=(36, 64), crop_pct=1.0), longest=320)
    assert view.shape == (3, 180, 320)  # the 36x64 input's area, drawn at display size
    heat = torch.zeros(4, 4)
    heat[0, 3] = 1.0  # hot in the top-right cell
    assert torch.allclose(torch.from_numpy(blend(view, heat, alpha=0.0)), view.permute(1, 2, 0).float() / 255)
    coloured = blend(torch.zeros(3, 32, 32, dtype=torch.uint8), heat, alpha=1.0)  # (32, 32, 3) in [0, 1]
    hot, cold = coloured[2, 29], coloured[29, 2]  # jet: red where the map is high, blue where low
    assert hot[0] > hot[2] and cold[2] > cold[0] and coloured.min() >= 0 and coloured.max() <= 1
