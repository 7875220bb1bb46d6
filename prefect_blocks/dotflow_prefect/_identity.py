"""Which checkpoint a call maps to: its flow run, its function, its arguments and its occurrence.

A call is identified when it is made in the flow (called, `.submit`ted or `.map`ped), not when
it starts running: the n-th call of one function with one set of arguments in a flow-run attempt
is occurrence n, counted in the order the flow makes the calls. Threads finish in any order, but
the flow makes its calls in the same order on every attempt, so a flow retry maps each call to the
checkpoint of the same call in the attempt before. An argument that is a future is counted as "a
future" at that moment; the value it resolves to is checked again when the call runs (a changed
value re-runs the call instead of restoring it).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture
from prefect.utilities.collections import visit_collection

from dotflow_providers import CheckpointError, ConfigurationError
from dotflow_providers.integration import callable_name, fingerprint, id_part

#: Takes a call's arguments by parameter name and returns the string that identifies them.
CheckpointKey = Callable[[dict[str, Any]], str]

_FUTURE = "<prefect future>"


class UndigestableArgument(ConfigurationError):
    """An argument has no stable digest, so a retry could not find the call's checkpoint."""


@dataclasses.dataclass(frozen=True)
class CallKey:
    """A call's place in the checkpoint store: `scope/name/digest/occurrence`.

    Inside a `dotflow_flow`, `order` is the call's place among all the flow's calls and
    `rerun_from` the step it must run again from (it is at or after the flow's `rerun_from`).
    """

    scope: str
    name: str
    digest: str
    occurrence: int
    order: int = -1
    rerun_from: str | None = None
    #: where in the flow run the call was made when not in the flow's own body (`Counts`)
    unit: str = ""

    @property
    def workflow_id(self) -> str:
        within = f"{self.unit}/" if self.unit else ""
        return f"{self.scope}/{within}{self.name}/{self.digest[:16]}/{self.occurrence}"


def function_name(function: Callable[..., Any]) -> str:
    """The function's module and qualified name (never Prefect's `task_key`)."""
    return id_part(callable_name(function))


def arguments_digest(parameters: dict[str, Any], checkpoint_key: CheckpointKey | None) -> str:
    """The digest of a call's arguments (futures count as "a future"), or the user's key."""
    plain = visit_collection(
        parameters,
        lambda value: _FUTURE if isinstance(value, (PrefectFuture, State)) else value,
        return_data=True,
    )
    if checkpoint_key is not None:
        key = checkpoint_key(plain)
        if not isinstance(key, str):
            raise ConfigurationError(f"checkpoint_key must return a str, got {key!r}")
        return hashlib.sha256(key.encode()).hexdigest()
    try:
        return fingerprint(plain, "the arguments")
    except CheckpointError as exc:
        raise UndigestableArgument(
            f"an argument has no stable digest ({exc}), so a retry could not tell this call "
            "from another; pass plain data (str, numbers, lists, dicts, dataclasses, pydantic "
            "models), or give the task checkpoint_key=lambda args: ... returning a string that "
            "identifies the arguments"
        ) from exc


@dataclasses.dataclass(frozen=True)
class Unit:
    """A part of a flow-run attempt that retries on its own (`inner_unit`): a task run or a
    subflow run, of `label` (its task key, or its flow's name), with `run_id` (kept by its
    retries), in its attempt (`attempt`: compared by value; `context`: by identity)."""

    kind: str
    label: str
    run_id: str
    attempt: int
    context: object = dataclasses.field(compare=False)


def inner_unit(own_flow_run: str | None = None) -> Unit | None:
    """Where in its flow-run attempt a call is made, when not in the flow's own body: inside a
    task run, or inside a subflow run of the flow whose run is `own_flow_run`; None in the body.
    The unit is named by its run (`Counts`): a retry of the unit (the same run) counts its calls
    from 0 again, so it never shifts the flow's later calls, and no other run shares its
    checkpoints. A flow-run retry makes new runs, so calls made inside them run again: a name
    by place among runs of one task would hand a run another run's checkpoint whenever a run
    draws nothing on the retry (restored, cached) or runs concurrently with its like."""
    task = TaskRunContext.get()
    task_run = getattr(task, "task_run", None)
    if task_run is not None:
        return Unit("task", str(task_run.task_key), str(task_run.id), task_run.run_count, task)
    if own_flow_run is not None:
        flow = FlowRunContext.get()
        flow_run = getattr(flow, "flow_run", None)
        if flow_run is not None and str(flow_run.id) != own_flow_run:
            label = getattr(getattr(flow, "flow", None), "name", None) or "subflow"
            return Unit("flow", str(label), str(flow_run.id), flow_run.run_count, flow)
    return None


