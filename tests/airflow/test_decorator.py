"""`@task.dotflow` in real DAG runs (dag.test on SQLite): resume on retry, `.expand()`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..sidefx import steps_ran
from .test_operator import task_instance, work, xcom

__all__ = ["work"]


def test_task_dotflow_is_registered_through_the_provider_info() -> None:
    from airflow.sdk import task

    from dotflow_airflow.decorators.dotflow import dotflow_task

    assert task.dotflow is dotflow_task


def test_a_task_dotflow_workflow_resumes_on_the_airflow_retry(work: Path) -> None:
    from dotflow_dags import decorated

    (work / "fail-load").touch()
    dag_run = decorated.test()
    assert dag_run.state == "success"
    ti = task_instance(dag_run, "etl_steps")
    assert ti.try_number == 2
    assert steps_ran(work) == ["extract", "transform", "load", "load"]
    summary = xcom(dag_run, task_id="etl_steps")
    assert [s["restored"] for s in summary["steps"]] == [True, True, False]
    assert summary["workflow_id"] == f"dotflow_decorated/{dag_run.run_id}/etl_steps"


def test_expand_over_three_values_runs_three_workflows(work: Path) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from dotflow_dags import expanded
    from sqlalchemy import select

    dag_run = expanded.test()
    assert dag_run.state == "success"
    assert sorted(steps_ran(work)) == ["scaled-1", "scaled-2", "scaled-3"]
    with create_session() as session:
        rows: list[Any] = list(
            session.execute(
                select(XComModel.map_index, XComModel.value).where(
                    XComModel.dag_id == dag_run.dag_id,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.key == "return_value",
                )
            )
        )
    summaries = {index: XComModel.deserialize_value(row) for index, row in _by_index(rows)}
    assert sorted(summaries) == [0, 1, 2]
    ids = {summary["workflow_id"] for summary in summaries.values()}
    assert ids == {f"dotflow_decorated_expand/{dag_run.run_id}/per_value/{i}" for i in range(3)}
    assert sorted(s["output"] for s in summaries.values()) == [10, 20, 30]


def _by_index(rows: list[Any]) -> list[tuple[int, Any]]:
    class Row:
        def __init__(self, value: Any) -> None:
            self.value = value

    return [(index, Row(value)) for index, value in rows]


def test_a_function_returning_something_else_says_what_to_return() -> None:
    from dotflow_airflow.decorators.dotflow import as_workflow
    from dotflow_providers import ConfigurationError

    with pytest.raises(ConfigurationError, match="must return a Workflow or a non-empty list"):
        as_workflow("extract")


def test_a_task_dotflow_task_resumes_on_retry_under_a_real_scheduler(
    live_airflow: Any, tmp_path: Path
) -> None:
    from .test_live import started

    dag_id = "dotflow_live_decorated"
    live_airflow.wait(
        lambda: live_airflow.get(f"/dags/{dag_id}", check=False) is not None,
        f"{dag_id} to be parsed",
    )
    (tmp_path / "fail-d2").touch()
    run_id = live_airflow.trigger(dag_id, {"dir": str(tmp_path)})
    live_airflow.wait_for_task(dag_id, run_id, "etl", "success", try_number=2)
    # try 1 ran d1 and failed at d2; try 2 restored d1 and ran d2 and d3
    assert started(tmp_path) == ["d1", "d2", "d2", "d3"]
    entry = live_airflow.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/etl/xcomEntries/return_value"
    )
    assert [s["restored"] for s in entry["value"]["steps"]] == [True, False, False]
