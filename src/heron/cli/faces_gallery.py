"""Placeholder: sub-commands of `heron faces` (filled in by its owner)."""

from __future__ import annotations


def add_commands(commands) -> None:
    """Register this module's sub-commands of `heron faces`."""
