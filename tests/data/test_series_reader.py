"""The UCR-format reader: separators, labels as spelt, variable lengths, errors with file and line; z-normalisation."""

import numpy as np
import pytest

from heron.data.series import pad_series, read_series, sort_labels, split_series, znormalise
from heron.errors import DataError

ROWS = [("1", [0.5, 1.5, -2.0, 3.0]), ("-1", [4.0, 4.5, 5.0, 1.0]), ("1", [0.0, 1.0, 2.0, 3.0])]


def write(tmp_path, text, name="X_TRAIN.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("sep", ["\t", ",", " ", "   "])
def test_every_separator_parses_to_the_same_series_and_labels(tmp_path, sep):
    text = "".join(sep.join([label, *map(str, values)]) + "\n" for label, values in ROWS)
    data = read_series(write(tmp_path, ("  " if sep == "   " else "") + text))  # leading spaces, old UCR style
    assert data.labels == ["1", "-1", "1"]
    assert data.classes == ["-1", "1"]  # numeric order, spelling kept
    for got, (_, values) in zip(data.series, ROWS):
        np.testing.assert_array_equal(got, values)
    np.testing.assert_array_equal(data.targets(data.classes), [1, 0, 1])


def test_labels_keep_their_spelling_and_sort_numerically():
    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    assert sort_labels({"1.0", "-1"}) == ["-1", "1.0"]
    assert sort_labels({"walk", "run", "2"}) == ["2", "run", "walk"]


def test_trailing_nan_and_short_lines_become_variable_lengths_padded_with_zeros(tmp_path):
    path = write(tmp_path, "1\t1\t2\t3\t4\n2\t5\t7\tNaN\tNaN\n1\t2\t4\t6\n\n2\t9\t8\t\t\n")
    data = read_series(path)
    np.testing.assert_array_equal(data.lengths, [4, 2, 3, 2])
    x = data.to_array()
    assert x.shape == (4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], [-1.0, 1.0, 0.0, 0.0])  # z-normalised over its 2 real values, then zeros
    assert data.line_numbers == [1, 2, 3, 5]  # the blank line 4 is skipped, numbering kept


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("1\t0.1\t0.2\n2\t0.3\tabc\n", "line 2, column 3", "'abc' is not a number"),
        ("1\t0.1\tNaN\t0.2\n", "line 1, column 3", "inside the series"),
        ("1\t0.1\n2\n", "line 2", "no values"),
        ("1\t0.1\tinf\n", "line 1, column 3", "not a finite number"),
        ("", "line 1", "empty"),
        ("\n\n   \n", "line 1", "empty"),
    ],
)
def test_bad_files_raise_data_error_with_file_and_line(tmp_path, text, where, what):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        read_series(path)
    message = str(err.value)
    assert str(path) in message and where in message and what in message


def test_one_class_is_refused_with_file_and_line(tmp_path):
    path = write(tmp_path, "3\t1\t2\n3\t2\t1\n")
    data = read_series(path)
    with pytest.raises(DataError, match=r"X_TRAIN\.tsv: has 1 class \('3'\).*line 1.*at least 2"):
        data.require_classes(2)


def test_missing_file_and_unknown_label(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_series(tmp_path / "nope.tsv")
    data = read_series(write(tmp_path, "1\t1\t2\n7\t2\t1\n"))
    with pytest.raises(DataError, match=r"line 2: label '7' is not one of the trained classes \(1, 2\)"):
        data.targets(["1", "2"])


def test_unlabelled_files_read_every_field_as_a_value(tmp_path):
    data = read_series(write(tmp_path, "1 2 3\n4 5 6\n"), labelled=False)
    assert data.labels is None
    np.testing.assert_array_equal(data.series[0], [1, 2, 3])


def test_znormalise_gives_mean_zero_std_one_per_series():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(6, 40)) * rng.uniform(0.1, 10, size=(6, 1))
    z = znormalise(x)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-12)


def test_znormalise_leaves_a_constant_series_at_zero_not_nan():
    z = znormalise(np.full(10, 3.25))
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z, 0.0)


def test_pad_series_cuts_and_pads():
    out = pad_series([np.array([1.0, 2.0, 3.0]), np.array([4.0])], length=2)
    np.testing.assert_array_equal(out, [[1, 2], [4, 0]])


def test_split_is_stratified_seeded_and_disjoint():
    targets = np.array([0] * 10 + [1] * 20)
    train, valid = split_series(targets, 0.2, seed=3)
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(30))
    assert np.bincount(targets[valid]).tolist() == [2, 4]
    again, _ = split_series(targets, 0.2, seed=3)
    other, _ = split_series(targets, 0.2, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
