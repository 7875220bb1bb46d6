"""Tasks for the `dotflow_flow` tests. Steps log to $DOTFLOW_TEST_DIR/steps.log and fail once
while $DOTFLOW_TEST_DIR/fail-<step> exists; `gate` blocks until $DOTFLOW_TEST_DIR/open exists."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dotflow_prefect import dotflow_task
from dotflow_providers import Context, Workflow, action

from ..sidefx import maybe_fail, ran


def work() -> Path:
    return Path(os.environ["DOTFLOW_TEST_DIR"])


@dotflow_task
def extract(day: str) -> list[int]:
    ran("extract")
    maybe_fail("extract")
    return [1, 2, 3]


@dotflow_task
def transform(rows: list[int]) -> list[int]:
    ran("transform")
    maybe_fail("transform")
    return [r * 10 for r in rows]


@dotflow_task
def load(rows: list[int]) -> int:
    ran("load")
    maybe_fail("load")
    return sum(rows)


@dotflow_task
def report(total: int) -> str:
    ran("report")
    maybe_fail("report")
    return f"total {total}"


@dotflow_task
async def aload(rows: list[int]) -> int:
    ran("aload")
    maybe_fail("aload")
    return sum(rows)


@dotflow_task
def gate(day: str) -> str:
    """Waits (at most a minute) until the test opens the gate: keeps a flow run running."""
    ran("gate")
    (work() / "gate-reached").touch()
    deadline = time.monotonic() + 60
    while not (work() / "open").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return day


@action
def clean_rows(initial_context: Context) -> list[int]:
    ran("clean_rows")
    return [r for r in initial_context.value if r]


@action
def score(previous_context: Context) -> int:
    ran("score")
    maybe_fail("score")
    return len(previous_context.value)


def scoring() -> Workflow:
    return Workflow().add(clean_rows).add(score)


def pipeline(day: str) -> Any:
    """extract -> transform -> load -> report, as the flows below call it."""
    return report(load(transform(extract(day))))
