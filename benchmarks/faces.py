"""One-shot recognition of unseen identities: a trained face encoder vs the untrained ImageNet encoder.

Two runs, each printing the trained encoder's numbers beside the baseline's
(the same pretrained EfficientNet-Lite0 trunk, no training: pooled features,
L2-normalised, cosine 1-NN), measured in the same run by the same code
(`heron.tasks.faces.evaluate.score_embeddings`):

- digits: scikit-learn's handwritten digits made into identities: an
  identity is one handwritten sample, and its images are "photos" of it
  (random pose, stroke width, blur, contrast, noise), as the photos of a
  face vary. The encoder trains on identities of the digits 0-6 and is
  scored on identities of the digits 7-9, which it never saw: one enrolment
  photo per identity, the others identify; a quarter of the unseen
  identities stay out of the gallery as strangers. (Identities made of
  digit class x fixed style were tried first: the unseen digits' handwriting
  varies more than the styles differ, and training did not beat the
  untrained encoder there: rank-1 0.60-0.69 vs 0.62.)
- yalefaces (`--yale DIR`): 15 people x 11 photos; people split into
  training (10) and unseen (5) people, by person, so each byte-identical
  pair stays on one side; among the unseen people, byte-identical copies
  (found by file hash) are dropped so an enrolment image is never also a
  probe. Three seeded splits; each is reported, then their mean.

Each baseline's tau is chosen by the same rule as the trained run's (the
target FAR, on pairs of the training-side people), so stranger rejection is
comparable.

    python benchmarks/faces.py --threads 1           # digits at 64 px
    python benchmarks/faces.py --yale /work/shared/data/yalefaces --threads 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heron.data.synthetic import write_digit_people  # noqa: E402
from heron.tasks.faces.encoder import PooledFeatures  # noqa: E402


def people_arrays(folder: Path):
    from heron.tasks.faces.people import find_people

    people = find_people(folder, min_people=2)
    return people.paths, np.asarray(people.labels)


def baseline_embeddings(paths, arch: str, size: int | None, crop_faces: bool = False) -> np.ndarray:
    """The untrained encoder: pretrained trunk, pooled features, L2-normalised (cosine = Euclidean order).

    With `crop_faces` it sees the same face crops as the trained run (through `FaceRun.embed`).
    """
    from heron.tasks.faces.encoder import build_encoder
    from heron.tasks.faces.run import FaceRun
    from heron.tasks.faces.train import embed_paths

    encoder, pre = build_encoder(arch, "imagenet", dim=1, size=size)
    pooled = PooledFeatures(encoder)
    if crop_faces:
        return FaceRun(pooled, pre, 0.0, "", Path("untrained"), crop_faces=True).embed(list(paths))
    return embed_paths(pooled, list(paths), pre, workers=0)


def compare(train_dir: Path, test_dir: Path, run: Path, args, size: int | None, drop_duplicates: bool = False,
            augment: bool = True) -> dict:
    """Train on `train_dir`'s people, score both encoders one-shot on `test_dir`'s people."""
    from heron.tasks.faces import verification as V
    from heron.tasks.faces.evaluate import score_embeddings, unique_files
    from heron.tasks.faces.run import load_face_run
    from heron.tasks.faces.train import FaceConfig, choose_threshold, train_faces

    start = time.perf_counter()
    config = FaceConfig(data=str(train_dir), out=str(run), arch=args.arch, dim=args.dim, size=size,
                        lr=args.lr, epochs=args.epochs, finetune_epochs=args.finetune_epochs, p=args.p, k=args.k,
                        seed=args.seed, overwrite=True, quiet=True, workers=0, cache_dir=args.cache_dir,
                        crop_faces=getattr(args, "crop_faces", False), augment=augment,
                        valid_people=args.valid_people)
    train_faces(config)
    trained_seconds = time.perf_counter() - start
    face_run = load_face_run(run)
    paths, labels = people_arrays(test_dir)
    if drop_duplicates:
        paths, labels, dropped = unique_files(paths, labels)
        print(f"  unseen people: dropped {dropped} byte-identical copies")
    ours, _ = score_embeddings(face_run.embed(paths), labels, face_run.tau, 1, args.strangers, args.seed)
    # the baseline's tau: the same rule on the training-side people, which it never trained on either
    train_paths, train_labels = people_arrays(train_dir)
    i, j, same = V.pair_indices(train_labels, max_pairs=200_000, seed=args.seed)
    base_train = baseline_embeddings(train_paths, args.arch, size, config.crop_faces)
    base_tau, _ = choose_threshold(V.pair_distances(base_train, i, j), same, "far", config.target_far)
    base, _ = score_embeddings(baseline_embeddings(paths, args.arch, size, config.crop_faces), labels, base_tau, 1,
                               args.strangers, args.seed)
    return {"trained": ours, "untrained": base, "train_seconds": trained_seconds}


ROWS = (("rank-1, 1 enrolment image", "rank1"), ("TAR at FAR 1e-2", "tar_at_far_1e-2"),
        ("ROC AUC", "auc"), ("stranger rejection at tau", "stranger_rejection"), ("tau", "tau"))


def report(title: str, result: dict) -> None:
    ours, base = result["trained"], result["untrained"]
    print(f"\n{title}")
    print(f"  unseen: {ours['gallery_people']} enrolled identities ({ours['probes']} probes), "
          f"{ours['stranger_people']} strangers ({ours['stranger_images']} images); "
          f"training {result['train_seconds']:.0f} s")
    print(f"  {'':28}{'trained':>10}{'untrained':>11}{'ratio':>8}")
    for name, key in ROWS:
        a, b = ours[key], base[key]
        ratio = f"{a / b:8.2f}" if b else "       -"
        print(f"  {name:28}{a:10.4f}{b:11.4f}{ratio}")


def digits(args, work: Path) -> dict:
    train_digits, unseen_digits = range(0, 7), range(7, 10)
    train_dir = write_digit_people(work / "digits-train", train_digits, args.per_digit, args.photos, args.size,
                                   args.seed)
    test_dir = write_digit_people(work / "digits-unseen", unseen_digits, args.unseen_per_digit, args.photos,
                                  args.size, args.seed + 1)
    result = compare(train_dir, test_dir, work / "digits-run", args, args.size, augment=False)
    report(f"digits: an identity = one handwritten sample, {args.photos} photos each; train digits 0-6 "
           f"({7 * args.per_digit} identities), unseen digits 7-9 ({3 * args.unseen_per_digit} identities), "
           f"{args.size} px", result)
    return result


def yale(args, work: Path) -> dict:
    """`--yale-splits` different people splits, each trained and scored; the mean is reported last."""
    source = Path(args.yale)
    people = sorted(p for p in source.iterdir() if p.is_dir())
    results = []
    for split in range(args.yale_splits):
        order = np.random.default_rng(args.seed + split).permutation(len(people))
        unseen = {people[i].name for i in order[: args.yale_unseen]}
        folder = work / f"yale-{split}"
        for person in people:
            shutil.copytree(person, folder / ("unseen" if person.name in unseen else "train") / person.name)
        result = compare(folder / "train", folder / "unseen", folder / "run", args, args.yale_size,
                         drop_duplicates=True)
        report(f"yalefaces split {split + 1}: {len(people) - len(unseen)} people train, unseen "
               f"{', '.join(sorted(unseen))}; {args.yale_size or 224} px"
               + (", faces cropped" if args.crop_faces else ""), result)
        results.append(result)
    mean = {side: {key: float(np.mean([r[side][key] for r in results])) for _, key in ROWS}
            for side in ("trained", "untrained")}
    for side in mean:
        mean[side].update({k: sum(r[side][k] for r in results) for k in ("probes", "stranger_images")})
        mean[side].update({k: results[0][side][k] for k in ("gallery_people", "stranger_people")})
    mean["train_seconds"] = float(np.mean([r["train_seconds"] for r in results]))
    report(f"yalefaces: mean of {len(results)} people splits (probes and stranger images summed)", mean)
    return {"splits": results, "mean": mean}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yale", help="yalefaces folder (one folder per person); runs the faces comparison too")
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64, help="digit photo side and encoder input (default 64)")
    parser.add_argument("--per-digit", type=int, default=20, help="training identities per digit (default 20)")
    parser.add_argument("--unseen-per-digit", type=int, default=4, help="unseen identities per digit (default 4)")
    parser.add_argument("--photos", type=int, default=8, help="photos per digit identity (default 8)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--yale-size", type=int, default=None, help="encoder input for the faces (default 224)")
    parser.add_argument("--yale-unseen", type=int, default=5, help="people kept unseen (default 5 of 15)")
    parser.add_argument("--yale-splits", type=int, default=3, help="people splits trained and scored (default 3)")
    parser.add_argument("--valid-people", type=int, help="training-side people held out for tau (default a quarter, at least 3)")
    parser.add_argument("--crop-faces", action="store_true", help="crop the faces first (yalefaces)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--strangers", type=float, default=0.25, help="share of unseen identities not enrolled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--cache-dir", help="feature cache (default: a temporary folder)")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from _timing import machine

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args.cache_dir = args.cache_dir or str(work / "cache")
        results = {}
        if not args.skip_digits:
            results["digits"] = digits(args, work)
        if args.yale:
            results["yalefaces"] = yale(args, work)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
