"""Write a folder of full-size photos for speed measurements, from a small labelled photo set.

Each output JPEG is a random crop of a source photo (60-100% of each side,
sometimes mirrored, brightness jittered) resized to a typical camera size
(default 1600x1200, portrait for a quarter of them) and saved at quality 90.
Train copies come only from train sources and valid copies only from valid
ones, so a valid image never shares its source with a train image.

    .venv/bin/python benchmarks/make_photos.py SOURCE OUT [--count 2000] [--size 1600 1200]

SOURCE is a DATA/train/<class>/, DATA/valid/<class>/ folder (e.g. hymenoptera).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

EXTENSIONS = {".jpg", ".jpeg", ".png"}


def sources(root: Path, split: str) -> list[tuple[Path, str]]:
    folder = next((root / name for name in (split, "val") if (root / name).is_dir()), None)
    if folder is None:
        raise SystemExit(f"{root}: needs {split}/<class>/ folders")
    return sorted((p, p.parent.name) for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)


def variant(path: Path, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """One random full-size photo made from `path` (width, height as given or swapped)."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    out = size if rng.random() < 0.75 else (size[1], size[0])
    return img.resize(out, Image.BICUBIC)


def write(source: Path, out: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """`count` photos under out/train and out/valid (the source's train/valid ratio); skip if present."""
    if out.exists() and sum(1 for _ in out.rglob("*.jpg")) >= count:
        return out
    rng = random.Random(seed)
    train, valid = sources(source, "train"), sources(source, "valid")
    n_valid = round(count * len(valid) / (len(train) + len(valid)))
    for split, items, n in (("train", train, count - n_valid), ("valid", valid, n_valid)):
        for i in range(n):
            path, label = items[i % len(items)]
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            variant(path, size, rng).save(folder / f"{path.stem}_{i}.jpg", quality=90)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(1600, 1200), metavar=("W", "H"))
    args = parser.parse_args()
    print(write(Path(args.source), Path(args.out), args.count, tuple(args.size)))


if __name__ == "__main__":
    main()
