"""`heron faces enroll|verify|identify|list|remove`: people in an enrolment database, matched by a face run.

`enroll RUN --db DB NAME IMAGE...` adds a person's photos (folders expanded)
in one transaction; `verify RUN --db DB NAME IMAGE` answers `yes` or `no` with
the distance and the run's threshold tau; `identify RUN --db DB IMAGE` answers
the nearest person's name, or `unknown` when even the nearest is beyond tau,
then the top k with their distances; `list --db DB` and `remove --db DB NAME`
look after the database.

Exit codes: 0 answered (a `no` or `unknown` is an answer), 2 a user error (a
bad image, no face found, an unknown name, a database from another encoder),
3 `--liveness RUN` judged the photo a spoof (printed as `spoof` and its
score; no matching was done).

Argument parsing imports nothing heavy; torch and numpy load inside `run_*`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heron.errors import DataError, ImageError

SPOOF_EXIT_CODE = 3

_EXIT_CODES = ("exit codes: 0 answered (`no` and `unknown` are answers), 2 an error a user can fix "
               "(bad image, unknown name, database of another encoder), 3 `--liveness` judged the photo a spoof")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `enroll`, `verify`, `identify`, `list` and `remove` under `heron faces`."""
    p = commands.add_parser("enroll", help="add a person's photos to an enrolment database",
                            description="Embed every photo with the run's encoder and add them to NAME in one "
                            "transaction (all or nothing). A new database is tied to the run's encoder.")
    _add_run_and_db(p)
    p.add_argument("name", metavar="NAME", help="the person's name (enrolling an existing name adds to their photos)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos of the person, or folders of them (searched recursively)")
    p.set_defaults(func=run_enroll)

    p = commands.add_parser("verify", help="is this photo NAME? yes/no, distance and tau",
                            description="1:1 verification: the distance from the photo to NAME's nearest enrolled "
                            "embedding against the run's threshold tau.", epilog=_EXIT_CODES)
    _add_run_and_db(p)
    p.add_argument("name", metavar="NAME", help="an enrolled person")
    p.add_argument("image", metavar="IMAGE", help="the photo to check")
    _add_liveness_and_json(p)
    p.set_defaults(func=run_verify)

    p = commands.add_parser("identify", help="who is this? the nearest enrolled person, or `unknown`",
                            description="1:K identification: the enrolled people nearest to the photo; the first "
                            "line is the nearest one's name, or `unknown` when they are beyond the run's tau.",
                            epilog=_EXIT_CODES)
    _add_run_and_db(p)
    p.add_argument("image", metavar="IMAGE", help="the photo to identify")
    p.add_argument("--top-k", type=_positive, default=5, metavar="K", help="people to list (default %(default)s)")
    _add_liveness_and_json(p)
    p.set_defaults(func=run_identify)

    p = commands.add_parser("list", help="the people in an enrolment database and their photo counts")
    p.add_argument("--db", required=True, metavar="DB", help="the enrolment database (SQLite file)")
    p.set_defaults(func=run_list)

    p = commands.add_parser("remove", help="delete a person and all their embeddings from an enrolment database")
    p.add_argument("--db", required=True, metavar="DB", help="the enrolment database (SQLite file)")
    p.add_argument("name", metavar="NAME", help="the person to remove")
    p.set_defaults(func=run_remove)


def _add_run_and_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder from `heron faces train` (its encoder and tau)")
    p.add_argument("--db", required=True, metavar="DB", help="the enrolment database (SQLite file)")


def _add_liveness_and_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--liveness", metavar="RUN", help="a run from `heron faces liveness train`: refuse a spoofed "
                   "photo (answer `spoof`, exit code 3) before any matching")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text}: give a whole number, 1 or more")
    return int(text)


# ---- shared steps ---------------------------------------------------------------------------------------------


def _image_files(arguments: list[str]) -> list[Path]:
    """The files named, folders expanded; ImageError for an argument that is not there or a folder with no images."""
    from heron.cli.predict import expand

    files, missing, skipped = expand(arguments)
    if missing:
        raise ImageError(missing[0])
    for message in skipped:
        print(f"heron: {message}", file=sys.stderr)
    return files


def _embed(face_run, files: list[Path]):
    """Embeddings `(n, dim)` of the photos (the run crops each face first when it was trained on crops).

    An unreadable file, or a photo with no face found, raises ImageError naming it
    before anything is written.
    """
    return face_run.embed(list(files))


def _open_gallery(db: str, face_run, create: bool):
    from heron.tasks.faces.gallery import FaceGallery

    return FaceGallery.open(db, face_run.encoder_hash, face_run.dim, create=create)


