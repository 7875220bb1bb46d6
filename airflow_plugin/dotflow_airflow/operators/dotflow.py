"""`DotflowOperator`: runs a workflow inside one Airflow task, resuming across Airflow retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any, Literal

from dotflow_providers import (
    CheckpointStore,
    ConfigurationError,
    Run,
    Status,
    Tracer,
    Workflow,
    load_workflow,
    store_from_url,
)
from dotflow_providers.integration import PERMANENT_ERRORS, task_tracer, workflow_id_from

from ..compatibility import AirflowFailException, BaseOperator, Context, first_try_after_clear
from ..hooks.dotflow import DotflowHook
from ..links import DotflowCheckpointLink
from ..state_store import TaskStateCheckpoints


def default_workflow_id(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Unique per DAG, run and task (and mapped index); the same for every try of it."""
    parts: list[object] = [dag_id, run_id, task_id]
    return workflow_id_from(*parts, map_index) if map_index >= 0 else workflow_id_from(*parts)


def _json_native(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


def _check_mode(mode: str) -> None:
    if mode == "background":
        raise ConfigurationError("mode='background' makes no sense inside an Airflow task")


class _RunHandle(Tracer):
    """Holds the `Run` from the moment the engine creates it, before any step starts.

    `workflow.start()` returns the run only when it ends, so `on_kill` (Airflow's SIGTERM
    handler) needs it from here. A kill that arrives before the run exists is kept and
    applied as soon as it does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: Run | None = None
        self._killed = False

    @property
    def run(self) -> Run | None:
        return self._run

    def workflow_started(self, run: Run) -> None:
        with self._lock:
            self._run = run
            killed = self._killed
        if killed:
            run.cancel()

    def cancel(self) -> None:
        """Cancel the run (now, or when it starts)."""
        with self._lock:
            self._killed = True
            run = self._run
        if run is not None:
            run.cancel()


class DotflowOperator(BaseOperator):
    """Run a dotflow-providers `Workflow` as one Airflow task.

    The engine retries and times out each step by its own policy and checkpoints each
    completed step. When Airflow retries the task, the completed steps are skipped and their
    outputs restored. When the task instance is cleared (UI, REST API, `airflow tasks clear`),
    its checkpoints are discarded and every step runs again, unless
    `keep_checkpoints_on_clear=True` (then a cleared task resumes like a retry). Checkpoints go
    to `store` (a store or URL), to the `dotflow` connection `store_conn_id`, or by default to
    Airflow's own task state store.

    A step that fails with an error its policy never retries fails the task with
    `AirflowFailException` (no Airflow retry); a step that used up its retries raises an
    ordinary error, so the task's `retries` apply. Marking the running task failed (or its
    `execution_timeout`) cancels the run: the running step's cancel hook is called, no further
    step or attempt starts and nothing more is committed. Returns a JSON summary (no step
    outputs but the last, and only when it is JSON data) as the `return_value` XCom.
    """

    template_fields: Sequence[str] = (
        "workflow_id",
        "initial_context",
        "store",
        "store_conn_id",
        "mode",
    )
    template_fields_renderers = {"initial_context": "json"}
    operator_extra_links = (DotflowCheckpointLink(),)
    ui_color = "#e8f4fd"
    # Set by execute(), not __init__: Airflow deep-copies operators, and a handle holds a lock.
    _handle: _RunHandle | None = None

    def __init__(
        self,
        *,
        workflow: Workflow | str,
        workflow_id: str | None = None,
        initial_context: Any = None,
        mode: str = "sequential",
        store: CheckpointStore | str | None = None,
        store_conn_id: str | None = None,
        on_change: Literal["rerun", "raise", "reuse"] = "rerun",
        keep_going: bool = False,
        keep_checkpoints_on_clear: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if store is not None and store_conn_id is not None:
            raise ConfigurationError("give DotflowOperator either store or store_conn_id, not both")
        _check_mode(mode)
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.initial_context = initial_context
        self.mode = mode
        self.store = store
        self.store_conn_id = store_conn_id
        self.on_change = on_change
        self.keep_going = keep_going
        self.keep_checkpoints_on_clear = keep_checkpoints_on_clear

    def _checkpoint_store(self, context: Context) -> tuple[CheckpointStore, bool]:
        """The store to use, and whether the engine should take a lease on it."""
        # a template that renders empty means "not given"
        if self.store_conn_id:
            return DotflowHook(self.store_conn_id).get_store(), True
        if isinstance(self.store, str) and self.store:
            return store_from_url(self.store), True
        if self.store is not None and not isinstance(self.store, str):
            return self.store, True
        # Airflow runs one try of a task instance at a time: no lease needed on its own store.
        return TaskStateCheckpoints(context["task_state_store"]), False

    def execute(self, context: Context) -> dict[str, Any]:
        handle = self._handle = _RunHandle()
        ti = context["ti"]
        _check_mode(self.mode)
        workflow_id = self.workflow_id or default_workflow_id(
            ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)
        )
        store, lock = self._checkpoint_store(context)
        base = load_workflow(self.workflow)
        workflow: Workflow = base.copy(
            workflow_id=workflow_id,
            store=store,
            on_change=self.on_change,
            lock=lock,
            tracer=task_tracer(self.log, handle, base.tracer),
        )
        cleared = first_try_after_clear(ti.try_number, ti.max_tries, self.retries or 0)
        self.log.info(
            "dotflow: running %s (%d steps) in %s mode, try %s%s, checkpoints in %s",
            workflow_id,
            len(workflow.steps),
            self.mode,
            ti.try_number,
            " (first after a clear)" if cleared else "",
            store.url,
        )
        ti.xcom_push(key="dotflow_workflow_id", value=workflow_id)
        try:
            if cleared and not self.keep_checkpoints_on_clear:
                self.log.info("dotflow: the task instance was cleared: starting over")
                workflow.reset(self.initial_context)
            run = workflow.start(
                mode=self.mode, keep_going=self.keep_going, initial_context=self.initial_context
            )
        except PERMANENT_ERRORS as exc:
            raise AirflowFailException(f"dotflow: {exc}") from exc
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

    @property
    def _run(self) -> Run | None:
        """The run being executed, from before its first step (None before execute())."""
        return None if self._handle is None else self._handle.run

    @_run.setter
    def _run(self, run: Run) -> None:
        # tests hand the operator a run started elsewhere, as execute() would hold it
        self._handle = _RunHandle()
        self._handle.workflow_started(run)

    def on_kill(self) -> None:
        """Cancel the running workflow: its running step's cancel hook, no further step.

        Airflow calls this from its SIGTERM handler, on the thread that runs the steps, which
        may be holding a lock the cancel hooks need (the supervisor channel's, a step's own):
        the cancel runs on a thread of its own so the handler returns at once.
        """
        handle = self._handle
        if handle is not None:
            threading.Thread(target=handle.cancel, name="dotflow-on-kill", daemon=True).start()
