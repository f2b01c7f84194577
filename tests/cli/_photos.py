"""scikit-image's two sample photos written as files, for the command-line tests."""

import pytest
from PIL import Image

skdata = pytest.importorskip("skimage.data")


def write_sample_photos(folder):
    """chelsea.jpg (a cat) and coffee.png (an espresso) in `folder`; returns it."""
    Image.fromarray(skdata.chelsea()).save(folder / "chelsea.jpg", quality=95)
    Image.fromarray(skdata.coffee()).save(folder / "coffee.png")
    return folder
