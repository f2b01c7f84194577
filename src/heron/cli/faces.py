"""`heron faces ...`: face verification and one-shot recognition.

`train` and `evaluate` build and score an embedding run; `enroll`, `verify`,
`identify`, `list` and `remove` use a run with an enrolment database;
`liveness` trains the live-vs-spoof gate that `verify` and `identify` accept.
Each group of sub-commands lives in its own module beside this one.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from heron.cli import faces_gallery, faces_liveness, faces_train

    p = sub.add_parser("faces", help="face verification and one-shot recognition: train, enroll, verify, identify",
                       description="Embeddings trained with the triplet loss, a threshold tau on the distance, "
                       "and an enrolment database of people.")
    commands = p.add_subparsers(dest="faces_command", metavar="COMMAND", required=True)
    faces_train.add_commands(commands)
    faces_gallery.add_commands(commands)
    faces_liveness.add_commands(commands)
