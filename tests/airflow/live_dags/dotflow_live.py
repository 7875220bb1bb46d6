"""DAGs the live tests trigger through the REST API (parsed by a real dag-processor).

Every step appends its name to `<dir>/started.log` when it starts, `dir` being the DAG run's
`dir` param (handed to the steps as their initial context). Step `s3` fails once while
`<dir>/fail-s3` exists; step `slow` runs until the run is cancelled (its cancel hook writes
`<dir>/cancel-hook-slow`).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from dotflow_airflow import DotflowOperator
from dotflow_providers import Context, Workflow, action


def _started(initial_context: Context, name: str) -> Path:
    folder = Path(initial_context.value)
    with (folder / "started.log").open("a") as f:
        f.write(f"{name}\n")
    return folder


@action
def s1(initial_context: Context) -> int:
    _started(initial_context, "s1")
    return 1


@action
def s2(initial_context: Context) -> int:
    _started(initial_context, "s2")
    return 2


@action(retry=1)  # one attempt: the failure is Airflow's to retry
def s3(initial_context: Context) -> int:
    marker = _started(initial_context, "s3") / "fail-s3"
    if marker.exists():
        marker.unlink()
        raise ConnectionError("s3: upstream unavailable (on purpose, once)")
    return 3


@action
def s4(initial_context: Context) -> int:
    _started(initial_context, "s4")
    return 4


@action
def s5(initial_context: Context) -> int:
    _started(initial_context, "s5")
    return 5


_cancelled = threading.Event()


def _slow(initial_context: Context) -> int:
    folder = _started(initial_context, "slow")
    # Long enough that only a cancel ends it before Airflow's SIGKILL (5 s after SIGTERM).
    if _cancelled.wait(120):
        (folder / "cancel-hook-slow").touch()
    return 2


slow = dataclasses.replace(action(_slow, name="slow"), on_cancel=_cancelled.set)

START = pendulum.datetime(2026, 11, 1, tz="UTC")
PARAMS = {"dir": Param("/nonexistent", type="string")}
ONE_RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}


def five() -> Workflow:
    return Workflow().add(s1).add(s2).add(s3).add(s4).add(s5)


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, params=PARAMS)


with _dag("dotflow_live") as live:
    DotflowOperator(task_id="etl", workflow=five(), initial_context="{{ params.dir }}", **ONE_RETRY)

with _dag("dotflow_live_keep") as live_keep:
    DotflowOperator(
        task_id="etl",
        workflow=five(),
        initial_context="{{ params.dir }}",
        keep_checkpoints_on_clear=True,
        **ONE_RETRY,
    )

with _dag("dotflow_live_kill") as live_kill:
    DotflowOperator(
        task_id="etl",
        workflow=Workflow().add(s1).add(slow).add(s3).add(s4).add(s5),
        initial_context="{{ params.dir }}",
    )
