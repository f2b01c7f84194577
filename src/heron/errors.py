"""Errors a user can cause.

Every exception a user can fix (a bad path, a corrupt image, a wrong label
file, an unknown architecture) is a `HeronError`. The command line prints its
message as one line and exits with code 2; Python callers catch it like any
other exception. The message names the file and says what to do.
"""

from __future__ import annotations

__all__ = ["HeronError", "ImageError", "DataError", "ModelError", "TrainingError"]


class HeronError(Exception):
    """A problem with the user's input or setup, with a one-line fix."""

    exit_code = 2


class ImageError(HeronError):
    """An image file that cannot be used: missing, empty, corrupt, too large."""


class DataError(HeronError):
    """A dataset that cannot be used: empty class, missing labels, one class."""


class ModelError(HeronError):
    """An unknown architecture or weights that do not fit the model."""


class TrainingError(HeronError):
    """Training that cannot go on: NaN loss, an interrupted or damaged run."""
