"""Staged tasks: `Stage` steps with typed shared state, rollback and cancel hooks.

A stage is an ordinary step to the engine (same TaskEngine, policies, checkpoints, lease); it
only adds how state flows: every stage of a task shares one pydantic state model, gets a deep
copy of the state the previous stage produced, and its copy becomes the new state only when it
completes, so a failed stage never leaves half-written state behind.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from ._action import Action, Context, make_action
from ._checkpoint import Layout
from ._errors import ConfigurationError, InvalidStep
from ._inspect import inspect_workflow
from .retry import RetryPolicy
from .storage import CheckpointStore

if TYPE_CHECKING:
    from ._workflow import Run, Workflow

StateT = TypeVar("StateT", bound=pydantic.BaseModel)


class Stage(pydantic.BaseModel, Generic[StateT]):
    """One stage of a staged task. Subclass it, type the state, implement `execute`:

        class Download(Stage[JobState]):
            def execute(self, state: JobState) -> None:
                state.path = fetch(state.url)

    `execute` gets a copy of the current state and changes it (or returns a new one);
    `rollback(state, error)` undoes the stage's partial work when it fails for good (and, with
    `start(compensate=True)`, its completed work when a later stage fails); `cancel(state)` is
    called from another thread when the run is cancelled while the stage runs.
    """

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    name: str = pydantic.Field(min_length=1, max_length=150)
    description: str = ""
    state: StateT | None = pydantic.Field(default=None, description="initial state (1st stage)")
    retry: RetryPolicy | int | None = pydantic.Field(default=None, exclude=True)
    timeout: float | None = pydantic.Field(default=None, exclude=True)

    _live: Any = pydantic.PrivateAttr(default=None)
    _cancelled: threading.Event = pydantic.PrivateAttr(default_factory=threading.Event)
    _takes_progress: bool = pydantic.PrivateAttr(default=False)

    def execute(self, state: StateT) -> StateT | None:
        """Do the stage's work on `state` (a copy); return nothing or a new state."""
        raise InvalidStep(f"stage {self.name!r} ({type(self).__name__}) must implement execute()")

    def rollback(self, state: StateT, error: BaseException) -> None:
        """Undo this stage's work; `state` is its own copy (partial work included)."""

    def cancel(self, state: StateT) -> None:
        """The run was cancelled while this stage runs: stop soon (see `cancelled`)."""

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled while this stage runs; check it in long loops."""
        return self._cancelled.is_set()

    # --- the step the engine runs ------------------------------------------------------------

    def state_type(self) -> type[pydantic.BaseModel] | None:
        for klass in type(self).__mro__:
            args = getattr(klass, "__pydantic_generic_metadata__", {}).get("args", ())
            if args and isinstance(args[0], type) and issubclass(args[0], pydantic.BaseModel):
                return args[0]
        return type(self.state) if self.state is not None else None

    def _coerce(self, value: Any) -> Any:
        kind = self.state_type()
        if value is None:
            value = self.state
        if value is None:
            raise ConfigurationError(
                f"stage {self.name!r} got no state: give the first stage state=..., or pass "
                "initial_context (a state model or a dict of its fields)"
            )
        if kind is not None and not isinstance(value, kind):
            return kind.model_validate(value)
        return value

    def _run(
        self, previous_context: Context, initial_context: Context, checkpoint: Any = None
    ) -> Any:
        source = previous_context.storage
        state = self._coerce(source if source is not None else initial_context.storage)
        working: Any = (
            state.model_copy(deep=True) if isinstance(state, pydantic.BaseModel) else state
        )
        self._live = working
        self._cancelled.clear()
        if self._takes_progress:
            result = self.execute(working, checkpoint=checkpoint)  # type: ignore[call-arg]
        else:
            result = self.execute(working)
        return working if result is None else result

    def _on_failure(self, error: BaseException) -> None:
        if self._live is not None:
            self.rollback(self._live, error)

    def _compensate(self, state: Any, error: BaseException) -> None:
        self.rollback(self._coerce(state), error)

    def _on_cancel(self) -> None:
        self._cancelled.set()
        if self._live is not None:
            self.cancel(self._live)

    def as_action(self) -> Action:
        """This stage as a step for `Workflow.add` (the workflow calls it for you)."""
        self._takes_progress = "checkpoint" in inspect.signature(self.execute).parameters
        step = make_action(self._run, self.retry, self.timeout, "thread", self.name)
        return dataclasses.replace(
            step,
            on_failure=self._on_failure,
            compensate=self._compensate,
            on_cancel=self._on_cancel,
        )


class StagedTask:
    """A thin convenience: stages, a store, a task id and a default policy, as a `Workflow`."""

    def __init__(
        self,
        stages: list[Stage[Any]],
        store: CheckpointStore | str | None = None,
        task_id: str | None = None,
        retry: RetryPolicy | int | None = None,
        **workflow_options: Any,
    ) -> None:
        from ._workflow import Workflow

        self.workflow: Workflow = Workflow(task_id, store=store, **workflow_options)
        for stage in stages:
            if retry is not None and stage.retry is None:
                stage = stage.model_copy(update={"retry": retry})  # noqa: PLW2901
            self.workflow.add(stage)

    def start(self, **options: Any) -> Run:
        return self.workflow.start(**options)


def cancel(workflow_id: str, store: CheckpointStore) -> None:
    """Ask a workflow to stop, from any process that reaches its store.

    The runner notices at its next lease heartbeat (every ttl/3): it calls the running stage's
    `cancel` hook, starts no further step and ends CANCELLED. Until `Workflow.reset()`, later
    starts of that id raise `WorkflowCancelled`.
    """
    import os
    import socket

    document = {"requested_at": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    store.put(Layout(workflow_id).cancel, json.dumps(document).encode())


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stage | status | attempts | duration (s) | last error |",
        "| ----- | ------ | -------- | ------------ | ---------- |",
    ]
    for row in rows:
        duration = "" if row.get("duration") is None else f"{row['duration']:.3f}"
        error = (row.get("error") or "").replace("|", "\\|").replace("\n", " ")
        if row.get("rollback_error"):
            error += f" (rollback failed: {row['rollback_error']})"
        lines.append(
            f"| {row['name']} | {row['status']} | {row['attempts']} | {duration} | {error} |"
        )
    return "\n".join(lines)


def dump_stages(run_or_id: Run | str, store: CheckpointStore | None = None) -> str:
    """A Markdown table (stage, status, attempts, duration, last error), from a live `Run`, or
    from the store for a workflow id."""
    if not isinstance(run_or_id, str):
        return _markdown([step.summary() for step in run_or_id.steps])
    if store is None:
        raise ConfigurationError("dump_stages(workflow_id, store): give the store to read")
    return _markdown(inspect_workflow(run_or_id, store)["steps"])


__all__ = ["Stage", "StagedTask", "cancel", "dump_stages"]
