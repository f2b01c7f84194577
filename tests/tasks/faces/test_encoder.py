"""FaceEncoder and the face run folder: unit embeddings, saved and loaded, hashed, fed files or arrays."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from heron.errors import DataError, ImageError
from heron.models import load_state_dict_file
from heron.tasks.faces.encoder import FaceEncoder, build_encoder
from heron.tasks.faces.run import load_face_run, save_face_run, tensors_hash


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    encoder, pre = build_encoder("lenet5", weights=None, dim=8, size=32, seed=0)
    folder = tmp_path_factory.mktemp("run")
    save_face_run(folder, encoder, {"arch": "lenet5", "size": 32}, tau=0.5, pre=pre,
                  roc={"far": np.array([0.0, 1.0]), "tar": np.array([0.0, 1.0]), "thresholds": np.array([np.inf, 0.0])})
    return folder, encoder


def _face(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size + 6, 3), dtype=np.uint8)


def test_encoder_embeddings_are_unit_length_and_split_at_the_cached_features():
    encoder, _ = build_encoder("lenet5", weights=None, dim=12, size=32, seed=0)
    encoder.eval()
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        out = encoder(x)
        via_cache = encoder.embed_features(encoder.features(x))
        by_hand = torch.nn.functional.normalize(
            encoder.head(encoder.backbone.forward_features((x - encoder.mean) / encoder.std).mean(dim=(2, 3))), dim=1)
    assert out.shape == (5, 12)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(out, via_cache, atol=1e-6)
    assert torch.allclose(out, by_hand, atol=1e-6)
    assert list(encoder.layer_groups())[-1] == "head"


def test_frozen_batchnorm_statistics_stay_in_train_mode():
    encoder, _ = build_encoder("efficientnet_lite0", weights=None, dim=4, size=32, seed=0)
    before = {k: v.clone() for k, v in encoder.state_dict().items() if "running_mean" in k}
    encoder.train()
    encoder(torch.rand(4, 3, 32, 32))
    after = {k: v for k, v in encoder.state_dict().items() if "running_mean" in k}
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    assert encoder.head.training


def test_saved_run_embeds_as_the_encoder_did(lenet_run):
    folder, encoder = lenet_run
    run = load_face_run(folder)
    images = [_face(1), _face(2)]
    x = run.prepare(images).float() / 255.0
    encoder.eval()
    with torch.no_grad():
        reference = encoder(x).numpy()
    got = run.embed(images)
    assert got.dtype == np.float32 and got.shape == (2, 8)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert run.tau == 0.5 and run.dim == 8 and run.name == folder.name and run.crop_faces is False
    assert (folder / "roc.json").read_text().count("null") == 1  # the infinite first threshold


def test_encoder_hash_is_sha256_of_the_saved_tensors_and_stable(lenet_run, tmp_path):
    folder, encoder = lenet_run
    first, second = load_face_run(folder), load_face_run(folder)
    state = load_state_dict_file(folder / "model.safetensors")
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        digest.update(name.encode())
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    assert first.encoder_hash == second.encoder_hash == digest.hexdigest() == tensors_hash(state)
    changed, pre = build_encoder("lenet5", weights=None, dim=8, size=32, seed=1)
    save_face_run(tmp_path, changed, {"arch": "lenet5"}, tau=0.5, pre=pre)
    assert load_face_run(tmp_path).encoder_hash != first.encoder_hash


def test_files_grey_and_arrays_give_the_same_embeddings(lenet_run, tmp_path):
    run = load_face_run(lenet_run[0])
    rgb = _face(3)
    grey = rgb[:, :, 0].copy()
    Image.fromarray(rgb).save(tmp_path / "face.png")
    Image.fromarray(grey, mode="L").save(tmp_path / "face.pgm")
    Image.fromarray(grey, mode="L").save(tmp_path / "face.gif")
    got = run.embed([tmp_path / "face.png", rgb, str(tmp_path / "face.pgm"), np.repeat(grey[:, :, None], 3, 2),
                     tmp_path / "face.gif"])
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)
    np.testing.assert_allclose(got[2], got[3], atol=1e-6)
    np.testing.assert_allclose(got[4], got[3], atol=1e-6)
    assert not np.allclose(got[0], got[2])


def test_bad_inputs_raise_one_line_errors_naming_them(lenet_run, tmp_path):
    run = load_face_run(lenet_run[0])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        run.embed([_face(0), broken])
    with pytest.raises(ImageError, match="image #1"):
        run.embed([_face(0), np.zeros((4, 4, 3), dtype=np.float32)])
    with pytest.raises(DataError, match="not a finished face run"):
        load_face_run(tmp_path)


def test_encoder_is_a_plain_module_of_any_trunk():
    encoder, pre = build_encoder("efficientnet_lite0", weights=None, dim=128, size=48)
    assert isinstance(encoder, FaceEncoder) and pre.size == (48, 48)
    with torch.no_grad():
        assert encoder.eval()(torch.rand(2, 3, 48, 48)).shape == (2, 128)
