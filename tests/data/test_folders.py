"""discover(): the three dataset layouts, the split, the warnings and every user error."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from sklearn.model_selection import train_test_split

from heron.data.folders import DataSplits, discover, split_stratified
from heron.errors import DataError


def _touch(root: Path, *rels: str) -> None:
    """Create files; discover only lists them, so the bytes do not matter."""
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8")


def _class_dir(root: Path, name: str, n: int, ext: str = "jpg") -> None:
    _touch(root, *(f"{name}/{i:03d}.{ext}" for i in range(n)))


def _per_class(samples, classes):
    return dict(sorted(Counter(classes[label] for _, label in samples).items()))


# ---------------------------------------------------------- (a) train/valid


@pytest.mark.parametrize("train_name, valid_name", [("train", "valid"), ("train", "val"), ("Train", "validation")])
def test_train_valid_folders(tmp_path, train_name, valid_name):
    _class_dir(tmp_path / train_name, "dog", 4)
    _class_dir(tmp_path / train_name, "cat", 3, "png")
    _class_dir(tmp_path / valid_name, "dog", 2)
    _class_dir(tmp_path / valid_name, "cat", 1)
    _touch(tmp_path, "test/a.jpg", "test/b.jpg", "test/more/c.webp", "test/readme.txt")
    ds = discover(tmp_path)
    assert ds.classes == ["cat", "dog"] and not ds.multilabel
    assert ds.layout == "train/valid folders" and ds.root == tmp_path
    assert _per_class(ds.train, ds.classes) == {"cat": 3, "dog": 4}
    assert _per_class(ds.valid, ds.classes) == {"cat": 1, "dog": 2}
    assert all(p.parent.name == ds.classes[label] for p, label in ds.train + ds.valid)
    assert all(p.parts[-3] == train_name for p, _ in ds.train)
    assert [p.name for p in ds.test] == ["a.jpg", "b.jpg", "c.webp"]
    assert ds.class_counts() == {"cat": {"train": 3, "valid": 1}, "dog": {"train": 4, "valid": 2}}


def test_train_folder_without_valid_is_split(tmp_path):
    _class_dir(tmp_path / "train", "a", 10)
    _class_dir(tmp_path / "train", "b", 5)
    ds = discover(tmp_path, valid_pct=0.2)
    assert ds.layout == "train folder, split"
    assert _per_class(ds.valid, ds.classes) == {"a": 2, "b": 1}
    assert len(ds.train) + len(ds.valid) == 15


def test_train_and_valid_class_sets_differ(tmp_path):
    for name in ("cat", "dog", "fox"):
        _class_dir(tmp_path / "train", name, 2)
    for name in ("cat", "dog", "owl"):
        _class_dir(tmp_path / "valid", name, 1)
    with pytest.raises(DataError, match="only in train: fox; only in valid: owl"):
        discover(tmp_path)


def test_two_valid_folders_is_ambiguous(tmp_path):
    _class_dir(tmp_path / "train", "a", 2)
    _class_dir(tmp_path / "val", "a", 1)
    _class_dir(tmp_path / "valid", "a", 1)
    with pytest.raises(DataError, match="both 'val' and 'valid'"):
        discover(tmp_path)


def test_valid_without_train(tmp_path):
    _class_dir(tmp_path / "valid", "a", 2)
    _class_dir(tmp_path / "valid", "b", 2)
    with pytest.raises(DataError, match="no 'train' folder"):
        discover(tmp_path)


def test_empty_class_folder_in_valid_is_named(tmp_path):
    _class_dir(tmp_path / "train", "a", 2)
    _class_dir(tmp_path / "train", "b", 2)
    _class_dir(tmp_path / "valid", "a", 1)
    (tmp_path / "valid" / "b").mkdir()
    with pytest.raises(DataError, match=r"valid/b: class folder 'b' has no images"):
        discover(tmp_path)


# ------------------------------------------------------------ (b) classes


def test_class_folders_are_split_stratified(tmp_path):
    sizes = {"ant": 10, "bee": 5, "cow": 2, "doe": 3, "elk": 40}
    for name, n in sizes.items():
        _class_dir(tmp_path, name, n)
    _touch(tmp_path, "test/q1.jpg", "test/q2.png")
    ds = discover(tmp_path, valid_pct=0.2, seed=3)
    assert ds.layout == "class folders, split"
    assert ds.classes == sorted(sizes)  # "test" is the test set, not a class
    assert [p.name for p in ds.test] == ["q1.jpg", "q2.png"]
    # round(n * 0.2), at least one per class with >= 2 images
    assert _per_class(ds.valid, ds.classes) == {"ant": 2, "bee": 1, "cow": 1, "doe": 1, "elk": 8}
    train_paths = {p for p, _ in ds.train}
    valid_paths = {p for p, _ in ds.valid}
    assert not train_paths & valid_paths
    assert len(train_paths | valid_paths) == sum(sizes.values())
    assert [p for p, _ in ds.valid] == sorted(p for p, _ in ds.valid)


def test_split_deterministic_with_seed(tmp_path):
    for name in ("a", "b", "c"):
        _class_dir(tmp_path, name, 20)
    first = discover(tmp_path, seed=7)
    again = discover(tmp_path, seed=7)
    other = discover(tmp_path, seed=8)
    assert first.valid == again.valid and first.train == again.train
    assert first.valid != other.valid
    assert _per_class(first.valid, first.classes) == _per_class(other.valid, other.classes)


def test_split_counts_match_sklearn_stratified_split():
    # when every class divides evenly, the per-class counts are those of scikit-learn's stratified split
    labels = [0] * 50 + [1] * 20 + [2] * 10
    samples = [(Path(f"{i:03d}.jpg"), y) for i, y in enumerate(labels)]
    train, valid = split_stratified(samples, valid_pct=0.2, seed=0)
    _, sk_valid = train_test_split(labels, test_size=0.2, stratify=labels, random_state=0)
    assert Counter(y for _, y in valid) == Counter(sk_valid)
    assert Counter(y for _, y in train) == Counter({0: 40, 1: 16, 2: 8})


def test_adding_a_class_keeps_the_split_of_the_others():
    base = [(Path(f"a{i}.jpg"), 0) for i in range(12)] + [(Path(f"b{i}.jpg"), 1) for i in range(9)]
    extra = [(Path(f"c{i}.jpg"), 2) for i in range(7)]
    _, valid = split_stratified(base, 0.25, seed=1)
    _, valid_more = split_stratified(base + extra, 0.25, seed=1)
    assert [s for s in valid_more if s[1] != 2] == valid


def test_single_image_class_stays_in_train():
    samples = [(Path("solo.jpg"), 1)] + [(Path(f"m{i}.jpg"), 0) for i in range(4)]
    train, valid = split_stratified(samples, 0.5, seed=0)
    assert (Path("solo.jpg"), 1) in train
    assert Counter(y for _, y in valid) == {0: 2}


def test_bad_valid_pct():
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(DataError, match="valid_pct must be at least 0 and below 1"):
            split_stratified([(Path("a.jpg"), 0)], valid_pct=bad)


def test_valid_pct_zero_keeps_everything_in_train(tmp_path):
    _class_dir(tmp_path, "a", 4)
    _class_dir(tmp_path, "b", 3)
    ds = discover(tmp_path, valid_pct=0.0)
    assert ds.valid == [] and len(ds.train) == 7
    singles = tmp_path / "singles"
    _class_dir(singles, "a", 1)
    _class_dir(singles, "b", 1)
    with pytest.raises(DataError, match="too few images to hold out a validation set"):
        discover(singles, valid_pct=0.2)  # one image per class: nothing can go to valid
    assert len(discover(singles, valid_pct=0.0).train) == 2
    ml = [(Path("x.jpg"), (0, 1)), (Path("y.jpg"), (0,)), (Path("z.jpg"), (1,))]
    assert split_stratified(ml, 0.0) == (sorted(ml), [])


def test_only_one_class(tmp_path):
    _class_dir(tmp_path, "cat", 5)
    with pytest.raises(DataError, match=r"only one class \('cat'\) found; a classifier needs at least 2"):
        discover(tmp_path)
    scoring = discover(tmp_path, valid_pct=0.0, min_classes=1)  # scoring a model on one class is fine
    assert scoring.classes == ["cat"] and len(scoring.train) == 5


def test_empty_class_folder_is_named(tmp_path):
    _class_dir(tmp_path, "cat", 3)
    _touch(tmp_path, "dog/notes.txt")
    message = r"dog: class folder 'dog' has no images \(only non-image files such as notes.txt\)"
    with pytest.raises(DataError, match=message):
        discover(tmp_path)


def test_no_images_at_all(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        discover(tmp_path)
    _touch(tmp_path, "a.jpg", "b.jpg")
    with pytest.raises(DataError, match="images but no class folders"):
        discover(tmp_path)


def test_missing_path_and_single_image(tmp_path):
    with pytest.raises(DataError, match="nowhere: not found"):
        discover(tmp_path / "nowhere")
    _touch(tmp_path, "one.jpg")
    with pytest.raises(DataError, match="is a single image"):
        discover(tmp_path / "one.jpg")


def test_hidden_folders_and_stray_files(tmp_path):
    _class_dir(tmp_path, "a", 3)
    _class_dir(tmp_path, "b", 3)
    _touch(tmp_path, ".ipynb_checkpoints/x.jpg", "a/.DS_Store", "stray.jpg", "b/labels.txt")
    ds = discover(tmp_path, min_per_class_warn=1)
    assert ds.classes == ["a", "b"]
    assert len(ds.train) + len(ds.valid) == 6
    text = "\n".join(ds.warnings)
    assert "1 image(s) directly in" in text and "stray.jpg" in text
    assert "1 file(s) without an image extension" in text and "labels.txt" in text
    assert ".DS_Store" not in text


# --------------------------------------------------------------- warnings


def test_tiny_and_imbalanced_classes_warn(tmp_path):
    _class_dir(tmp_path, "big", 60)
    _class_dir(tmp_path, "tiny", 3)
    _class_dir(tmp_path, "mid", 12)
    ds = discover(tmp_path, min_per_class_warn=10)
    assert len(ds.warnings) == 2
    assert "fewer than 10 images: tiny (3)" in ds.warnings[0]
    assert "'big' has 60 images, 'tiny' only 3 (20x)" in ds.warnings[1]
    balanced = tmp_path / "balanced"
    _class_dir(balanced, "x", 10)
    _class_dir(balanced, "y", 12)
    assert discover(balanced).warnings == []


def test_balance_table(tmp_path):
    _class_dir(tmp_path, "cat", 10)
    _class_dir(tmp_path, "dog", 5)
    table = discover(tmp_path).balance_table()
    lines = table.splitlines()
    assert lines[0].split() == ["class", "train", "valid", "total"]
    assert lines[1].split() == ["cat", "8", "2", "10"]
    assert lines[2].split() == ["dog", "4", "1", "5"]
    assert lines[3].split() == ["all", "images", "12", "3", "15"]


# -------------------------------------------------------------------- (c) CSV


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_single_label_with_header(tmp_path):
    _touch(tmp_path, *(f"img/{i}.jpg" for i in range(10)))
    lines = "".join(f"img/{i}.jpg,{'cat' if i < 5 else 'dog'}\n" for i in range(10))
    ds = discover(_csv(tmp_path / "labels.csv", "path,label\n" + lines), valid_pct=0.2)
    assert ds.classes == ["cat", "dog"] and not ds.multilabel and ds.layout == "csv, split"
    assert _per_class(ds.valid, ds.classes) == {"cat": 1, "dog": 1}
    assert ds.warnings == [
        "2 class(es) have fewer than 10 images: cat (5), dog (5); add images to them or expect poor accuracy there"
    ]
    labels = {p.name: ds.classes[y] for p, y in ds.train + ds.valid}
    assert labels["0.jpg"] == "cat" and labels["9.jpg"] == "dog"


def test_csv_without_header_and_image_root(tmp_path):
    _touch(tmp_path, "photos/a.jpg", "photos/b.jpg", "photos/c.jpg", "photos/d.jpg")
    csv_path = _csv(tmp_path / "meta" / "y.csv", "a.jpg,x\nb.jpg,x\n\nc.jpg,y\nd.jpg,y\n")
    ds = discover(csv_path, image_root=tmp_path / "photos")
    assert ds.root == tmp_path / "photos"
    assert sorted(p.name for p, _ in ds.train + ds.valid) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    with pytest.raises(DataError, match=r"y\.csv line 1: file .*a\.jpg not found \(4 of 4 listed"):
        discover(csv_path)  # relative to the CSV's own folder there is nothing


def test_csv_multilabel(tmp_path):
    rng = random.Random(0)
    names = ["sky", "sea", "tree", "car", "dog", "cat"]
    rows = []
    for i in range(40):
        tags = rng.sample(names, rng.randint(1, 3))
        rows.append(f"{i}.png,{' '.join(tags)}")
        _touch(tmp_path, f"{i}.png")
    ds = discover(_csv(tmp_path / "tags.csv", "file,tags\n" + "\n".join(rows)), min_per_class_warn=1)
    assert ds.multilabel and ds.classes == sorted(names)
    assert all(isinstance(y, tuple) and list(y) == sorted(set(y)) for _, y in ds.train + ds.valid)
    first = next(y for p, y in ds.train + ds.valid if p.name == "0.png")
    assert {ds.classes[c] for c in first} == set(rows[0].split(",")[1].split())
    counts = ds.class_counts()
    assert all(c["valid"] >= 1 and c["train"] >= 1 for c in counts.values())
    assert 6 <= len(ds.valid) <= 12


def test_multilabel_split_reaches_every_label():
    # 'rare' only ever appears next to the commoner 'common': stratifying by the rarest label finds it
    samples = [(Path(f"c{i}.jpg"), (0,)) for i in range(20)]
    samples += [(Path(f"r{i}.jpg"), (0, 1)) for i in range(2)]
    samples += [(Path(f"s{i}.jpg"), (1, 2)) for i in range(3)]
    train, valid = split_stratified(samples, 0.2, seed=0)
    for cls in (0, 1, 2):
        assert any(cls in y for _, y in valid) and any(cls in y for _, y in train)


def test_csv_is_valid_column_and_test_split(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg")
    text = "path,label,split\na.jpg,x,train\nb.jpg,x,valid\nc.jpg,y,train\nd.jpg,y,valid\ne.jpg,,test\nf.jpg,y,0\n"
    ds = discover(_csv(tmp_path / "s.csv", text), min_per_class_warn=1)
    assert ds.layout == "csv, given split"
    assert [p.name for p, _ in ds.train] == ["a.jpg", "c.jpg", "f.jpg"]
    assert [p.name for p, _ in ds.valid] == ["b.jpg", "d.jpg"]
    assert [p.name for p in ds.test] == ["e.jpg"]
    positional_csv = _csv(tmp_path / "p.csv", "a.jpg,x,0\nb.jpg,x,1\nc.jpg,y,false\nd.jpg,y,true\n")
    positional = discover(positional_csv, min_per_class_warn=1)
    assert [p.name for p, _ in positional.valid] == ["b.jpg", "d.jpg"]


def test_csv_files_without_labels_warn(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg", "sub/unlisted.png", "extra.jpg")
    ds = discover(_csv(tmp_path / "l.csv", "a.jpg,x\nb.jpg,x\nc.jpg,y\nd.jpg,y\n"), min_per_class_warn=1)
    assert len(ds.warnings) == 1
    assert "2 image(s) under" in ds.warnings[0] and "files without labels" in ds.warnings[0]
    assert "extra.jpg" in ds.warnings[0] and "unlisted.png" in ds.warnings[0]


def test_folder_holding_one_csv_is_read_as_csv(tmp_path):
    _touch(tmp_path, "images/a.jpg", "images/b.jpg", "images/c.jpg", "images/d.jpg")
    _csv(tmp_path / "labels.csv", "images/a.jpg,x\nimages/b.jpg,x\nimages/c.jpg,y\nimages/d.jpg,y\n")
    ds = discover(tmp_path, min_per_class_warn=1)
    assert ds.layout == "csv, split" and ds.classes == ["x", "y"]


def test_csv_tab_separated_and_absolute_paths(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    pairs = [("a.jpg", "p"), ("b.jpg", "p"), ("c.jpg", "q"), ("d.jpg", "q")]
    rows = "".join(f"{tmp_path / name}\t{label}\n" for name, label in pairs)
    ds = discover(_csv(tmp_path / "t.tsv", rows), min_per_class_warn=1)
    assert ds.classes == ["p", "q"] and len(ds.train) == 2 and len(ds.valid) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.jpg,x\nb.jpg\n", r"line 2: expected 'path,label\[,is_valid\]'"),
        ("a.jpg,x\nb.jpg,y,1,extra\n", r"line 2: expected 'path,label"),
        ("path,label\na.jpg,x\n\nb.jpg,   \n", r"line 4: empty label for b\.jpg"),
        ("a.jpg,x\nmissing.jpg,y\ngone.jpg,y\n", r"line 2: file .*missing\.jpg not found \(2 of 3 .*--image-root"),
        ("a.jpg,x,maybe\nb.jpg,y,1\n", r"line 1: split value 'maybe'"),
        ("a.jpg,x\nb.jpg,x\n", r"only one class \('x'\)"),
        ("path,label\n", "lists no images"),
        ("a.jpg,x,0\nb.jpg,y,0\n", "no line is marked valid"),
    ],
)
def test_csv_errors(tmp_path, text, message):
    _touch(tmp_path, "a.jpg", "b.jpg")
    with pytest.raises(DataError, match=message) as err:
        discover(_csv(tmp_path / "bad.csv", text))
    assert "bad.csv" in str(err.value) and "\n" not in str(err.value)


def test_csv_duplicate_paths_warn(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    ds = discover(_csv(tmp_path / "d.csv", "a.jpg,x\nb.jpg,x\nc.jpg,y\nd.jpg,y\n./a.jpg,y\n"), min_per_class_warn=1)
    assert len(ds.train) + len(ds.valid) == 4
    assert any("listed more than once" in w and "line 5" in w for w in ds.warnings)
    assert next(y for p, y in ds.train + ds.valid if p.name == "a.jpg") == 0  # first line kept


def test_csv_few_missing_files_are_skipped_and_listed(tmp_path):
    _touch(tmp_path, "a.jpg", "b.jpg", "c.jpg", "d.jpg")
    ds = discover(_csv(tmp_path / "m.csv", "a.jpg,x\nb.jpg,x\nlost.jpg,y\nc.jpg,y\nd.jpg,y\n"), min_per_class_warn=1)
    used = sorted(p.name for p, _ in ds.train + ds.valid)
    assert used == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert len(ds.skipped) == 1 and "lost.jpg" in ds.skipped[0] and "line 3" in ds.skipped[0]
    assert any("not found and skipped" in w for w in ds.warnings)


def test_csv_missing_image_root(tmp_path):
    _csv(tmp_path / "l.csv", "a.jpg,x\n")
    with pytest.raises(DataError, match="image folder not found"):
        discover(tmp_path / "l.csv", image_root=tmp_path / "absent")


def test_repr_is_short(tmp_path):
    _class_dir(tmp_path, "a", 2)
    _class_dir(tmp_path, "b", 2)
    ds = discover(tmp_path)
    assert isinstance(ds, DataSplits)
    assert repr(ds).startswith("DataSplits(layout='class folders, split'") and "train=2, valid=2" in repr(ds)


def test_class_names_differing_only_in_case_stay_apart(tmp_path):
    _class_dir(tmp_path, "Cat", 2)
    _class_dir(tmp_path, "cat", 3)
    ds = discover(tmp_path, min_per_class_warn=1)
    assert ds.classes == ["Cat", "cat"]
    assert ds.class_counts() == {"Cat": {"train": 1, "valid": 1}, "cat": {"train": 2, "valid": 1}}
