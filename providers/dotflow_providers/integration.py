"""What orchestrator adapters ask the core, answered once for Airflow and Prefect alike.

Adapters translate orchestrator concepts (a task instance, a flow run, a retry) into core
calls; which errors are permanent, how an id is made from orchestrator names, how a call is
fingerprinted, how a step table is drawn and how task logs are written live here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from ._errors import PERMANENT_ERRORS, ConfigurationError
from ._format import (
    Layout,
    LeaseDocument,
    NextStartRequest,
    check_workflow_id,
    load_request,
    request_document,
    workflow_id_of,
)
from ._identity import default_step_name
from ._identity import digest_value as fingerprint
from ._inspect import markdown_table
from ._lease import Lease, LeaseConfig, read_lease
from ._loader import load_object
from .storage import CheckpointStore
from .tracing import LoggingTracer, TaskLogger, Tracer, Tracers

__all__ = [
    "PERMANENT_ERRORS",
    "Lease",
    "LeaseDocument",
    "NextStartRequest",
    "callable_name",
    "drop_next_start",
    "fingerprint",
    "has_checkpoints",
    "id_part",
    "is_permanent",
    "lease_holder",
    "load_object",
    "markdown_table",
    "peek_next_start",
    "request_next_start",
    "take_next_start",
    "task_tracer",
    "workflow_id_from",
    "workflow_lease",
    "workflows_under",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._:+@=,~-]")
_MAX_ID = 400


def is_permanent(error: BaseException) -> bool:
    """Whether no retry (of the task, of the flow run) can fix `error`."""
    return isinstance(error, PERMANENT_ERRORS)


def id_part(text: object, *, first: bool = False) -> str:
    """`text` as one workflow-id part: itself when it is safe, else its safe characters (others
    become `_`) and a digest of the original, so two distinct names never share a part. The
    `first` part of an id must start with a letter or digit: one that does not gets an `x` in
    front, and so the digest too (`_etl` and `x_etl` are two DAGs)."""
    text = str(text)
    safe = _UNSAFE.sub("_", text).lstrip(".") or "_"
    if first and not safe[0].isalnum():
        safe = "x" + safe
    if safe == text:
        return text
    return f"{safe[:150]}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def workflow_id_from(*parts: object) -> str:
    """A valid workflow id made of orchestrator names (`dag/run/task/map_index`, ...), one
    `id_part` each, joined with `/`. Too long an id keeps its start and ends with a digest of
    the whole, so distinct names stay distinct."""
    cleaned = [id_part(part, first=index == 0) for index, part in enumerate(parts)]
    workflow_id = "/".join(cleaned)
    if len(workflow_id) > _MAX_ID:
        digest = hashlib.sha256(workflow_id.encode()).hexdigest()[:16]
        workflow_id = workflow_id[: _MAX_ID - 17].rstrip("/") + "~" + digest
    return check_workflow_id(workflow_id)


def callable_name(function: Callable[..., Any]) -> str:
    """A callable's module and qualified name, the same in every process (a `partial` by its
    function, a callable instance by its class; never a memory address)."""
    module = getattr(function, "__module__", None) or type(function).__module__
    return f"{module}.{default_step_name(function)}"


def request_next_start(
    workflow_id: str,
    store: CheckpointStore,
    *,
    rerun_from: str | None = None,
    start_over: bool = False,
    requested_by: str = "",
) -> None:
    """Ask the next start of `workflow_id` to run from `rerun_from`, or to start over (a UI
    action between tries; the orchestrator's next try applies it with `take_next_start`)."""
    if (rerun_from is None) == (not start_over):
        raise ConfigurationError("request either rerun_from=STEP or start_over=True")
    request = NextStartRequest(rerun_from, start_over, time.time(), requested_by)
    store.put(Layout(workflow_id).request, request_document(request))


def peek_next_start(workflow_id: str, store: CheckpointStore) -> NextStartRequest | None:
    """The pending next-start request of `workflow_id`, left in the store (or None)."""
    key = Layout(workflow_id).request
    data = store.get(key)
    return None if data is None else load_request(key, data)


def take_next_start(workflow_id: str, store: CheckpointStore) -> NextStartRequest | None:
    """The pending next-start request of `workflow_id`, removed from the store (or None)."""
    request = peek_next_start(workflow_id, store)
    if request is not None:
        drop_next_start(workflow_id, store)
    return request


def drop_next_start(workflow_id: str, store: CheckpointStore) -> None:
    """Remove the next-start request of `workflow_id`, if any, unread (an answered one)."""
    store.delete(Layout(workflow_id).request)


def has_checkpoints(workflow_id: str, store: CheckpointStore) -> bool:
    """Whether `store` holds any document of `workflow_id` (one LIST; ids under it aside)."""
    return next(iter(store.list(Layout(workflow_id).base)), None) is not None


def workflows_under(store: CheckpointStore, prefix: str) -> list[str]:
    """The ids of the workflows in `store` whose id starts with `prefix` (`scope/` for the
    workflows of one orchestrator run), in the store's listing order."""
    found = (workflow_id_of(key) for key in store.list(prefix))
    return [workflow_id for workflow_id in found if workflow_id is not None]


def workflow_lease(
    workflow_id: str, store: CheckpointStore, config: LeaseConfig, *, owner: str | None = None
) -> Lease:
    """The lease the runs of `workflow_id` take, not held yet: `acquire()` it (`LockHeld` while
    another holder has it), then `release()` it.

    `owner` is the holder's name in the lease (an orchestrator's run id), so that a refused
    caller reading `lease_holder` can say which run holds it; by default a random one.
    """
    return Lease(store, Layout(workflow_id).lock, config, owner=owner)


def lease_holder(
    workflow_id: str, store: CheckpointStore, clock_skew: float = LeaseConfig.clock_skew
) -> LeaseDocument | None:
    """Who holds the lease of `workflow_id` now (None when nobody does, or it has expired)."""
    return read_lease(store, Layout(workflow_id).lock, clock_skew)


def task_tracer(logger: TaskLogger, *others: Tracer | None) -> Tracer:
    """The tracers an adapter runs a workflow with: the user's, plus one line per finished
    step and per retry on the orchestrator's task logger."""
    return Tracers(*others, LoggingTracer(logger, logging.INFO, starts=False, retries=True))
