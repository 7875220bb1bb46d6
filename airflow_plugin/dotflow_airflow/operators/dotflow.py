"""`DotflowOperator`: runs a workflow inside one Airflow task, resuming across Airflow retries."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from dotflow_providers import (
    CheckpointError,
    CheckpointStore,
    ConfigurationError,
    InputChanged,
    Run,
    Status,
    Workflow,
    WorkflowDefinitionChanged,
    load_workflow,
    store_from_url,
)
from dotflow_providers.tracing import LoggingTracer, Tracers

from ..compatibility import AirflowFailException, BaseOperator, Context
from ..hooks.dotflow import DotflowHook
from ..links import DotflowCheckpointLink
from ..state_store import TaskStateCheckpoints

#: Errors that another Airflow try cannot fix.
_PERMANENT = (CheckpointError, ConfigurationError, WorkflowDefinitionChanged, InputChanged)


def default_workflow_id(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Unique per DAG, run and task (and mapped index); the same for every try of it."""
    raw = f"{dag_id}/{run_id}/{task_id}" + (f"/{map_index}" if map_index >= 0 else "")
    return re.sub(r"[^A-Za-z0-9._:+@=,~/-]", "_", raw)


def _json_native(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


class DotflowOperator(BaseOperator):
    """Run a dotflow-providers `Workflow` as one Airflow task.

    The engine retries and times out each step by its own policy and checkpoints each
    completed step. When Airflow retries the task, the completed steps are skipped and their
    outputs restored. Checkpoints go to `store` (a store or URL), to the `dotflow` connection
    `store_conn_id`, or by default to Airflow's own task state store.

    A step that fails with an error its policy never retries fails the task with
    `AirflowFailException` (no Airflow retry); a step that used up its retries raises an
    ordinary error, so the task's `retries` apply. Returns a JSON summary (no step outputs but
    the last, and only when it is JSON data) as the `return_value` XCom.
    """

    template_fields: Sequence[str] = ("workflow_id", "initial_context")
    template_fields_renderers = {"initial_context": "json"}
    operator_extra_links = (DotflowCheckpointLink(),)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        workflow: Workflow | str,
        workflow_id: str | None = None,
        initial_context: Any = None,
        mode: str = "sequential",
        store: CheckpointStore | str | None = None,
        store_conn_id: str | None = None,
        on_input_change: Literal["raise", "reset", "reuse"] = "raise",
        keep_going: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if store is not None and store_conn_id is not None:
            raise ConfigurationError("give DotflowOperator either store or store_conn_id, not both")
        if mode == "background":
            raise ConfigurationError("mode='background' makes no sense inside an Airflow task")
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.initial_context = initial_context
        self.mode = mode
        self.store = store
        self.store_conn_id = store_conn_id
        self.on_input_change = on_input_change
        self.keep_going = keep_going
        self._run: Run | None = None

    def _checkpoint_store(self, context: Context) -> tuple[CheckpointStore, bool]:
        """The store to use, and whether the engine should take a lease on it."""
        if self.store_conn_id is not None:
            return DotflowHook(self.store_conn_id).get_store(), True
        if isinstance(self.store, str):
            return store_from_url(self.store), True
        if self.store is not None:
            return self.store, True
        # Airflow runs one try of a task instance at a time: no lease needed on its own store.
        return TaskStateCheckpoints(context["task_state_store"]), False

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        workflow_id = self.workflow_id or default_workflow_id(
            ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)
        )
        store, lock = self._checkpoint_store(context)
        base = load_workflow(self.workflow)
        workflow: Workflow = base.copy(
            workflow_id=workflow_id,
            store=store,
            on_input_change=self.on_input_change,
            lock=lock,
            tracer=Tracers(
                base.tracer, LoggingTracer(self.log, logging.INFO, starts=False, retries=True)
            ),
        )
        self.log.info(
            "dotflow: running %s (%d steps) in %s mode, try %s, checkpoints in %s",
            workflow_id,
            len(workflow.steps),
            self.mode,
            ti.try_number,
            store.url,
        )
        ti.xcom_push(key="dotflow_workflow_id", value=workflow_id)
        try:
            run = workflow.start(
                mode=self.mode, keep_going=self.keep_going, initial_context=self.initial_context
            )
        except _PERMANENT as exc:
            raise AirflowFailException(f"dotflow: {exc}") from exc
        self._run = run
        summary = run.summary()
        if run.status is Status.COMPLETED:
            if _json_native(run.output):
                summary["output"] = run.output
            return summary
        failed = run.failed_step
        if failed is not None and not failed.retryable:
            raise AirflowFailException(
                f"dotflow: step {failed.name!r} failed with an error its policy never retries "
                f"({failed.error}); not retrying the task"
            )
        run.raise_for_status()
        return summary

    def on_kill(self) -> None:
        """Ask the running workflow to stop between steps and attempts."""
        if self._run is not None:
            self._run.cancel()
