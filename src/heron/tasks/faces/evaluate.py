"""Scoring a face run on a folder of people: verification, one-shot identification, strangers.

`evaluate_faces(run, data)` embeds every image once, then measures:
- verification over every pair (or a balanced sample above 200k pairs):
  ROC AUC, TAR at FAR 1e-2 and 1e-3, accuracy / TAR / FAR at the run's tau;
- identification: some people are left out of the gallery as strangers
  (seeded); each other person is enrolled with `enrol_per_person` images
  (seeded), the rest of their images are probes: rank-1 accuracy (nearest
  enrolled embedding) and rank-1 within tau (right person and accepted);
- stranger rejection: the share of the strangers' images whose nearest
  enrolled embedding is farther than tau (they come out `unknown`).
Byte-identical files are scored once (an enrolled copy would match itself).
`score_embeddings` does the same on embeddings from anywhere, so a baseline
encoder is scored by the same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heron.errors import DataError
from heron.tasks.faces import verification as V

__all__ = ["evaluate_faces", "format_table", "gallery_split", "score_embeddings", "unique_files"]

MAX_PAIRS = 200_000


def gallery_split(labels: np.ndarray, enrol_per_person: int = 1, strangers: float = 0.25,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(enrolled, probes, strangers) item indices: a seeded choice of people and of enrolment images.

    `strangers` is the share of people left out of the gallery (at least one
    when it is above 0 and at least 3 people exist). Each gallery person
    enrols `enrol_per_person` images and needs one more as a probe.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    count = 0 if strangers <= 0 or len(people) < 3 else max(1, int(round(strangers * len(people))))
    count = min(count, len(people) - 2)
    shuffled = rng.permutation(people)
    outside = set(shuffled[:count].tolist())
    enrolled, probes, stranger_items = [], [], []
    for person in people:
        items = np.flatnonzero(labels == person)
        if person in outside:
            stranger_items += items.tolist()
            continue
        if len(items) <= enrol_per_person:
            raise DataError(f"person #{person} has {len(items)} images; enrolling {enrol_per_person} and probing "
                            "with the rest needs more: add photos or lower the enrolment count")
        chosen = rng.permutation(items)
        enrolled += chosen[:enrol_per_person].tolist()
        probes += chosen[enrol_per_person:].tolist()
    as_index = lambda items: np.array(items, dtype=np.int64)  # noqa: E731
    return as_index(enrolled), as_index(probes), as_index(stranger_items)


def score_embeddings(embeddings: np.ndarray, labels, tau: float, enrol_per_person: int = 1,
                     strangers: float = 0.25, seed: int = 0) -> tuple[dict, dict]:
    """(metrics, roc) of unit embeddings `(N, d)` with identities `labels`, at threshold `tau`."""
    labels = np.asarray(labels)
    i, j, same = V.pair_indices(labels, max_pairs=MAX_PAIRS, seed=seed)
    distances = V.pair_distances(embeddings, i, j)
    roc = V.roc(distances, same)
    accepted = distances <= tau
    metrics = {
        "people": int(len(np.unique(labels))), "images": int(len(labels)),
        "same_pairs": int(same.sum()), "different_pairs": int((~same).sum()),
        "auc": float(roc["auc"]),
        "tar_at_far_1e-2": V.tar_at_far(distances, same, 1e-2, curve=roc),
        "tar_at_far_1e-3": V.tar_at_far(distances, same, 1e-3, curve=roc),
        "tau": float(tau),
        "accuracy_at_tau": V.verification_accuracy(distances, same, tau),
        "tar_at_tau": float(accepted[same].mean()),
        "far_at_tau": float(accepted[~same].mean()),
    }
    enrolled, probes, outside = gallery_split(labels, enrol_per_person, strangers, seed)
    gallery = embeddings[enrolled]
    index, distance = V.nearest(gallery, embeddings[probes])
    right = labels[enrolled][index] == labels[probes]
    metrics.update({
        "gallery_people": int(len(np.unique(labels[enrolled]))), "enrol_per_person": int(enrol_per_person),
        "probes": int(len(probes)),
        "rank1": float(np.mean(right)),  # V.rank1_accuracy, from the nearest neighbours already found
        "rank1_within_tau": float(np.mean(right & (distance <= tau))),
        "stranger_people": int(len(np.unique(labels[outside]))) if len(outside) else 0,
        "stranger_images": int(len(outside)),
        "stranger_rejection": V.stranger_rejection(gallery, embeddings[outside], tau) if len(outside) else None,
    })
    return metrics, roc


def unique_files(paths: list[Path], labels: list[int]) -> tuple[list[Path], np.ndarray, int]:
    """(paths, labels, copies dropped): byte-identical files (same content hash) are kept once.

    A copy enrolled and also probed would score a perfect match that says
    nothing about the encoder.
    """
    from heron.transfer.cache import content_hash

    seen: set[str] = set()
    keep = []
    for n, path in enumerate(paths):
        digest = content_hash(Path(path))
        if digest not in seen:
            seen.add(digest)
            keep.append(n)
    return [paths[n] for n in keep], np.asarray(labels)[keep], len(paths) - len(keep)


def evaluate_faces(run_path: str | Path, data: str | Path, enrol_per_person: int = 1, seed: int = 0,
                   out_png: str | Path | None = None, out: str | Path | None = None,
                   strangers: float = 0.25) -> dict:
    """Score the face run `run_path` on DATA (one folder per person); writes evaluation.json and a ROC plot.

    Files go to `out` (evaluation.json, roc.png) or, without it, into the run
    folder (evaluation.json, evaluation_roc.png: the run's own roc.png is the
    validation one). `out_png` names the plot explicitly.
    """
    from heron._atomic import atomic_write_json
    from heron.tasks.faces.run import load_face_run
    from heron.tasks.faces.people import find_people

    run = load_face_run(run_path)
    people = find_people(data, min_images=enrol_per_person + 1, min_people=2)
    paths, labels, copies = unique_files(people.paths, people.labels)
    embeddings = run.embed(paths)
    metrics, roc = score_embeddings(embeddings, labels, run.tau, enrol_per_person, strangers, seed)
    metrics.update({"run": str(run.path), "data": str(data), "encoder_hash": run.encoder_hash, "seed": seed,
                    "identical_copies_dropped": copies})
    folder = Path(out) if out is not None else run.path
    png = Path(out_png) if out_png is not None else folder / ("roc.png" if out is not None else "evaluation_roc.png")
    folder.mkdir(parents=True, exist_ok=True)
    _draw(png, roc, run.tau, metrics["far_at_tau"], metrics["tar_at_tau"])
    metrics["roc_png"] = str(png)
    atomic_write_json(folder / "evaluation.json", metrics)
    return metrics


def _draw(path: Path, roc: dict, tau: float, tau_far: float, tau_tar: float) -> None:
    from heron.interpret.roc_figure import save_roc_figure

    save_roc_figure(path, roc["far"], roc["tar"], tau_far=tau_far, tau=tau, tau_tar=tau_tar,
                    title="verification ROC")


def _people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


_ROWS = (
    ("people / images", lambda m: f"{m['people']} / {m['images']}" + (
        f"  ({m['identical_copies_dropped']} byte-identical copies left out)" if m.get("identical_copies_dropped") else "")),
    ("pairs same / different", lambda m: f"{m['same_pairs']} / {m['different_pairs']}"),
    ("ROC AUC", lambda m: f"{m['auc']:.4f}"),
    ("TAR at FAR 1e-2", lambda m: f"{m['tar_at_far_1e-2']:.4f}"),
    ("TAR at FAR 1e-3", lambda m: f"{m['tar_at_far_1e-3']:.4f}"),
    ("tau", lambda m: f"{m['tau']:.4f}"),
    ("accuracy at tau", lambda m: f"{m['accuracy_at_tau']:.4f}"),
    ("TAR / FAR at tau", lambda m: f"{m['tar_at_tau']:.4f} / {m['far_at_tau']:.4f}"),
    ("rank-1 (1 enrolment image)", lambda m: f"{m['rank1']:.4f}  ({m['probes']} probes, {_people(m['gallery_people'])})"),
    ("rank-1 within tau", lambda m: f"{m['rank1_within_tau']:.4f}"),
    ("stranger rejection", lambda m: "-" if m["stranger_rejection"] is None else
     f"{m['stranger_rejection']:.4f}  ({m['stranger_images']} images of {_people(m['stranger_people'])})"),
)


def format_table(metrics: dict) -> str:
    """The metrics as an aligned two-column table."""
    rows = [(name, show(metrics)) for name, show in _ROWS]
    if metrics.get("enrol_per_person", 1) != 1:
        rows[8] = (f"rank-1 ({metrics['enrol_per_person']} enrolment images)", rows[8][1])
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if "roc_png" in metrics:
        lines.append(f"{'ROC plot':<{width}}  {metrics['roc_png']}")
    return "\n".join(lines)
