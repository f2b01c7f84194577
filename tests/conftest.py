"""Test settings shared by the whole suite: one thread per worker, fixed seeds."""

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def write_color_classes(root, classes=("red", "green", "blue"), per_class=8, size=40, seed=0, layout="split"):
    """Write a small real image dataset: each class a noisy photo-like image of one dominant colour.

    layout "split": root/train/<class>, root/valid/<class> (3/4 train); "flat": root/<class>.
    """
    from pathlib import Path

    from PIL import Image

    colours = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (210, 200, 40)}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in classes:
        for i in range(per_class):
            base = np.array(colours[name], dtype=np.float32)
            pixels = base + rng.normal(0, 40, size=(size, size, 3))
            pixels[rng.integers(0, size // 2):, : rng.integers(size // 4, size)] *= 0.6  # some structure
            img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            split = "" if layout == "flat" else ("train" if i < per_class * 3 // 4 else "valid")
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{name}_{i}.jpg", quality=90)
    return root


@pytest.fixture
def color_dataset(tmp_path):
    """A train/valid folder of 3 colour classes, 8 JPEGs each."""
    return write_color_classes(tmp_path / "colors")
