"""Staged tasks: `Stage` steps with typed shared state, rollback and cancel hooks.

A stage is an ordinary step to the engine (same TaskEngine, policies, checkpoints, lease); it
only adds how state flows: every stage of a task shares one pydantic state model, gets a deep
copy of the state the previous stage produced, and its copy becomes the new state only when it
completes, so a failed stage never leaves half-written state behind.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic

from ._action import AnyAction, Context, make_action
from ._errors import ConfigurationError, InvalidStep
from ._inspect import inspect_workflow, markdown_table
from .retry import RetryPolicy
from .storage import CheckpointStore

if TYPE_CHECKING:
    from ._run import Run

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
        source = previous_context.value
        state = self._coerce(source if source is not None else initial_context.value)
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

    def counted_fields(self) -> dict[str, Any]:
        """The fields that count in what this stage's checkpoint is valid for, as they are now:
        a subclass's own fields (settings that change what `execute` computes) and, with
        `extra="allow"`, its extra fields; not those declared with
        `pydantic.Field(exclude=True)`, as `retry` and `timeout` are. `name` keys the
        checkpoint, `state` counts as the initial context, `description` is documentation, and
        private attributes are the object's own state (as for any object a step is bound to)."""
        counted = {
            name: getattr(self, name)
            for name, field in type(self).model_fields.items()
            if name not in _NOT_COUNTED and not field.exclude
        }
        extra = self.__pydantic_extra__
        return {**counted, **extra} if extra else counted

    def as_action(self) -> AnyAction:
        """This stage as a step for `Workflow.add` (the workflow calls it for you).

        Its code is its class's `execute`; its `state` is its initial context when none is given
        (see `Workflow._initial`), so a changed state runs it again; its `counted_fields` count
        with its code, read at every start, so a changed setting runs it again too."""
        self._takes_progress = "checkpoint" in inspect.signature(self.execute).parameters
        step = make_action(self._run, self.retry, self.timeout, "thread", self.name)
        return dataclasses.replace(
            step,
            code=type(self).execute,
            on_failure=self._on_failure,
            compensate=self._compensate,
            on_cancel=self._on_cancel,
        )


#: Stage's own fields that never count in its code version (see `Stage.counted_fields`)
_NOT_COUNTED = frozenset({"name", "description", "state"})


def dump_stages(run_or_id: Run | str, store: CheckpointStore | None = None) -> str:
    """A Markdown table (stage, status, attempts, duration, last error), from a live `Run`, or
    from the store for a workflow id."""
    if not isinstance(run_or_id, str):
        return markdown_table([step.summary() for step in run_or_id.steps], "stage")
    if store is None:
        raise ConfigurationError("dump_stages(workflow_id, store): give the store to read")
    return markdown_table(inspect_workflow(run_or_id, store)["steps"], "stage")


__all__ = ["Stage", "dump_stages"]
