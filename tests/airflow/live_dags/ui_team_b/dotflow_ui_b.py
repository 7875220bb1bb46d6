"""DAG B of the Checkpoints tab's tests (bundle `ui_team_b`, team `team_b`): a workflow that
a viewer of team_a's DAG must never see."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, Param

from dotflow_airflow import DotflowOperator
from dotflow_airflow.operators.dotflow import default_workflow_id
from dotflow_providers import Context, Workflow, action


@action
def confidential(initial_context: Context) -> str:
    return "team b only"


def record_checkpoints(context: Any) -> None:
    """Test stand-in for the operator's own `dotflow_checkpoints` record (see DAG A)."""
    ti = context["ti"]
    store = {"kind": "url", "url": str(context["task"].store)}
    workflow_id = default_workflow_id(ti.dag_id, ti.run_id, ti.task_id)
    ti.xcom_push(key="dotflow_checkpoints", value={"workflow_id": workflow_id, "store": store})


with DAG(
    "dotflow_ui_b",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    params={"dir": Param("/nonexistent", type="string")},
):
    DotflowOperator(
        task_id="secret",
        workflow=Workflow().add(confidential),
        store="file://{{ params.dir }}/b-store",
        initial_context="{{ params.dir }}",
        on_execute_callback=record_checkpoints,
    )
