"""One of two modules that each define a `dotflow_task` named `fetch`."""

from __future__ import annotations

from dotflow_prefect import dotflow_task

from ..sidefx import ran


@dotflow_task
def fetch(n: int) -> str:
    ran("a.fetch")
    return f"a{n}"
