"""`DotflowOperator`: runs a workflow inside one Airflow task, resuming across Airflow retries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from dotflow_providers import (
    CheckpointStore,
    CircuitBreaker,
    ConfigurationError,
    Run,
    Status,
    Tracer,
    Tracers,
    Workflow,
    load_workflow,
    redact_errors,
    store_from_url,
)
from dotflow_providers.integration import (
    PERMANENT_ERRORS,
    has_checkpoints,
    take_next_start,
    workflow_id_from,
)
from dotflow_providers.retry import BreakerState
from dotflow_providers.storage import public_url

from ..compatibility import (
    AirflowFailException,
    BaseOperator,
    Context,
    redact_text,
    try_after_clear,
)
from ..hooks.dotflow import DotflowHook
from ..links import DotflowCheckpointLink
from ..state_store import TaskStateCheckpoints
from ._logs import TaskLog, TaskLogTracer, TryLog, engine_warnings_to
from ._retry import DEADLINES, Verdict, WorkflowTryFailed, deadline_anchor, decide
from ._retry import with_engine_policy as _with_engine_policy

#: XCom key of the run-time record the Checkpoints tab reads: workflow id and store
CHECKPOINTS_XCOM = "dotflow_checkpoints"


def default_workflow_id(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Unique per DAG, run and task (and mapped index); the same for every try of it."""
    parts: list[object] = [dag_id, run_id, task_id]
    return workflow_id_from(*parts, map_index) if map_index >= 0 else workflow_id_from(*parts)


def _json_native(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value)) == value)
    except (TypeError, ValueError):
        return False


