"""Logs a summary of each DotflowOperator run when its task instance ends (in the worker)."""

from __future__ import annotations

import logging
from typing import Any

from ..compatibility import hookimpl

log = logging.getLogger("dotflow_airflow")


def _summarise(task_instance: Any) -> None:
    from ..operators.dotflow import DotflowOperator

    task = getattr(task_instance, "task", None)
    run = task.dotflow_run if isinstance(task, DotflowOperator) else None
    if run is None:
        return
    steps = ", ".join(
        f"{s.name}={s.status.value}/{s.attempts}{'(restored)' if s.restored else ''}"
        for s in run.steps
    )
    log.info("dotflow %s %s: %s", run.workflow_id, run.status.value, steps)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _summarise(task_instance)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _summarise(task_instance)
