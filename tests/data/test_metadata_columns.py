"""Metadata as model input: field names, one-hot and standardised columns, fitted on train and saved."""

import math

import numpy as np
import pytest
from PIL import Image

from heron.data.metadata import FileMeta
from heron.data.metadata_columns import MetadataEncoder, parse_fields


def _meta(width, height, size=1000, fmt="JPEG", taken=None, error=None):
    return FileMeta("x.jpg", file_size=size, width=width, height=height, format=fmt, mode="RGB", taken=taken,
                    error=error)


def test_parse_fields_accepts_aliases_in_order_and_refuses_unknown_names():
    assert parse_fields("size, aspect,width,size") == ["size", "aspect_ratio", "width"]
    assert parse_fields(["Format", "exif"]) == ["format", "camera"]
    with pytest.raises(ValueError, match="unknown metadata field 'colour'"):
        parse_fields("size,colour")
    with pytest.raises(ValueError):
        parse_fields(" , ")


def test_categorical_field_is_one_hot_over_values_shared_by_enough_train_files():
    train = [_meta(640, 480)] * 3 + [_meta(800, 600)] * 2 + [_meta(123, 45)]  # 123x45 seen once: "other"
    enc = MetadataEncoder.fit(["size"], train)
    assert enc.columns() == ["size=640x480", "size=800x600", "size=(other)"]
    out = enc.transform([_meta(800, 600), _meta(640, 480), _meta(123, 45), _meta(1, 1), _meta(1, 1, error="bad")])
    np.testing.assert_array_equal(out, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    assert out.dtype == np.float32


def test_numeric_fields_are_standardised_on_train_with_log_sizes_and_missing_flags():
    train = [_meta(w, 100, size=s, taken=t) for w, s, t in
             [(100, 1000, "2020:01:01 00:00:00"), (200, 4000, None), (400, 16000, "2020:01:02 00:00:00")]]
    enc = MetadataEncoder.fit(["width", "aspect", "timestamp"], train)
    assert enc.columns() == ["width", "aspect_ratio", "aspect_ratio:missing", "timestamp", "timestamp:missing"]
    out = enc.transform(train)
    logw = np.log1p([100, 200, 400])
    np.testing.assert_allclose(out[:, 0], (logw - logw.mean()) / logw.std(), rtol=1e-5)
    aspect = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(out[:, 1], (aspect - aspect.mean()) / aspect.std(), rtol=1e-5)
    np.testing.assert_array_equal(out[:, 2], 0)
    t = np.array([train[0].taken_at, train[2].taken_at])
    np.testing.assert_allclose(out[[0, 2], 3], (t - t.mean()) / t.std(), rtol=1e-5)
    assert out[1, 3] == 0 and out[:, 4].tolist() == [0, 1, 0]  # no EXIF time: flagged, value at the mean
    assert not math.isnan(float(out.sum()))


def test_encoder_round_trips_and_encodes_files_from_their_headers(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(40, 30), (40, 30), (30, 40), (30, 40)]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (w, h), (i * 40, 0, 0)).save(path)
        paths.append(path)
    from heron.data.metadata import scan_headers

    enc = MetadataEncoder.fit(["size", "format"], list(scan_headers(paths)))
    again = MetadataEncoder.from_dict(enc.to_dict())
    assert again == enc and again.width == 5  # 2 sizes + other, PNG + other
    np.testing.assert_array_equal(again.encode_paths(paths)[:, :3], [[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])
    assert "size (2 values + other)" in enc.describe()
