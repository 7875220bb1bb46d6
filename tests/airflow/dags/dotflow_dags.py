"""DAGs the Airflow tests run with dag.test(). Steps log to $DOTFLOW_TEST_DIR/steps.log and
fail on purpose while $DOTFLOW_TEST_DIR/fail-<step> exists (each such file fails once)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG
from tests.sidefx import maybe_fail, ran

from dotflow_airflow import DotflowOperator
from dotflow_providers import Context, ExponentialBackoff, FixedRetry, Workflow, action


@action
def extract(initial_context: Context) -> dict[str, Any]:
    ran("extract")
    return {"rows": [1, 2, 3], "context": initial_context.storage}


@action
def transform(previous_context: Context) -> dict[str, Any]:
    ran("transform")
    return {**previous_context.storage, "total": sum(previous_context.storage["rows"])}


@action(retry=FixedRetry(max_attempts=1))
def load(previous_context: Context) -> dict[str, Any]:
    ran("load")
    maybe_fail("load")
    return {
        "loaded": previous_context.storage["total"],
        "context": previous_context.storage["context"],
    }


@action(retry=ExponentialBackoff(max_attempts=3, initial=0.01, retry_on=(ConnectionError,)))
def validate(previous_context: Context) -> None:
    ran("validate")
    raise ValueError("row 7 has a negative price: not something a retry can fix")


def etl() -> Workflow:
    return Workflow().add(extract).add(transform).add(load)


START = pendulum.datetime(2026, 11, 1, tz="UTC")
FAST_RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}

with DAG("dotflow_resume", schedule=None, start_date=START, catchup=False) as resume:
    DotflowOperator(task_id="etl", workflow=etl(), **FAST_RETRY)

with DAG("dotflow_resume_s3", schedule=None, start_date=START, catchup=False) as resume_s3:
    DotflowOperator(
        task_id="etl", workflow="dotflow_dags:etl", store_conn_id="dotflow_s3", **FAST_RETRY
    )

with DAG("dotflow_permanent", schedule=None, start_date=START, catchup=False) as permanent:
    DotflowOperator(
        task_id="etl",
        workflow=Workflow().add(extract).add(validate),
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

with DAG("dotflow_templated", schedule=None, start_date=START, catchup=False) as templated:
    DotflowOperator(
        task_id="etl",
        workflow=etl(),
        workflow_id="sales-{{ dag.dag_id }}-{{ ds_nodash }}",
        initial_context={"run": "{{ run_id }}", "day": "{{ ds }}"},
        store=f"file://{os.environ.get('DOTFLOW_CHECKPOINT_DIR', '/tmp/dotflow-ckpt')}",
    )


@action
def huge() -> str:
    ran("huge")
    return "x" * 100_000  # more than the task state store keeps


with DAG("dotflow_too_large", schedule=None, start_date=START, catchup=False) as too_large:
    DotflowOperator(task_id="etl", workflow=Workflow().add(huge), **FAST_RETRY)
