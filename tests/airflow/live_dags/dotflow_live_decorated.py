"""A `@task.dotflow` DAG the live tests trigger through the REST API.

Each step appends its name to `<dir>/started.log` (`dir` is the run's param); step `d2` fails
once while `<dir>/fail-d2` exists.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from dotflow_providers import Context, action


def _started(initial_context: Context, name: str) -> Path:
    folder = Path(initial_context.value)
    with (folder / "started.log").open("a") as f:
        f.write(f"{name}\n")
    return folder


@action
def d1(initial_context: Context) -> int:
    _started(initial_context, "d1")
    return 1


@action(retry=1)  # one attempt: the failure is Airflow's to retry
def d2(initial_context: Context) -> int:
    marker = _started(initial_context, "d2") / "fail-d2"
    if marker.exists():
        marker.unlink()
        raise ConnectionError("d2: upstream unavailable (on purpose, once)")
    return 2


@action
def d3(initial_context: Context) -> int:
    _started(initial_context, "d3")
    return 3


with DAG(
    "dotflow_live_decorated",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    params={"dir": Param("/nonexistent", type="string")},
):

    @task.dotflow(initial_context="{{ params.dir }}", retries=1, retry_delay=timedelta(seconds=0))
    def etl() -> list[object]:
        return [d1, d2, d3]

    etl()
