"""`Workflow` (what to run) and `Run` (what happened)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, get_args

from ._action import Action, as_action, class_steps
from ._checkpoint import Layout, check_workflow_id, fingerprint
from ._engine import CancelToken, StepRecord
from ._errors import (
    ConfigurationError,
    CorruptCheckpoint,
    InterruptedStage,
    InvalidStep,
    UnknownMode,
    WorkflowCancelled,
    WorkflowFailed,
)
from ._journal import Journal, OnInputChange
from ._lease import Lease, LeaseConfig
from ._stages import Stage
from ._status import Status
from ._strategies import STRATEGIES, Execution, StepSpec
from .storage import CheckpointStore, MemoryStore, store_from_url
from .tracing import LoggingTracer, Tracer, Tracers

logger = logging.getLogger("dotflow_providers")


class Run:
    """One execution of a workflow: its status, its steps and its output."""

    def __init__(self, workflow_id: str, steps: list[StepRecord], mode: str) -> None:
        self.workflow_id = workflow_id
        self.steps = steps
        self.mode = mode
        self.status = Status.NOT_STARTED
        self.started_at = time.time()
        self.duration: float | None = None
        self.cancel_event = CancelToken()
        self._finished = threading.Event()
        self._cancel_hooks: list[Callable[[], None]] = []

    @property
    def output(self) -> Any:
        """The output of the last step, or None if it did not complete."""
        last = self.steps[-1]
        return last.output if last.status is Status.COMPLETED else None

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run has finished (or `timeout` seconds passed); returns the run."""
        self._finished.wait(timeout)
        return self

    def cancel(self) -> None:
        """Ask the run to stop: no further step or attempt starts, waits are cut short.

        In sync modes a step already executing finishes its current attempt (threads cannot be
        killed); in async modes the running steps are cancelled.
        """
        self.cancel_event.set()
        for hook in self._cancel_hooks:
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call `hook` (from any thread) when the run is cancelled."""
        self._cancel_hooks.append(hook)
        if self.cancel_event.is_set():
            hook()

    def forget_cancel(self, hook: Callable[[], None]) -> None:
        if hook in self._cancel_hooks:
            self._cancel_hooks.remove(hook)

    def raise_for_status(self) -> Run:
        """Return the run if it completed, else raise `WorkflowFailed` or `WorkflowCancelled`."""
        if self.status is Status.COMPLETED:
            return self
        if self.status is Status.CANCELLED:
            raise WorkflowCancelled(f"workflow {self.workflow_id!r} was cancelled")
        failed = self.failed_step
        if failed is None:
            raise WorkflowFailed(f"workflow {self.workflow_id!r} ended {self.status.value}")
        raise WorkflowFailed(
            f"workflow {self.workflow_id!r} failed at step {failed.name!r} after "
            f"{failed.attempts} attempt(s): {failed.error}"
        ) from failed.exception

    @property
    def failed_step(self) -> StepRecord | None:
        """The first step that failed, if any."""
        return next((s for s in self.steps if s.status is Status.FAILED), None)

    def summary(self) -> dict[str, Any]:
        """JSON-safe facts about the run (step outputs left out)."""
        return {
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "mode": self.mode,
            "duration": self.duration,
            "steps": [step.summary() for step in self.steps],
        }

    def _finish(self) -> None:
        statuses = {step.status for step in self.steps}
        if statuses == {Status.COMPLETED}:
            self.status = Status.COMPLETED
        elif Status.CANCELLED in statuses:
            self.status = Status.CANCELLED
        else:
            self.status = Status.FAILED
        self.duration = time.time() - self.started_at
        self._finished.set()

    def __repr__(self) -> str:
        return f"<Run {self.workflow_id!r} {self.status.value} steps={len(self.steps)}>"


class Workflow:
    """Steps to run in order, with their checkpoints in `store`.

    With a persistent store, starting a workflow id that already has checkpoints skips the
    completed steps and hands their stored outputs on. Without `workflow_id`, the id is derived
    from the step names and initial contexts, so re-running the same script resumes too.
    """

    def __init__(
        self,
        workflow_id: str | None = None,
        store: CheckpointStore | str | None = None,
        on_input_change: OnInputChange = "raise",
        *,
        lock: LeaseConfig | bool = True,
        tracer: Tracer | None = None,
    ) -> None:
        if on_input_change not in get_args(OnInputChange):
            raise ConfigurationError(
                f"on_input_change must be 'raise', 'reset' or 'reuse', got {on_input_change!r}"
            )
        self._workflow_id = None if workflow_id is None else check_workflow_id(workflow_id)
        if isinstance(store, str):
            store = store_from_url(store)
        self.store: CheckpointStore = MemoryStore() if store is None else store
        self.on_input_change: OnInputChange = on_input_change
        self.lock: LeaseConfig | None = (
            LeaseConfig() if lock is True else (lock if isinstance(lock, LeaseConfig) else None)
        )
        self.tracer = tracer
        self._specs: list[StepSpec] = []

    def add(
        self,
        step: Any,
        *,
        name: str | None = None,
        initial_context: Any = None,
        group: str | None = None,
    ) -> Workflow:
        """Append a step: a function, an `@action`, a `Stage`, or a class/object with `@action`
        methods."""
        if isinstance(step, Stage):
            if name is not None:
                raise InvalidStep("a stage is named by its own `name` field")
            if step.name in {spec.name for spec in self._specs}:
                raise InvalidStep(f"stage name {step.name!r} is used twice; stage names are unique")
            self._specs.append(StepSpec(step.as_action(), step.name, initial_context, group, step))
            return self
        if isinstance(step, Action) or (callable(step) and not isinstance(step, type)):
            actions = [as_action(step)]
            names = [name or actions[0].name]
        else:
            actions = class_steps(step)
            if not actions:
                raise InvalidStep(f"{step!r} has no @action methods to run")
            names = [f"{name}.{a.name.rpartition('.')[2]}" if name else a.name for a in actions]
        for act, step_name in zip(actions, names, strict=True):
            if not isinstance(step_name, str) or not step_name:
                raise InvalidStep(f"step names must be non-empty strings, got {step_name!r}")
            self._specs.append(StepSpec(act, step_name, initial_context, group))
        return self

    def copy(
        self,
        *,
        workflow_id: str | None = None,
        store: CheckpointStore | str | None = None,
        on_input_change: OnInputChange | None = None,
        lock: LeaseConfig | bool | None = None,
        tracer: Tracer | None = None,
    ) -> Workflow:
        """The same steps under another id, store or policy (how adapters bind a workflow)."""
        clone = Workflow(
            workflow_id if workflow_id is not None else self._workflow_id,
            store if store is not None else self.store,
            on_input_change or self.on_input_change,
            lock=(self.lock or False) if lock is None else lock,
            tracer=tracer or self.tracer,
        )
        clone._specs = list(self._specs)
        return clone

    @property
    def steps(self) -> list[str]:
        return [spec.name for spec in self._specs]

    def _initial(self, default: Any) -> list[Any]:
        return [default if s.initial_context is None else s.initial_context for s in self._specs]

    def workflow_id_for(self, initial_context: Any = None) -> str:
        """The id checkpoints are stored under (derived when none was given)."""
        if self._workflow_id is not None:
            return self._workflow_id
        digest = hashlib.sha256(
            "\0".join([*self.steps, fingerprint(self._initial(initial_context))]).encode()
        ).hexdigest()
        return f"wf-{digest[:20]}"

    @property
    def workflow_id(self) -> str:
        return self.workflow_id_for()

    def _lease(self, workflow_id: str) -> Lease | None:
        if self.lock is None:
            return None
        return Lease(self.store, Layout(workflow_id).lock, self.lock)

    def reset(self, initial_context: Any = None) -> None:
        """Delete this workflow's checkpoints so the next start runs every step.

        Takes the workflow's lease first, so a running workflow is never reset under its feet.
        """
        reset_checkpoints(self.workflow_id_for(initial_context), self.store, self.lock)

    def start(
        self,
        mode: str = "sequential",
        keep_going: bool = False,
        *,
        initial_context: Any = None,
        max_workers: int | None = None,
        compensate: bool = False,
        strict_recovery: bool = False,
    ) -> Run:
        """Run the pending steps and return the `Run` (in `background` mode, at once).

        `initial_context` is given to steps added without one. `max_workers` bounds the
        concurrent groups (`sequential_group`) or worker processes (`parallel`, default
        `os.cpu_count()`). With `compensate`, a failure rolls back the completed steps of its
        chain, newest first (saga style), and forgets their checkpoints. A step that was running
        when a previous runner died is re-run with a warning, or with `strict_recovery` the
        start raises `InterruptedStage`. Errors in the definition, the inputs or the stored
        checkpoints are raised here, before any step runs.
        """
        strategy = _choose(STRATEGIES, mode)
        execution = self._prepare(
            mode, keep_going, initial_context, max_workers, compensate, strict_recovery
        )
        if mode == "background":
            threading.Thread(
                target=_execute, args=(execution, strategy), name="dotflow-background", daemon=True
            ).start()
        else:
            _execute(execution, strategy)
        return execution.run

    async def start_async(
        self,
        mode: str = "async_sequential",
        keep_going: bool = False,
        *,
        initial_context: Any = None,
        max_concurrency: int | None = None,
        compensate: bool = False,
        strict_recovery: bool = False,
    ) -> Run:
        """Run the pending steps in the running event loop and return the `Run`.

        `async_sequential` passes each output on; `async_parallel` runs independent steps (and
        each `group` as a chain) concurrently, at most `max_concurrency` at once. Async steps
        are awaited in this loop; sync steps run in worker threads. Store I/O never blocks the
        loop. Cancelling the awaiting task cancels the running steps (marked CANCELLED).
        """
        from ._async import ASYNC_STRATEGIES, execute_async

        strategy = _choose(ASYNC_STRATEGIES, mode)
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}")
        execution = await asyncio.to_thread(
            self._prepare,
            mode,
            keep_going,
            initial_context,
            max_concurrency,
            compensate,
            strict_recovery,
        )
        await execute_async(execution, strategy)
        return execution.run

    def _prepare(
        self,
        mode: str,
        keep_going: bool,
        initial_context: Any,
        max_workers: int | None,
        compensate: bool = False,
        strict_recovery: bool = False,
    ) -> Execution:
        """Take the lease, check the stored checkpoints and build the run (all before a step)."""
        if not self._specs:
            raise InvalidStep("the workflow has no steps; add some with workflow.add(step)")
        if max_workers is not None and max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, got {max_workers!r}")
        initial = self._initial(initial_context)
        print_ = fingerprint(initial)
        workflow_id = self.workflow_id_for(initial_context)
        lease = self._lease(workflow_id)
        if lease is not None:
            lease.acquire()
        try:
            journal = Journal(self.store, workflow_id, lease)
            if journal.cancel_requested():
                raise WorkflowCancelled(
                    f"workflow {workflow_id!r} was cancelled; Workflow.reset() clears it (and "
                    "its checkpoints) to run it again"
                )
            restored = journal.open(self.steps, print_, self.on_input_change)
            if not keep_going:
                self._check_stage_sequence(journal, restored)
            interrupted = self._interrupted(lease, restored, strict_recovery)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        records = [
            StepRecord(index=i, name=spec.name, workflow_id=workflow_id)
            for i, spec in enumerate(self._specs)
        ]
        for index, (doc, output) in restored.items():
            record = records[index]
            record.status, record.attempts, record.restored = Status.COMPLETED, doc.attempts, True
            record.started_at, record.finished_at = doc.started_at, doc.finished_at
            record.duration, record.output = doc.finished_at - doc.started_at, output
        if interrupted is not None:
            records[interrupted].interrupted = True
        run = Run(workflow_id, records, mode)
        if lease is not None:
            # another process's cancel request is noticed at the next heartbeat
            lease.on_heartbeat = lambda: run.cancel() if journal.cancel_requested() else None
        tracer = self.tracer
        if logger.isEnabledFor(logging.DEBUG):  # transitions are logged only when asked for
            tracer = Tracers(tracer, LoggingTracer())
        return Execution(
            run, self._specs, initial, journal, keep_going, tracer, max_workers, compensate
        )

    def _check_stage_sequence(self, journal: Journal, restored: dict[int, Any]) -> None:
        """A stage cannot have completed while the stage before it did not."""
        for index in range(1, len(self._specs)):
            before, after = self._specs[index - 1], self._specs[index]
            if (
                index in restored
                and index - 1 not in restored
                and before.stage is not None
                and after.stage is not None
            ):
                raise CorruptCheckpoint(
                    journal.layout.step(index, after.name),
                    f"stage {after.name!r} is committed but the stage before it, "
                    f"{before.name!r}, is not: an impossible sequence of statuses",
                )

    def _interrupted(
        self, lease: Lease | None, restored: dict[int, Any], strict: bool
    ) -> int | None:
        """The step a dead runner was executing: the first one it had not committed."""
        if lease is None or not lease.took_over:
            return None
        pending = next((i for i in range(len(self._specs)) if i not in restored), None)
        if pending is None:
            return None
        name = self._specs[pending].name
        if strict:
            raise InterruptedStage(
                f"step {name!r} of workflow {lease.key.rsplit('/', 1)[0]!r} was running when its "
                "runner died (its lease expired unreleased); its partial work may need a look. "
                "Start again with strict_recovery=False to re-run it, or reset the workflow"
            )
        logger.warning(
            "step %s was running when the previous runner died; running it again",
            name,
            extra={"step": name},
        )
        return pending

    def __repr__(self) -> str:
        return f"<Workflow {self._workflow_id or '(derived id)'} steps={self.steps}>"


def reset_checkpoints(
    workflow_id: str, store: CheckpointStore, lock: LeaseConfig | None = None
) -> None:
    """Delete a workflow's checkpoints (and any cancel request), under its lease when `lock`
    is given, so a running workflow is never reset under its feet (`LockHeld`)."""
    lease = None if lock is None else Lease(store, Layout(workflow_id).lock, lock)
    if lease is not None:
        lease.acquire()
    try:
        Journal(store, workflow_id).reset()
    finally:
        if lease is not None:
            lease.release()


def _choose(strategies: dict[str, Any], mode: str) -> Any:
    strategy = strategies.get(mode)
    if strategy is None:
        raise UnknownMode(f"unknown mode {mode!r}; choose one of {', '.join(sorted(strategies))}")
    return strategy


def open_run(execution: Execution) -> None:
    """Mark the run started (both the sync and the async paths)."""
    execution.run.status = Status.IN_PROGRESS
    if execution.tracer is not None:
        execution.tracer.workflow_started(execution.run)


def close_run(execution: Execution) -> None:
    """Release the lease and settle the run's status (both the sync and the async paths)."""
    run = execution.run
    if execution.journal.lease is not None:
        execution.journal.lease.release()
    if run.cancel_event.is_set():
        for record in run.steps:
            if record.status is Status.NOT_STARTED:
                record.set_status(Status.CANCELLED)
    run._finish()
    if execution.tracer is not None:
        execution.tracer.workflow_finished(run)


def _execute(execution: Execution, strategy: Any) -> None:
    open_run(execution)
    try:
        strategy(execution)
    finally:
        close_run(execution)