def _whole_number(name: str, value: int | str) -> int:
    """A templated whole number (rendered templates are strings)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}") from None


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


#: the task state store key of the last try's (try_number, max_tries): `try_after_clear`
TRIES = "dotflow-tries"


def _tries(context: Context) -> tuple[int, int] | None:
    """What the last try of this task instance recorded, if it recorded it."""
    state = context.get("task_state_store")
    found = state.get(TRIES) if state is not None else None
    if isinstance(found, dict):
        number, max_tries = found.get("try_number"), found.get("max_tries")
        if type(number) is int and type(max_tries) is int:
            return number, max_tries
    return None


class DotflowOperator(BaseOperator):
    """Run a dotflow-providers `Workflow` as one Airflow task.

    The engine retries and times out each step by its own policy and checkpoints each
    completed step. When Airflow retries the task, the completed steps are skipped and their
    outputs restored. When the task instance is cleared (UI, REST API, `airflow tasks clear`),
    its checkpoints are discarded and every step runs again, unless
    `keep_checkpoints_on_clear=True` (then a cleared task resumes like a retry). Checkpoints go
    to `store` (a store or URL), to the `dotflow` connection `store_conn_id`, or by default to
    Airflow's own task state store.

    A step that fails with an error its policy never retries, or whose policy `deadline`
    would pass before Airflow's next try, fails the task with `AirflowFailException` (no
    Airflow retry); a step whose circuit breaker is open is retried by Airflow no earlier than
    the breaker's `reset_after` (the task's `retry_policy`, Airflow 3.3); a step that used up
    its retries leaves the task's `retries` and `retry_delay` to apply. At the start of a try a
    request recorded by the Checkpoints tab (rerun from a step, start over) is applied; at its
    end the `dotflow_checkpoints` XCom records the workflow id and store it used.

    Marking the running task failed (or its `execution_timeout`) cancels the run: the running
    step's cancel hook is called, no further step or attempt starts and nothing more is
    committed. Returns a JSON summary (no step
    outputs but the last, and only when it is JSON data) as the `return_value` XCom.
    """

    template_fields: Sequence[str] = (
        "workflow_id",
        "initial_context",
        "store",
        "store_conn_id",
        "mode",
        "commit_every",
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
        commit_every: int | str = 1,
        commit_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["retry_policy"] = _with_engine_policy(kwargs.get("retry_policy"))
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
        self.commit_every = commit_every  # templated: may render as a string
        self.commit_interval = commit_interval

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

    def _load_workflow(self, context: Context) -> Workflow:
        """The workflow to run (`@task.dotflow` builds it from the decorated function)."""
        workflow: Workflow = load_workflow(self.workflow)
        return workflow

    def _store_record(self, store: CheckpointStore) -> dict[str, Any]:
        """Where this try keeps its checkpoints, for the Checkpoints tab (never a secret)."""
        if self.store_conn_id:
            return {"kind": "connection", "conn_id": self.store_conn_id}
        if isinstance(store, TaskStateCheckpoints):
            return {"kind": "task_state"}
        return {"kind": "url", "url": self._public_url(store)}

    def _public_url(self, store: CheckpointStore) -> str:
        """The store's URL as logs and the Checkpoints tab may show it: the URL the task was
        given, with the parameters its scheme takes (a store's own `url` has none of them)."""
        given = self.store if isinstance(self.store, str) and self.store else store.url
        return public_url(given)

    def execute(self, context: Context) -> dict[str, Any]:
        handle = self._handle = _RunHandle()
        ti = context["ti"]
        _check_mode(self.mode)
        # the errors steps raise may quote a connection's password: what the engine keeps of
        # them is masked as the task's log is (Airflow does not mask XComs or stored documents)
        redact_errors(redact_text)
        workflow_id = self.workflow_id or default_workflow_id(
            ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)
        )
        if self.store_conn_id:  # recorded first: a missing connection is then shown as such
            where = {"kind": "connection", "conn_id": self.store_conn_id}
            ti.xcom_push(key=CHECKPOINTS_XCOM, value={"workflow_id": workflow_id, "store": where})
        try_log = TryLog(TaskLog(self.log))
        base = self._load_workflow(context)
        try:  # a connection's bad key list, an id too long for the store: no retry fixes them
            store, lock = self._checkpoint_store(context)
            workflow: Workflow = base.copy(
                workflow_id=workflow_id,
                store=store,
                on_change=self.on_change,
                lock=lock,
                commit_every=_whole_number("commit_every", self.commit_every),
                commit_interval=self.commit_interval,
                tracer=Tracers(
                    handle,
                    base.tracer,
                    TaskLogTracer(try_log, self._public_url(store), ti.try_number, self.mode),
                ),
            )
        except PERMANENT_ERRORS as exc:
            raise AirflowFailException(f"dotflow: {exc}") from exc
        ti.xcom_push(key="dotflow_workflow_id", value=workflow_id)
        try:
            with engine_warnings_to(try_log):
                run = self._start(workflow, context, try_log)
        except PERMANENT_ERRORS as exc:
            raise AirflowFailException(f"dotflow: {exc}") from exc
        finally:
            try_log.flush()
            record = {"workflow_id": workflow_id, "store": self._store_record(store)}
            ti.xcom_push(key=CHECKPOINTS_XCOM, value=record)
        summary = run.summary()
        if run.status is Status.COMPLETED:
            if _json_native(run.output):
                summary["output"] = run.output
            return summary
        failed = run.failed_step
        if failed is None:  # cancelled
            run.raise_for_status()
            return summary
        verdict = self._verdict(workflow, failed, context)
        # the step's error and traceback are on the line above: one line per failure
        if verdict.fail:
            raise AirflowFailException(f"dotflow: {verdict.reason}; not retrying the task")
        raise WorkflowTryFailed(
            f"dotflow: workflow {workflow_id!r} stopped at step {failed.name!r} (its error is "
            f"logged above); {verdict.reason}",
            retry_after=verdict.delay,
            reason=verdict.reason,
        )

    def _start(self, workflow: Workflow, context: Context, try_log: TryLog) -> Run:
        """Apply a Checkpoints-tab request or a clear, then run the workflow."""
        ti = context["ti"]
        workflow_id = workflow.workflow_id
        request = take_next_start(workflow_id, workflow.store)
        rerun_from: str | None = None
        if request is not None:
            by = f" by {request.requested_by}" if request.requested_by else ""
            if request.start_over:
                try_log.note(
                    logging.INFO, "dotflow: starting over, as asked from the Checkpoints tab%s", by
                )
                self._start_over(workflow, context)
            else:
                rerun_from = request.rerun_from
                try_log.note(
                    logging.INFO,
                    "dotflow: running again from step %s, as asked from the Checkpoints tab%s",
                    rerun_from,
                    by,
                )
        elif (
            not self.workflow_id
            and ti.try_number == 1
            and has_checkpoints(workflow_id, workflow.store)
        ):
            # Under the default id (dag/run/task), a task instance's first try finds nothing of
            # its own: these were written by an earlier DAG run with this run_id (deleted and
            # created again, or triggered again with an explicit run id), whose outputs are not
            # this run's. A workflow_id of the user's may span runs on purpose.
            try_log.note(
                logging.WARNING,
                "dotflow: checkpoints of %s exist at this task instance's first try: an "
                "earlier DAG run with this run_id wrote them; starting over",
                workflow_id,
            )
            self._start_over(workflow, context)
        elif try_after_clear(
            ti.try_number,
            ti.max_tries,
            self.retries or 0,
            _tries(context),
            recorded=context.get("task_state_store") is not None,
        ):
            if self.keep_checkpoints_on_clear:
                try_log.note(
                    logging.INFO,
                    "dotflow: the task instance was cleared; keeping its checkpoints "
                    "(keep_checkpoints_on_clear=True)",
                )
            else:
                try_log.note(logging.INFO, "dotflow: the task instance was cleared: starting over")
                self._start_over(workflow, context)
        state = context.get("task_state_store")
        if state is not None:  # what the next try tells a clear from a retry by
            state.set(TRIES, {"try_number": ti.try_number, "max_tries": ti.max_tries})
        return workflow.start(
            mode=self.mode,
            keep_going=self.keep_going,
            initial_context=self.initial_context,
            rerun_from=rerun_from,
        )

    def _start_over(self, workflow: Workflow, context: Context) -> None:
        workflow.reset(self.initial_context)
        state = context.get("task_state_store")
        if state is not None:
            state.delete(DEADLINES)

    def _verdict(self, workflow: Workflow, failed: Any, context: Context) -> Verdict:
        """What the engine knows about retrying the try that `failed` stopped."""
        policy = workflow.policy_of(failed.name)
        breaker = policy if isinstance(policy, CircuitBreaker) else None
        deadline = policy.deadline if policy is not None else None
        first_attempt: float | None = None
        state = context.get("task_state_store")
        if deadline is not None and failed.history and state is not None:
            first_attempt, anchors = deadline_anchor(
                state.get(DEADLINES), failed.name, failed.history[0][0]
            )
            state.set(DEADLINES, anchors)
        delay = self.retry_delay.total_seconds() if self.retry_delay is not None else 0.0
        return decide(
            step=failed.name,
            retryable=failed.retryable,
            airflow_delay=delay,
            now=time.time(),
            # the breaker's state lives in this process: its open circuit is what it knows now
            breaker_open=breaker is not None and breaker.state is BreakerState.OPEN,
            reset_after=breaker.reset_after if breaker is not None else 0.0,
            deadline=deadline,
            first_attempt=first_attempt,
        )

    @property
    def dotflow_run(self) -> Run | None:
        """The run being executed, from before its first step (None before execute())."""
        return None if self._handle is None else self._handle.run

    @dotflow_run.setter
    def dotflow_run(self, run: Run) -> None:
        # a run started elsewhere, held as execute() would hold it (on_kill then cancels it)
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
