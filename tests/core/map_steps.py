"""Mapped steps importable by worker processes (Dask, process pools): they run elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

from dotflow_providers import action


@action(retry=2)
def square_where(item: int) -> tuple[int, int]:
    """The square of `item` and the pid that computed it; logs the item to $MAP_STEPS_LOG.

    Items listed in the file $MAP_STEPS_FAIL names (comma-separated) fail, so a resume can be
    tested; a file, because worker processes keep the environment they started with.
    """
    log = os.environ.get("MAP_STEPS_LOG")
    if log:
        with Path(log).open("a") as f:
            f.write(f"{item}\n")
    fail = os.environ.get("MAP_STEPS_FAIL")
    failing = Path(fail).read_text() if fail and Path(fail).exists() else ""
    if str(item) in failing.split(","):
        raise ValueError(f"item {item} fails on purpose")
    return item * item, os.getpid()
