"""What the adapter tests' steps do on the side: log that they ran, fail once on request.

Steps log to $DOTFLOW_TEST_DIR/steps.log and fail once while $DOTFLOW_TEST_DIR/fail-<step>
exists, so a test can tell exactly which steps ran on which try.
"""

from __future__ import annotations

import os
from pathlib import Path


def _dir() -> Path:
    return Path(os.environ["DOTFLOW_TEST_DIR"])


def ran(name: str) -> None:
    with (_dir() / "steps.log").open("a") as f:
        f.write(f"{name}\n")


def maybe_fail(name: str) -> None:
    marker = _dir() / f"fail-{name}"
    if marker.exists():
        marker.unlink()
        raise ConnectionError(f"{name}: upstream unavailable (on purpose, once)")


def steps_ran(folder: Path) -> list[str]:
    return (folder / "steps.log").read_text().split()