class Counts:
    """Occurrences of calls within one flow-run attempt: of its body's calls, and of each unit's
    (a task run or subflow run inside it, `inner_unit`) in the unit's current attempt."""

    def __init__(self) -> None:
        self._body: collections.Counter[str] = collections.Counter()
        #: unit name -> (its attempt, its run's context, its counts)
        self._units: dict[str, tuple[int, object, collections.Counter[str]]] = {}

    def draw(self, unit: Unit | None, key: str) -> tuple[str, int]:
        """The unit's name ("" for the body) and the call's occurrence in it."""
        if unit is None:
            name, counter = "", self._body
        else:
            name = f"in-{unit.kind}/{id_part(unit.label)}/{id_part(unit.run_id)}"
            found = self._units.get(name)
            if found is None or found[0] != unit.attempt or found[1] is not unit.context:
                found = self._units[name] = (unit.attempt, unit.context, collections.Counter())
            counter = found[2]
        occurrence = counter[key]
        counter[key] += 1
        return name, occurrence


class _Occurrences:
    """Counts calls per (name, digest) within a flow-run attempt (or this process, outside one).

    A flow-run attempt's counts live as long as its context does (the context of a new attempt
    is a new object), however many other flow runs this process runs meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = Counts()
        # id of an attempt's FlowRunContext -> (a weak reference to it, its counts)
        self._attempts: dict[int, tuple[weakref.ref[FlowRunContext], Counts]] = {}

    def next(self, name: str, digest_: str, steps: tuple[str, ...] = ()) -> CallKey:
        """The next call of (name, digest); `steps` are the names `rerun_from` can select."""
        drawing = _SCOPE.get()
        if drawing is not None:
            return drawing.draw(name, digest_, steps)
        context = FlowRunContext.get()
        flow_run = None if context is None else context.flow_run
        scope = "prefect/local" if flow_run is None else f"prefect/{flow_run.id}"
        unit = inner_unit()  # a subflow has a scope of its own here
        with self._lock:
            counts = self._local if context is None else self._counts_of(context)
            within, occurrence = counts.draw(unit, f"{name}/{digest_}")
        return CallKey(scope, name, digest_, occurrence, unit=within)

    def _counts_of(self, context: FlowRunContext) -> Counts:
        found = self._attempts.get(id(context))
        if found is not None and found[0]() is context:
            return found[1]
        ref = weakref.ref(context)
        counts = Counts()
        self._attempts[id(context)] = (ref, counts)
        weakref.finalize(context, self._forget, id(context), ref)
        return counts

    def _forget(self, key: int, ref: weakref.ref[FlowRunContext]) -> None:
        with self._lock:
            if key in self._attempts and self._attempts[key][0] is ref:
                del self._attempts[key]


class CallScope(Protocol):
    """Where a `dotflow_flow` draws its calls' keys (one per flow-run attempt)."""

    def draw(self, name: str, digest: str, steps: tuple[str, ...]) -> CallKey: ...


OCCURRENCES = _Occurrences()
# Set by `dotflow_flow` for the body of each flow-run attempt; Prefect's thread-pool runner
# copies the context at submission, so tasks running in its threads see the same scope.
_SCOPE: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "dotflow_prefect_scope", default=None
)
_CALL: contextvars.ContextVar[CallKey | None] = contextvars.ContextVar(
    "dotflow_prefect_call", default=None
)


@contextlib.contextmanager
def calling(key: CallKey) -> Iterator[None]:
    """Make `key` the identity of the call made (or submitted) inside this block."""
    token = _CALL.set(key)
    try:
        yield
    finally:
        _CALL.reset(token)


def current_call(name: str) -> CallKey | None:
    """The identity given to this call when it was made, if it was made through our task."""
    key = _CALL.get()
    return key if key is not None and key.name == name else None