def _spoof_answer(args: argparse.Namespace) -> int | None:
    """With `--liveness RUN`: print `spoof` and its score and return exit code 3 for a spoof; None otherwise."""
    if not args.liveness:
        return None
    from heron.cli.faces_liveness import check_liveness

    label, score = check_liveness(args.liveness, args.image)
    if label != "spoof":
        return None
    if args.json:
        print(json.dumps({"image": args.image, "answer": "spoof", "spoof_score": round(float(score), 6)}))
    else:
        print("spoof")
        print(f"spoof score {score:.4f} (liveness run {args.liveness}); no matching done")
    return SPOOF_EXIT_CODE


# ---- commands -------------------------------------------------------------------------------------------------


def run_enroll(args: argparse.Namespace) -> int:
    """Embed every photo, then add them all to NAME in one transaction; print what was added."""
    from heron.tasks.faces.run import load_face_run

    files = _image_files(args.images)
    face_run = load_face_run(args.run)
    existing = Path(args.db).is_file()
    gallery = _open_gallery(args.db, face_run, create=False) if existing else None  # wrong encoder: fail first
    try:
        embeddings = _embed(face_run, files)
        if gallery is None:  # a new file is made only once every photo is embedded
            gallery = _open_gallery(args.db, face_run, create=True)
        added = gallery.enroll(args.name, embeddings, [str(path) for path in files])
        total = dict(gallery.people())[args.name]
    finally:
        if gallery is not None:
            gallery.close()
    print(f"{args.name}: added {added} embedding{'s' if added != 1 else ''} ({total} in all) to {args.db}")
    for path in files:
        print(f"  + {path}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """`yes` or `no`, then the distance to NAME's nearest embedding and tau."""
    from heron.tasks.faces.run import load_face_run

    face_run = load_face_run(args.run)
    with _open_gallery(args.db, face_run, create=False) as gallery:
        if args.name not in gallery:
            raise DataError(f"{args.db}: no one named {args.name!r} is enrolled; "
                            f"`heron faces list --db {args.db}` shows who is")
        spoof = _spoof_answer(args)
        if spoof is not None:
            return spoof
        distance = gallery.verify(args.name, _embed(face_run, [Path(args.image)])[0])
    same = distance <= face_run.tau
    if args.json:
        print(json.dumps({"image": args.image, "name": args.name, "answer": "yes" if same else "no",
                          "distance": round(distance, 6), "tau": face_run.tau}))
    else:
        print("yes" if same else "no")
        print(f"distance {distance:.4f}  tau {face_run.tau:.4f}")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    """The nearest person's name (or `unknown` beyond tau), then the top k with their distances."""
    from heron.tasks.faces.run import load_face_run

    face_run = load_face_run(args.run)
    with _open_gallery(args.db, face_run, create=False) as gallery:
        spoof = _spoof_answer(args)
        if spoof is not None:
            return spoof
        top = gallery.identify(_embed(face_run, [Path(args.image)])[0], k=args.top_k)
        enrolled = gallery.people_count()
    match = top[0][0] if top and top[0][1] <= face_run.tau else None
    if args.json:
        print(json.dumps({"image": args.image, "answer": match or "unknown", "tau": face_run.tau,
                          "top": [{"name": name, "distance": round(d, 6)} for name, d in top]}))
        return 0
    print(match or "unknown")
    if not top:
        print(f"heron: {args.db}: no one is enrolled yet", file=sys.stderr)
    print(f"top {len(top)} of {enrolled} enrolled, tau {face_run.tau:.4f}:")
    for name, distance in top:
        print(f"  {distance:.4f}  {name}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """One line per person: name and number of embeddings."""
    from heron.tasks.faces.gallery import FaceGallery

    with FaceGallery.open(args.db) as gallery:
        people = gallery.people()
        encoder = gallery.encoder_hash
    width = max((len(name) for name, _ in people), default=0)
    for name, count in people:
        print(f"{name:<{width}}  {count}")
    print(f"heron: {args.db}: {len(people)} people, {sum(c for _, c in people)} embeddings, "
          f"encoder {encoder[:12]}", file=sys.stderr)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Delete NAME and all their embeddings."""
    from heron.tasks.faces.gallery import FaceGallery

    with FaceGallery.open(args.db) as gallery:
        removed = gallery.remove(args.name)
    if not removed:
        raise DataError(f"{args.db}: no one named {args.name!r} is enrolled; "
                        f"`heron faces list --db {args.db}` shows who is")
    print(f"removed {args.name} ({removed} embedding{'s' if removed != 1 else ''}) from {args.db}")
    return 0
