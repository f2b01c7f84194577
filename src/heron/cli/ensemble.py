"""`heron ensemble RUN1 RUN2 ... --data DATA`: average finished runs' probabilities and score them."""

from __future__ import annotations

import argparse

from heron.cli.train import tta_mode


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ensemble", help="score several trained runs and the mean of their probabilities",
        description="Each run predicts the labelled images of DATA (a run's own dataset: its validation split); "
        "the ensemble averages their probabilities. Prints accuracy and log loss of every member and of the ensemble.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders from `heron train` (two or more)")
    p.add_argument("--data", required=True, help="labelled folder or CSV to score on")
    p.add_argument("--tta", type=tta_mode, metavar="flip|multicrop|random:N", help="test-time augmentation per member")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> int:
    import json

    from heron.tasks.classify import ensemble

    scores = ensemble(args.runs, args.data, tta=args.tta)
    scores.pop("probs")
    if args.json:
        print(json.dumps(scores))
        return 0
    width = max(len(m["run"]) for m in scores["members"])
    for member in scores["members"]:
        print(f"{member['run']:<{width}}  valid accuracy {member['accuracy']:.4f}  log loss {member['log_loss']:.4f}")
    mean = scores["ensemble"]
    print(f"{'ensemble':<{width}}  valid accuracy {mean['accuracy']:.4f}  log loss {mean['log_loss']:.4f}"
          f"  ({scores['images']} images)")
    for message in scores["errors"]:
        print(f"skipped: {message}")
    return 0
