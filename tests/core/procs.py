"""Helpers for the tests that start real runner processes."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).parents[2]


def wait_for(path: Path, timeout: float = 30) -> None:
    """Wait until a runner process creates `path` (its "I am in the step now" signal)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
