"""DAG B of the Checkpoints tab's tests (bundle `ui_team_b`, team `team_b`): a workflow that
a viewer of team_a's DAG must never see."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from dotflow_airflow import DotflowOperator
from dotflow_providers import Context, Workflow, action


@action
def confidential(initial_context: Context) -> str:
    return "team b only"


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
    )
