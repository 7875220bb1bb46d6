"""Flows the Prefect tests run. Steps log to $DOTFLOW_TEST_DIR/steps.log and fail once while
$DOTFLOW_TEST_DIR/fail-<step> exists."""

from __future__ import annotations

from typing import Any

from dotflow_prefect import dotflow_task, run_workflow
from dotflow_providers import Context, FixedRetry, Workflow, action
from prefect import flow

from ..sidefx import maybe_fail, ran


@action
def extract(initial_context: Context) -> dict[str, Any]:
    ran("extract")
    return {"day": initial_context.value, "rows": [3, 4, 5]}


@action
def transform(previous_context: Context) -> dict[str, Any]:
    ran("transform")
    return {**previous_context.value, "total": sum(previous_context.value["rows"])}


@action(retry=FixedRetry(max_attempts=1))
def load(previous_context: Context) -> str:
    ran("load")
    maybe_fail("load")
    return f"loaded {previous_context.value['total']} for {previous_context.value['day']}"


def etl() -> Workflow:
    return Workflow().add(extract).add(transform).add(load)


@flow(retries=1, retry_delay_seconds=0)
def etl_flow(store: Any = None) -> Any:
    return run_workflow(etl(), store=store, initial_context="2026-11-22")


@dotflow_task(retry=2)
def fetch(day: str) -> list[int]:
    ran("fetch")
    return [1, 2, 3]


@dotflow_task
def enrich(rows: list[int]) -> list[int]:
    ran("enrich")
    return [r * 10 for r in rows]


@dotflow_task(retry=FixedRetry(max_attempts=1))
def publish(rows: list[int]) -> int:
    ran("publish")
    maybe_fail("publish")
    return sum(rows)


@flow(retries=1, retry_delay_seconds=0)
def task_flow(day: str) -> int:
    return publish(enrich(fetch(day)))
