"""DAGs the Airflow tests run with dag.test(). Steps log to $DOTFLOW_TEST_DIR/steps.log and
fail on purpose while $DOTFLOW_TEST_DIR/fail-<step> exists (each such file fails once)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG
from tests.sidefx import maybe_fail, ran

from dotflow_airflow import DotflowOperator
from dotflow_providers import Context, ExponentialBackoff, FixedRetry, Workflow, action


@action
def extract(initial_context: Context) -> dict[str, Any]:
    ran("extract")
    return {"rows": [1, 2, 3], "context": initial_context.value}


@action
def transform(previous_context: Context) -> dict[str, Any]:
    ran("transform")
    return {**previous_context.value, "total": sum(previous_context.value["rows"])}


@action(retry=FixedRetry(max_attempts=1))
def load(previous_context: Context) -> dict[str, Any]:
    ran("load")
    maybe_fail("load")
    return {
        "loaded": previous_context.value["total"],
        "context": previous_context.value["context"],
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

with DAG("dotflow_same_run_id", schedule=None, start_date=START, catchup=False) as same_run_id:
    DotflowOperator(
        task_id="etl",
        workflow=etl(),
        store=f"file://{os.environ.get('DOTFLOW_CHECKPOINT_DIR', '/tmp/dotflow-ckpt')}",
        **FAST_RETRY,
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


class CountingAccessor:
    """The real `context["task_state_store"]`, counting calls and the largest value written."""

    def __init__(self, accessor: Any) -> None:
        self.accessor = accessor
        self.calls = {"get": 0, "set": 0, "delete": 0}
        self.largest = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.calls["get"] += 1
        return self.accessor.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.calls["set"] += 1
        self.largest = max(self.largest, len(json.dumps(value)))
        self.accessor.set(key, value)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.accessor.delete(key)


class CountingDotflowOperator(DotflowOperator):
    """A DotflowOperator whose task state store calls are counted into `state-calls.json`."""

    def execute(self, context: Any) -> dict[str, Any]:
        counting = CountingAccessor(context["task_state_store"])
        context["task_state_store"] = counting
        try:
            return super().execute(context)
        finally:
            report = {"calls": counting.calls, "largest": counting.largest}
            (Path(os.environ["DOTFLOW_TEST_DIR"]) / "state-calls.json").write_text(
                json.dumps(report)
            )


def noop() -> None:
    pass


THOUSAND = Workflow()
for _i in range(1000):
    THOUSAND.add(noop, name=f"noop-{_i:04d}")

with DAG("dotflow_thousand", schedule=None, start_date=START, catchup=False) as thousand:
    CountingDotflowOperator(task_id="etl", workflow=THOUSAND)

with DAG(
    "dotflow_templated_store",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"store": "", "mode": "sequential", "conn_id": ""},
) as templated_store:
    DotflowOperator(
        task_id="by_url", workflow=etl(), store="{{ params.store }}", mode="{{ params.mode }}"
    )
    DotflowOperator(task_id="by_conn", workflow=etl(), store_conn_id="{{ params.conn_id }}")


# --- @task.dotflow ---------------------------------------------------------------------------

from airflow.sdk import task  # noqa: E402

with DAG("dotflow_decorated", schedule=None, start_date=START, catchup=False) as decorated:

    @task.dotflow(**FAST_RETRY)
    def etl_steps() -> list[Any]:
        return [extract, transform, load]

    etl_steps()


@action
def scaled(initial_context: Context) -> int:
    ran(f"scaled-{initial_context.value}")
    return int(initial_context.value) * 10


with DAG("dotflow_decorated_expand", schedule=None, start_date=START, catchup=False) as expanded:

    @task.dotflow
    def per_value(value: int) -> Workflow:
        return Workflow().add(scaled, initial_context=value)

    per_value.expand(value=[1, 2, 3])


# --- what the engine tells Airflow about retries ---------------------------------------------

from dotflow_providers import CircuitBreaker  # noqa: E402

#: opens on one failure; Airflow's next try must wait for its reset (3 s, in this process)
BREAKER = CircuitBreaker(threshold=1, reset_after=3.0)


@action(retry=BREAKER)
def guarded() -> str:
    ran("guarded")
    maybe_fail("guarded")
    return "through"


with DAG("dotflow_breaker", schedule=None, start_date=START, catchup=False) as breaker:
    DotflowOperator(task_id="etl", workflow=Workflow().add(extract).add(guarded), **FAST_RETRY)


@action(retry=FixedRetry(max_attempts=1, deadline=60.0))
def hurried() -> None:
    ran("hurried")
    raise ConnectionError("still down")


with DAG("dotflow_deadline", schedule=None, start_date=START, catchup=False) as deadline:
    # Airflow's next try would start 5 minutes later, after the step's 60 s deadline
    DotflowOperator(
        task_id="etl",
        workflow=Workflow().add(extract).add(hurried),
        retries=2,
        retry_delay=timedelta(minutes=5),
    )


# --- Checkpoints-tab requests and lease takeovers (a file store the test also reads) ----------

CHECKPOINT_URL = f"file://{os.environ.get('DOTFLOW_CHECKPOINT_DIR', '/tmp/dotflow-ckpt')}"

with DAG(
    "dotflow_requests",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"key": "default"},
) as requests_dag:
    DotflowOperator(
        task_id="etl",
        workflow=etl(),
        workflow_id="requests-{{ params.key }}",
        store=CHECKPOINT_URL,
    )


@action
def hang() -> str:
    """Hangs while $DOTFLOW_TEST_DIR/hang exists (the runner that will be killed)."""
    ran("hang")
    folder = Path(os.environ["DOTFLOW_TEST_DIR"])
    if (folder / "hang").exists():
        (folder / "hanging").touch()
        import time

        time.sleep(600)
    return "done"


def takeover_workflow() -> Workflow:
    return Workflow().add(extract).add(hang)


with DAG(
    "dotflow_takeover",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"key": "default"},
) as takeover:
    DotflowOperator(
        task_id="etl",
        workflow=takeover_workflow(),
        workflow_id="takeover-{{ params.key }}",
        store=CHECKPOINT_URL,
    )


@action(retry=FixedRetry(max_attempts=2, delay=0.01))
def query_warehouse() -> dict[str, int]:
    """Fails once with what a driver's error says: the DSN, password included."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("warehouse")  # Airflow masks its password from here on
    ran("query")
    marker = Path(os.environ["DOTFLOW_TEST_DIR"]) / "fail-query"
    if marker.exists():
        marker.unlink()
        raise ConnectionError(f"could not connect to postgres://{conn.login}:{conn.password}@db/x")
    return {"rows": 3}


with DAG("dotflow_secret_in_error", schedule=None, start_date=START, catchup=False) as leaky:
    DotflowOperator(
        task_id="etl",
        workflow=Workflow().add(query_warehouse),
        store=CHECKPOINT_URL,
    )
