"""DAG A of the Checkpoints tab's tests (bundle `ui_team_a`, team `team_a`).

Three DotflowOperator tasks, one per kind of store the tab resolves: a `file://` URL (`store=`),
a `dotflow` connection (`store_conn_id="dotflow_ui"`, defined by the test's environment) and
Airflow's task state store; `by_missing_conn` names a connection nobody defined and `plain` is
no DotflowOperator (both: nothing to show). Each workflow's second step fails its first attempt
(so the tab has an attempt history); `by_state`'s last step always fails (so it has a failure
record).
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from dotflow_airflow import DotflowOperator
from dotflow_providers import Context, Workflow, action


def _folder(initial_context: Context) -> Path:
    folder = Path(initial_context.value)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@action
def extract(initial_context: Context) -> int:
    _folder(initial_context)
    return 1


@action(retry=2)
def flaky(initial_context: Context) -> int:
    marker = _folder(initial_context) / "flaky-failed-once"
    if not marker.exists():
        marker.touch()
        raise ConnectionError("upstream unavailable (on purpose, once)")
    return 2


@action
def load(initial_context: Context) -> int:
    return 3


@action(retry=1)
def broken(initial_context: Context) -> int:
    raise ValueError("bad row 42 (on purpose)")


START = pendulum.datetime(2026, 11, 1, tz="UTC")
TASK_DIR = "{{ params.dir }}/{{ task.task_id }}"

with DAG(
    "dotflow_ui_a",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"dir": Param("/nonexistent", type="string")},
):
    DotflowOperator(
        task_id="by_url",
        workflow=Workflow().add(extract).add(flaky).add(load),
        store="file://{{ params.dir }}/url-store",
        initial_context=TASK_DIR,
    )
    DotflowOperator(
        task_id="by_conn",
        workflow=Workflow().add(extract).add(flaky).add(load),
        store_conn_id="dotflow_ui",
        initial_context=TASK_DIR,
    )
    DotflowOperator(
        task_id="by_state",
        workflow=Workflow().add(extract).add(flaky).add(broken),
        initial_context=TASK_DIR,
    )
    DotflowOperator(
        task_id="by_missing_conn",
        workflow=Workflow().add(extract),
        store_conn_id="dotflow_missing",
        initial_context=TASK_DIR,
    )
    EmptyOperator(task_id="plain")
