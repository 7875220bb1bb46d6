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
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
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

    @property
    def workflow_id(self) -> str:
        return f"{self.scope}/{self.name}/{self.digest[:16]}/{self.occurrence}"


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


class _Occurrences:
    """Counts calls per (name, digest) within a flow-run attempt (or this process, outside one)."""

    _KEEP = 256  # flow runs remembered by one process (a `serve` process runs many)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # flow run id -> (its current attempt's context, counts); a new context is a new attempt
        self._runs: collections.OrderedDict[str, tuple[object, collections.Counter[str]]] = (
            collections.OrderedDict()
        )

    def next(self, name: str, digest_: str, steps: tuple[str, ...] = ()) -> CallKey:
        """The next call of (name, digest); `steps` are the names `rerun_from` can select."""
        drawing = _SCOPE.get()
        if drawing is not None:
            return drawing.draw(name, digest_, steps)
        context = FlowRunContext.get()
        flow_run = None if context is None else context.flow_run
        scope = "prefect/local" if flow_run is None else f"prefect/{flow_run.id}"
        with self._lock:
            attempt, counts = self._runs.get(scope, (None, None))
            if attempt is not context or counts is None:
                # the context object is recreated for every attempt of a flow run
                counts = collections.Counter()
                self._runs[scope] = (context, counts)
            self._runs.move_to_end(scope)
            while len(self._runs) > self._KEEP:
                self._runs.popitem(last=False)
            occurrence = counts[f"{name}/{digest_}"]
            counts[f"{name}/{digest_}"] += 1
        return CallKey(scope, name, digest_, occurrence)


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
