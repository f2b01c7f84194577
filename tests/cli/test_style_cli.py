"""`heron style`: a run writes the picture; a missing image is one line and exit code 2."""

from __future__ import annotations

import numpy as np
from PIL import Image

from heron.cli import main
from heron.data.images import load_image


def _write(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_style_writes_the_png(tmp_path, capsys):
    content, style = _write(tmp_path / "c.png", 0), _write(tmp_path / "s.png", 1)
    out = tmp_path / "out.png"
    code = main(["style", content, style, "-o", str(out), "--size", "48", "--steps", "2",
                 "--content-layer", "body.1", "--layers", "stem", "body.0", "--quiet"])
    assert code == 0
    assert load_image(out).shape == (3, 34, 48)
    assert str(out) in capsys.readouterr().out


def test_missing_image_is_exit_code_2_with_the_file_named(tmp_path, capsys):
    style = _write(tmp_path / "s.png", 1)
    code = main(["style", str(tmp_path / "nope.jpg"), style, "-o", str(tmp_path / "o.png"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.jpg" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
