"""Detection data: VOC/YOLO/COCO round trips, layout detection, annotation problems, box-aware transforms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from heron.data.detection import (
    Annotation,
    load_detection,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_voc,
    write_yolo,
)
from heron.data.detection_transforms import (
    DetectionImages,
    detection_collate,
    detection_eval_transform,
    detection_loader,
    detection_train_transform,
    scale_boxes,
)
from heron.data.synthetic import SHAPES, write_detection_shapes
from heron.errors import DataError

FORMATS = ("voc", "yolo", "coco")


def _by_name(data):
    """{file name: (boxes, labels)} over all splits."""
    return {a.path.name: (a.boxes, a.labels) for split in data.splits().values() for a in split}


def _same(a, b, atol=1e-3):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name][0], b[name][0], atol=atol)
        np.testing.assert_array_equal(a[name][1], b[name][1])


@pytest.fixture(scope="module")
def shapes_sets(tmp_path_factory):
    """The same synthetic scene set written in each format: {fmt: folder}."""
    root = tmp_path_factory.mktemp("shapes")
    return {fmt: write_detection_shapes(root / fmt, images=16, size=64, seed=3, fmt=fmt) for fmt in FORMATS}


def _annotations(tmp_path):
    """Two images with fractional boxes, one without any, for the writer/reader round trip."""
    anns = []
    for i, boxes in enumerate([[[1.5, 2.25, 30.0, 20.5], [10, 10, 40, 30]], [[0, 0, 48, 32]], []]):
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 32)).save(path)
        anns.append(Annotation(path, np.asarray(boxes, np.float32).reshape(-1, 4),
                               np.arange(len(boxes), dtype=np.int64) % 2, 48, 32))
    return anns


# ----------------------------------------------------------------- round trips


def test_writers_and_readers_round_trip(tmp_path):
    anns, classes = _annotations(tmp_path), ["cat", "dog"]
    images = tmp_path / "images"
    write_voc(anns, classes, tmp_path / "voc")
    write_yolo(anns, classes, tmp_path / "labels")
    write_coco(anns, classes, tmp_path / "coco.json", image_dir=images)
    assert (tmp_path / "classes.txt").read_text().split() == classes
    coco_classes, coco = read_coco(tmp_path / "coco.json", images)
    assert coco_classes == classes
    for ann, coco_rec in zip(anns, coco):
        expected = [(classes[lab], *box) for box, lab in zip(ann.boxes.tolist(), ann.labels.tolist())]
        for path, w, h, objects in (read_voc(tmp_path / "voc" / f"{ann.path.stem}.xml", images),
                                    read_yolo(tmp_path / "labels" / f"{ann.path.stem}.txt", ann.path, classes),
                                    coco_rec):
            assert (path, w, h) == (ann.path, 48, 32)
            assert [o[0] for o in objects] == [e[0] for e in expected]
            np.testing.assert_allclose([o[1:] for o in objects], [e[1:] for e in expected], atol=1e-3)


def test_each_format_loads_the_same_boxes(shapes_sets):
    loaded = {fmt: load_detection(folder, valid_pct=0.0) for fmt, folder in shapes_sets.items()}
    for fmt, data in loaded.items():
        assert data.format == fmt
        assert data.classes == list(SHAPES)
        assert len(data.train) == 16 and not data.valid and not data.test
    _same(_by_name(loaded["voc"]), _by_name(loaded["yolo"]))
    _same(_by_name(loaded["voc"]), _by_name(loaded["coco"]))


def test_synthetic_boxes_are_exact_and_some_images_empty(tmp_path):
    write_detection_shapes(tmp_path, images=60, size=48, seed=1, fmt="voc", max_objects=1, empty_frac=0.2)
    data = load_detection(tmp_path, valid_pct=0.0)
    assert any(len(a.labels) == 0 for a in data.train)
    assert any("background" in p for p in data.problems)
    checked = 0
    for ann in data.train:
        if len(ann.labels) != 1 or SHAPES[ann.labels[0]] != "square":
            continue
        pixels = np.asarray(Image.open(ann.path), np.int16)
        x1, y1, x2, y2 = ann.boxes[0].astype(int)
        inside = pixels[y1:y2, x1:x2].reshape(-1, 3)
        assert (inside == inside[0]).all()  # a square fills its box with one colour
        checked += 1
    assert checked > 0


def test_split_is_seeded(shapes_sets):
    a = load_detection(shapes_sets["voc"], valid_pct=0.25, seed=5)
    b = load_detection(shapes_sets["voc"], valid_pct=0.25, seed=5)
    assert len(a.valid) == 4 and len(a.train) == 12
    assert [x.path for x in a.valid] == [x.path for x in b.valid]
    other = load_detection(shapes_sets["voc"], valid_pct=0.25, seed=6)
    assert [x.path for x in other.valid] != [x.path for x in a.valid]
    assert "train" in a.summary() and "circle" in a.summary()


# ----------------------------------------------------------------- layouts


def test_yolo_names_from_data_yaml_or_numbered(shapes_sets, tmp_path):
    root = tmp_path / "y"
    shutil.copytree(shapes_sets["yolo"], root)
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text("path: .\nnames:\n  0: ring\n  1: box\n  2: tri\n")
    assert load_detection(root).classes == ["ring", "box", "tri"]
    (root / "data.yaml").write_text("names: [ring, 'box', tri]  # three\n")
    assert load_detection(root).classes == ["ring", "box", "tri"]
    (root / "data.yaml").unlink()
    data = load_detection(root)
    assert data.classes == ["class0", "class1", "class2"]
    assert any("class0" in p for p in data.problems)


def test_coco_instances_file_in_annotations_folder(shapes_sets, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(shapes_sets["coco"], root)
    (root / "annotations").mkdir()
    (root / "annotations.json").rename(root / "annotations" / "instances_train.json")
    Image.new("RGB", (8, 8)).save(root / "images" / "unlisted.png")
    data = load_detection(root, valid_pct=0.0)
    assert data.format == "coco"
    assert any("instances_train.json" in p and "1 image(s)" in p for p in data.problems)
    _same(_by_name(data), _by_name(load_detection(shapes_sets["coco"], valid_pct=0.0)))


def test_coco_categories_in_id_order(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.png")
    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 20, "height": 10}],
            "categories": [{"id": 9, "name": "zebra"}, {"id": 2, "name": "yak"}],
            "annotations": [{"image_id": 7, "category_id": 9, "bbox": [1, 2, 3, 4]},
                            {"image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4]}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    data = load_detection(tmp_path, valid_pct=0.0)
    assert data.classes == ["yak", "zebra"]
    np.testing.assert_array_equal(data.train[0].labels, [1])
    np.testing.assert_allclose(data.train[0].boxes, [[1, 2, 4, 6]])
    assert any("annotations.json" in p and "category_id 5" in p for p in data.problems)


def test_voc_devkit_with_split_files(shapes_sets, tmp_path):
    kit = tmp_path / "data" / "VOC2012"
    shutil.copytree(shapes_sets["voc"] / "images", kit / "JPEGImages")
    shutil.copytree(shapes_sets["voc"] / "annotations", kit / "Annotations")
    stems = sorted(p.stem for p in (kit / "JPEGImages").iterdir())
    main = kit / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("\n".join(stems[:10]) + "\n")
    (main / "val.txt").write_text("\n".join(stems[10:13]) + "\n")
    (main / "test.txt").write_text("\n".join(stems[13:]) + "\n")
    data = load_detection(tmp_path / "data")  # found one level down
    assert data.format == "voc"
    assert [len(data.train), len(data.valid), len(data.test)] == [10, 3, 3]
    assert [a.path.stem for a in data.valid] == stems[10:13]
    (main / "train.txt").unlink()
    (main / "val.txt").unlink()
    (main / "trainval.txt").write_text("\n".join(stems[:13]) + "\n")
    data = load_detection(kit, valid_pct=0.25)
    assert [len(data.train), len(data.valid), len(data.test)] == [10, 3, 3]
    (main / "trainval.txt").unlink()  # test.txt alone: the rest is train and valid
    data = load_detection(kit, valid_pct=0.25)
    assert [len(data.train), len(data.valid), len(data.test)] == [10, 3, 3]
    assert not any("split file" in p for p in data.problems)


def test_yolo_split_folders(shapes_sets, tmp_path):
    root = tmp_path / "u"
    for kind, ext in (("images", ".png"), ("labels", ".txt")):
        for i, src in enumerate(sorted((shapes_sets["yolo"] / kind).iterdir())):
            split = "train" if i < 10 else "val" if i < 13 else "test"
            (root / kind / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / kind / split / src.name)
    shutil.copy(shapes_sets["yolo"] / "classes.txt", root)
    data = load_detection(root)
    assert [len(data.train), len(data.valid), len(data.test)] == [10, 3, 3]
    assert all(a.path.parent.name == "val" for a in data.valid)
    _same(_by_name(data), _by_name(load_detection(shapes_sets["yolo"])))


def test_valid_folder_overrides_split(shapes_sets, tmp_path):
    write_detection_shapes(tmp_path, images=5, size=64, seed=9, fmt="yolo")
    data = load_detection(shapes_sets["yolo"], valid=tmp_path)
    assert (len(data.train), len(data.valid)) == (16, 5)
    assert all(a.path.parent == tmp_path / "images" for a in data.valid)


@pytest.mark.parametrize("make", ["missing", "empty", "images_only", "no_images"])
def test_bad_layout_is_one_line_data_error(tmp_path, make):
    root = tmp_path / "set"
    if make != "missing":
        root.mkdir()
    if make == "images_only":
        (root / "images").mkdir()
        Image.new("RGB", (8, 8)).save(root / "images" / "a.png")
    if make == "no_images":
        (root / "images").mkdir()
        (root / "labels").mkdir()
    with pytest.raises(DataError) as info:
        load_detection(root)
    message = str(info.value)
    assert "\n" not in message and str(root) in message
    assert "images/" in message


# ----------------------------------------------------------------- annotation problems


def _voc_object(name, box, difficult=0):
    x1, y1, x2, y2 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def _voc_file(path, image, objects, size=(64, 64)):
    path.write_text(f"<annotation><filename>{image}</filename><size><width>{size[0]}</width>"
                    f"<height>{size[1]}</height></size>{''.join(objects)}</annotation>")


def test_voc_problems_are_reported_and_skipped(shapes_sets, tmp_path):
    root = tmp_path / "v"
    shutil.copytree(shapes_sets["voc"], root)
    ann = root / "annotations"
    _voc_file(ann / "00000.xml", "00000.png", [
        _voc_object("circle", (50, 50, 80, 70)),      # partly outside: clipped
        _voc_object("circle", (70, 70, 90, 90)),      # wholly outside: skipped
        _voc_object("square", (10, 10, 10, 20)),      # zero area: skipped
        _voc_object("hexagon", (1, 1, 9, 9)),         # unknown class (classes= given): skipped
        _voc_object("square", (2, 2, 12, 12), difficult=1),
    ])
    (root / "images" / "00001.png").unlink()                      # annotation without its image
    (root / "images" / "00002.png").write_bytes(b"not an image")  # unreadable image
    (ann / "00004.xml").write_text("<annotation><object>")                # broken XML: image skipped
    (root / "images" / "extra.png").write_bytes((root / "images" / "00003.png").read_bytes())  # no XML
    data = load_detection(root, valid_pct=0.0, classes=SHAPES)
    text = "\n".join(data.problems)
    assert "00000.xml" in text and "clipped" in text and "outside" in text
    assert "zero or negative area" in text and "'hexagon'" in text and "difficult" in text
    assert "00001.xml" in text and "00002" in text
    assert any("background" in p for p in data.problems)
    first = next(a for a in data.train if a.path.name == "00000.png")
    np.testing.assert_allclose(first.boxes, [[50, 50, 64, 64], [2, 2, 12, 12]])
    np.testing.assert_array_equal(first.labels, [0, 1])
    names = {a.path.name for a in data.train}
    assert "00001.png" not in names and "00002.png" not in names and "extra.png" in names
    assert "00004.png" not in names and "00004.xml" in text
    assert len(data.train) == 14


def test_yolo_problems_are_reported_and_skipped(shapes_sets, tmp_path):
    root = tmp_path / "y"
    shutil.copytree(shapes_sets["yolo"], root)
    (root / "labels" / "00000.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\nbad line\n1 0.5 0.5 0 0.1\n")
    data = load_detection(root, valid_pct=0.0)
    text = "\n".join(data.problems)
    assert "00000.txt:2" in text and "class index 7" in text
    assert "00000.txt:3" in text and "00000.txt" in text and "zero or negative area" in text
    first = next(a for a in data.train if a.path.name == "00000.png")
    np.testing.assert_allclose(first.boxes, [[25.6, 25.6, 38.4, 38.4]], atol=1e-3)


# ----------------------------------------------------------------- transforms


def _rectangle(height=120, width=160, box=(40, 30, 100, 70)):
    """Black image with a white rectangle, and its box as a v2 target."""
    img = torch.zeros(3, height, width, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    img[:, y1:y2, x1:x2] = 255
    target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor([box], dtype=torch.float32), format="XYXY",
                                                canvas_size=(height, width)),
              "labels": torch.tensor([1])}
    return tv_tensors.Image(img), target


def _bright_extent(img):
    ys, xs = torch.nonzero(img[0] > 127, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("hflip", [0.0, 1.0])
def test_train_transform_moves_boxes_with_pixels(hflip):
    transform = detection_train_transform((96, 128), hflip=hflip, scale=(0.5, 1.0), jitter=0.0)
    kept = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out, target = transform(*_rectangle())
        assert out.shape == (3, 96, 128) and out.dtype == torch.uint8
        if len(target["boxes"]):
            kept += 1
            assert (target["boxes"][0] - _bright_extent(out)).abs().max() <= 2
    assert kept >= 4
    if hflip:
        torch.manual_seed(0)
        out, target = detection_train_transform((120, 160), hflip=1.0, scale=None, jitter=0)(*_rectangle())
        assert target["boxes"].tolist() == [[60.0, 30.0, 120.0, 70.0]]


def test_train_transform_is_reproducible_under_a_seed():
    transform = detection_train_transform((64, 64))
    results = []
    for _ in range(2):
        torch.manual_seed(11)
        results.append(transform(*_rectangle()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1]["boxes"], results[1][1]["boxes"])


def test_train_transform_drops_boxes_cropped_out():
    img, target = _rectangle(box=(0, 0, 8, 8))
    target["boxes"] = tv_tensors.BoundingBoxes(torch.tensor([[0, 0, 8, 8], [152, 112, 160, 120]], dtype=torch.float32),
                                               format="XYXY", canvas_size=(120, 160))
    target["labels"] = torch.tensor([0, 1])
    transform = detection_train_transform((60, 80), hflip=0.5, scale=(0.25, 0.25), ratio=(4 / 3, 4 / 3), jitter=0)
    for seed in range(6):
        torch.manual_seed(seed)
        _, out = transform(img, target)
        assert len(out["boxes"]) == len(out["labels"]) <= 1


def test_eval_transform_and_scale_boxes_round_trip():
    out, target = detection_eval_transform((60, 40))(*_rectangle())
    assert out.shape == (3, 60, 40)
    np.testing.assert_allclose(target["boxes"].tolist(), [[10, 15, 25, 35]], atol=1e-4)
    back = scale_boxes(target["boxes"].as_subclass(torch.Tensor), (60, 40), (120, 160))
    np.testing.assert_allclose(back.tolist(), [[40, 30, 100, 70]], atol=1e-4)
    arr = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(scale_boxes(scale_boxes(arr, (10, 20), (33, 7)), (33, 7), (10, 20)), arr, atol=1e-5)


# ----------------------------------------------------------------- dataset


def test_detection_images_with_a_corrupt_file(shapes_sets, tmp_path):
    root = tmp_path / "v"
    shutil.copytree(shapes_sets["voc"], root)
    data = load_detection(root, valid_pct=0.0)
    bad = data.train[3].path
    bad.write_bytes(bad.read_bytes()[:200])  # the header still reads, the pixels do not
    anns = data.train[:6] + [Annotation(tmp_path / "gone.png", np.zeros((0, 4), np.float32),
                                        np.zeros(0, np.int64), 0, 0)]
    dataset = DetectionImages(anns, detection_train_transform((32, 48)))
    images, targets, indices, errors = next(iter(detection_loader(dataset, batch_size=7, workers=0)))
    assert images.shape == (5, 3, 32, 48) and images.dtype == torch.uint8
    assert indices.tolist() == [0, 1, 2, 4, 5]
    assert [i for i, _ in errors] == [3, 6]
    assert str(bad) in errors[0][1] and "gone.png" in errors[1][1]
    for t in targets:
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape[1] == 4
        assert t["labels"].dtype == torch.int64 and len(t["labels"]) == len(t["boxes"])
        assert type(t["boxes"]) is torch.Tensor
    assert detection_collate([dataset[3]])[0] is None


def test_jpeg_draft_decoding_keeps_boxes_in_place(tmp_path):
    img = np.zeros((480, 640, 3), np.uint8)
    img[120:360, 160:480] = 255
    path = tmp_path / "big.jpg"
    Image.fromarray(img).save(path, quality=95)
    ann = Annotation(path, np.array([[160, 120, 480, 360]], np.float32), np.array([0]), 640, 480)
    image, target, _, error = DetectionImages([ann], detection_eval_transform((96, 128)), min_size=(96, 128))[0]
    assert error is None and image.shape == (3, 96, 128)
    np.testing.assert_allclose(target["boxes"].tolist(), [[32, 24, 96, 72]], atol=1e-3)
    assert (target["boxes"][0] - _bright_extent(image)).abs().max() <= 2
