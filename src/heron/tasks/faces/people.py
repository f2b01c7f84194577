"""The people of a faces folder: one sub-folder of images per person, and splits by person.

Training, evaluation and the benchmarks read DATA the same way: a person is
a folder, their photos are the images anywhere inside it, and every split
keeps a person's photos together (a threshold chosen on people the encoder
never saw is what makes its false-accept rate honest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heron.data.images import find_images
from heron.errors import DataError

__all__ = ["MIN_PEOPLE", "People", "default_valid_people", "find_people", "split_people"]

MIN_PEOPLE = 4


@dataclass
class People:
    """Image files with an identity index each; `names[label]` is the folder of that person."""

    names: list[str]
    paths: list[Path]
    labels: list[int]

    def subset(self, people: list[int]) -> "People":
        """The images of the people `people` (indices into `names`), relabelled 0..len-1 in that order."""
        remap = {old: new for new, old in enumerate(people)}
        keep = [i for i, label in enumerate(self.labels) if label in remap]
        return People([self.names[p] for p in people], [self.paths[i] for i in keep],
                      [remap[self.labels[i]] for i in keep])

    def counts(self) -> np.ndarray:
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.names))


def find_people(data: str | Path, min_images: int = 2, min_people: int = MIN_PEOPLE) -> People:
    """The people of DATA (one sub-folder each, images anywhere inside it), checked for training.

    Raises DataError (one line, naming the folder and the fix) for a missing
    or empty folder, fewer than `min_people` people, or a person with fewer
    than `min_images` images.
    """
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; pass a folder with one sub-folder of images per person")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names, paths, labels = [], [], []
    for folder in folders:
        images = find_images(folder)
        if not images:
            continue
        if len(images) < min_images:
            raise DataError(f"{folder}: {len(images)} image of this person; pairs need at least {min_images} "
                            "per person: add another photo or remove the folder")
        labels += [len(names)] * len(images)
        names.append(folder.name)
        paths += images
    if not names:
        raise DataError(f"{root}: no images in sub-folders; put each person's photos in a folder of their own "
                        "(DATA/<name>/*.jpg)")
    if len(names) < min_people:
        raise DataError(f"{root}: {len(names)} people with images; training and a threshold on unseen people "
                        f"need at least {min_people}: add people (one folder each)")
    return People(names, paths, labels)


def default_valid_people(n: int) -> int:
    """People held out for the threshold: a quarter, at least 3, leaving 2 or more to train on.

    Two held-out people give one pair of identities, whose distances say
    little about a stranger: on yalefaces (10 people to train on) 3 instead
    of 2 raised stranger rejection from 0.67 to 1.0 and rank-1 from 0.84 to
    0.88 (`benchmarks/faces.py --yale DIR --valid-people 3`).
    """
    return max(2, min(max(3, round(0.25 * n)), n - 2))


def split_people(people: People, valid_people: int | None, seed: int) -> tuple[People, People]:
    """(training people, held-out people): a seeded split by person, never by image."""
    n = len(people.names)
    count = default_valid_people(n) if valid_people is None else int(valid_people)
    if count < 2 or n - count < 2:
        raise DataError(f"{n} people: --valid-people {count} must leave at least 2 people on each side; "
                        "pick a value from 2 to {n - 2}")
    order = np.random.default_rng(seed).permutation(n)
    valid, train = sorted(order[:count].tolist()), sorted(order[count:].tolist())
    return people.subset(train), people.subset(valid)
