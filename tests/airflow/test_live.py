"""DotflowOperator under a real scheduler (LocalExecutor), dag-processor and api-server, with
DAG runs triggered, cleared and marked failed through the REST API, as users do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .live import LiveAirflow

FIVE = ["s1", "s2", "s3", "s4", "s5"]


def started(folder: Path) -> list[str]:
    log = folder / "started.log"
    return log.read_text().split() if log.exists() else []


def summary(live: LiveAirflow, dag_id: str, run_id: str) -> dict[str, Any]:
    entry = live.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/etl/xcomEntries/return_value")
    value: dict[str, Any] = entry["value"]
    return value


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_airflow_retry_resumes_at_the_failed_step(
    live_airflow: LiveAirflow, tmp_path: Path
) -> None:
    (tmp_path / "fail-s3").touch()
    run_id = live_airflow.trigger("dotflow_live", {"dir": str(tmp_path)})
    live_airflow.wait_for_task("dotflow_live", run_id, "etl", "success", try_number=2)
    # try 1 ran s1-s3 and failed at s3; try 2 restored s1 and s2 and ran s3-s5
    assert started(tmp_path) == ["s1", "s2", "s3", "s3", "s4", "s5"]
    restored = [s["restored"] for s in summary(live_airflow, "dotflow_live", run_id)["steps"]]
    assert restored == [True, True, False, False, False]


def test_clearing_a_task_instance_runs_every_step_again(
    live_airflow: LiveAirflow, tmp_path: Path
) -> None:
    run_id = live_airflow.trigger("dotflow_live", {"dir": str(tmp_path)})
    live_airflow.wait_for_task("dotflow_live", run_id, "etl", "success", try_number=1)
    assert started(tmp_path) == FIVE
    live_airflow.clear("dotflow_live", run_id, "etl")
    live_airflow.wait_for_task("dotflow_live", run_id, "etl", "success", try_number=2)
    assert started(tmp_path) == FIVE + FIVE
    restored = [s["restored"] for s in summary(live_airflow, "dotflow_live", run_id)["steps"]]
    assert restored == [False] * 5


def test_keep_checkpoints_on_clear_resumes_a_cleared_task_instance(
    live_airflow: LiveAirflow, tmp_path: Path
) -> None:
    run_id = live_airflow.trigger("dotflow_live_keep", {"dir": str(tmp_path)})
    live_airflow.wait_for_task("dotflow_live_keep", run_id, "etl", "success", try_number=1)
    live_airflow.clear("dotflow_live_keep", run_id, "etl")
    live_airflow.wait_for_task("dotflow_live_keep", run_id, "etl", "success", try_number=2)
    assert started(tmp_path) == FIVE  # nothing ran again
    restored = [s["restored"] for s in summary(live_airflow, "dotflow_live_keep", run_id)["steps"]]
    assert restored == [True] * 5


def test_marking_a_running_task_failed_stops_it_between_steps(
    live_airflow: LiveAirflow, tmp_path: Path
) -> None:
    dag_id = "dotflow_live_kill"
    run_id = live_airflow.trigger(dag_id, {"dir": str(tmp_path)})
    live_airflow.wait(lambda: "slow" in started(tmp_path), "step 2 (slow) to start")
    pid = live_airflow.task_instance(dag_id, run_id, "etl")["pid"]
    assert pid
    live_airflow.mark_failed(dag_id, run_id, "etl")
    live_airflow.wait(lambda: not alive(pid), f"the task process {pid} to exit")
    # Airflow's SIGTERM reached on_kill, which cancelled the run: slow's cancel hook ended it
    # (without it, slow would have waited for the SIGKILL that follows SIGTERM by 5 s)
    assert (tmp_path / "cancel-hook-slow").exists()
    assert started(tmp_path) == ["s1", "slow"]  # steps 3-5 never started
    assert live_airflow.task_instance(dag_id, run_id, "etl")["state"] == "failed"
    # s1 is committed; slow, which returned after the cancel, is not, nor anything after it
    keys = [
        value["key"]
        for value in live_airflow.state_store(dag_id, run_id, "etl").values()
        if isinstance(value, dict) and "data" in value
    ]
    step_keys = [key.rpartition("/")[2] for key in keys if "/steps/" in key]
    assert len(step_keys) == 1, keys
    assert "s1" in step_keys[0], keys
