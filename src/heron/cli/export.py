"""Placeholder (filled in by its owner)."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Register this module's sub-command."""
