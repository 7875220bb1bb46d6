"""The checkpoint scope of one `dotflow_flow` attempt: where its calls' checkpoints live, who
may use them, which calls run again, what the run did, and cleaning up after it.

A scope is `prefect/<flow run id>` (flow-run retries resume), or with a resume key
`prefect/keyed/<flow name>/<key>` (any flow run with that key resumes). A keyed scope is held
under the scope's lease (`integration.workflow_lease`) for the whole attempt, so two runs never
interleave on one key. `rerun_from` is a next-start request on the scope: calls at and
after the named one, in the order the flow makes them, run again unless their checkpoint was
written after the request (by an earlier attempt that answered it), so retries and re-runs of a
crashed run never redo them twice. The request is removed when a run completes.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prefect.client.orchestration import get_client

from dotflow_providers import (
    CheckpointStore,
    LeaseConfig,
    LockHeld,
    Run,
    Workflow,
    inspect_workflow,
    reset,
)
from dotflow_providers.integration import (
    Lease,
    NextStartRequest,
    lease_holder,
    markdown_table,
    peek_next_start,
    request_next_start,
    workflow_id_from,
    workflow_lease,
    workflows_under,
)

from ._identity import _SCOPE, CallKey, Counts, inner_unit

R = TypeVar("R")
_GONE = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}  # the run's process has ended


class ResumeKeyInUse(LockHeld):
    """Another flow run holds the resume key; this one is refused so the two never interleave."""

    def __init__(self, message: str, holder: str, expires_at: float) -> None:
        self.holder = holder
        self.expires_at = expires_at
        Exception.__init__(self, message)


def scope_id(flow_name: str, flow_run_id: str, resume_key: str | None) -> str:
    """The checkpoint scope of a flow run: its id, or its flow and resume key."""
    if resume_key is None:
        return workflow_id_from("prefect", flow_run_id)
    return workflow_id_from("prefect", "keyed", flow_name, resume_key)


@dataclasses.dataclass
class _Call:
    order: int
    task: str
    workflow_id: str
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None


class FlowScope:
    """One flow-run attempt's scope: draws call keys and records what each call did."""

    def __init__(
        self,
        scope: str,
        store: CheckpointStore,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        rerun_from: str | None = None,
        rerun_all: bool = False,
        requested_at: float = 0.0,
        flow_run: str | None = None,
    ) -> None:
        self.scope = scope
        #: the id of the flow run this scope is the attempt of (its subflows' calls are units)
        self.flow_run = flow_run
        self.store = store
        self.logger = logger
        self.rerun_from = rerun_from
        self.rerun_all = rerun_all
        self.requested_at = requested_at
        self.cut: int | None = 0 if rerun_all else None
        self._lock = threading.Lock()
        self._counts = Counts()
        self._calls: list[_Call] = []
        self._elsewhere: list[tuple[CheckpointStore, str]] = []
        self.lease: Lease | None = None
        #: the flow's body returned and Prefect will mark the run Completed
        self.completed = False

    # -- drawing keys (in the flow's thread, in the order the flow makes its calls) ------------

    def draw(self, name: str, digest: str, steps: tuple[str, ...]) -> CallKey:
        unit = inner_unit(self.flow_run)
        with self._lock:
            within, occurrence = self._counts.draw(unit, f"{name}/{digest}")
            order = len(self._calls)
            rerun = None
            if self.cut is None and self.rerun_from is not None and self.rerun_from in steps:
                self.cut, rerun = order, self.rerun_from
            elif self.cut is not None and steps:
                rerun = steps[0]
            key = CallKey(self.scope, name, digest, occurrence, order, rerun, within)
            self._calls.append(_Call(order, steps[0] if steps else name, key.workflow_id))
        return key

    def rerun_step(self, key: CallKey, workflow: Workflow) -> str | None:
        """The step this call must run again from, unless an earlier attempt already did."""
        if key.rerun_from is None:
            return None
        state = inspect_workflow(workflow.workflow_id, workflow.store)
        for step in state["steps"]:
            if step["name"] == key.rerun_from and (step.get("finished_at") or 0.0) >= (
                self.requested_at
            ):
                return None  # re-run after the request: this is a retry of that rerun
        return key.rerun_from

    # -- what happened -------------------------------------------------------------------------

    def record(
        self, key: CallKey, store: CheckpointStore, run: Run | None, error: BaseException | None
    ) -> None:
        """Note a call's steps (or the error that stopped it before it ran) for the artifact."""
        with self._lock:
            if store is not self.store:
                self._elsewhere.append((store, key.workflow_id))
            if key.order < 0 or key.order >= len(self._calls):
                return
            call = self._calls[key.order]
            if run is not None:
                call.rows = [step.summary() for step in run.steps]
            if error is not None and not call.rows:
                call.error = f"{type(error).__name__}: {error}"

    def outcomes(self) -> dict[str, list[str]]:
        """Call labels by outcome: ran, restored, failed, not finished."""
        found: dict[str, list[str]] = {"ran": [], "restored": [], "failed": [], "unfinished": []}
        for call in self._calls:
            label = f"{call.order}. {call.task}"
            statuses = {row["status"] for row in call.rows}
            if call.error is not None or "FAILED" in statuses:
                found["failed"].append(label)
            elif not call.rows or statuses != {"COMPLETED"}:
                found["unfinished"].append(label)
            elif all(row["restored"] for row in call.rows):
                found["restored"].append(label)
            else:
                found["ran"].append(label)
        return found

    def markdown(self, title: str) -> str:
        """The artifact: one line per outcome, then a row per step of every call."""
        lines = [f"### {title}", ""]
        for outcome, labels in self.outcomes().items():
            lines.append(f"- **{outcome}** ({len(labels)}): {', '.join(labels) or '-'}")
        if self.rerun_from is not None or self.rerun_all:
            lines.append(f"- **rerun from**: {self.rerun_from or 'the first call'}")
        rows = []
        for call in self._calls:
            for row in call.rows or [{"name": call.task, "status": "FAILED", "error": call.error}]:
                name = row["name"] if len(call.rows) > 1 else call.task
                rows.append({**row, "name": f"{call.order}. {name}"})
        return "\n".join([*lines, "", markdown_table(rows, noun="call")])

    def clean(self) -> None:
        """Delete every checkpoint of the scope (the run completed), and its request."""
        targets = [(self.store, wid) for wid in workflows_under(self.store, f"{self.scope}/")]
        with self._lock:
            targets += self._elsewhere
        for store, workflow_id in targets:
            try:
                reset(workflow_id, store, LeaseConfig())
            except LockHeld as error:  # a call still running (a future nobody waited for)
                self.logger.warning("kept the checkpoints of %s: %s", workflow_id, error)
        reset(self.scope, self.store, lock=False)  # the request; the lease is ours


def current_scope() -> FlowScope | None:
    """The scope of the `dotflow_flow` attempt this code runs in, if any."""
    scope = _SCOPE.get()
    return scope if isinstance(scope, FlowScope) else None


def start_in_scope(
    workflow: Workflow,
    start: Callable[[Workflow], R],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> R:
    """`start(workflow)`; in a scope, a call whose lease an earlier runner left behind waits it
    out (saying how long and why) instead of failing.

    Inside a scope, a held lease on one of its calls can only be an earlier runner's: a resume
    key is held by one flow run at a time, and a flow run runs one attempt at a time. The core
    already takes over at once from a dead process on this host; a runner on another host cannot
    be proven gone, so its lease is waited out.
    """
    try:
        return start(workflow)
    except LockHeld as error:
        wait = _wait_for(workflow, error, logger)
        if wait is None:
            raise
    assert workflow.lock is not None  # a LockHeld came from the lease
    return start(workflow.copy(lock=dataclasses.replace(workflow.lock, wait=wait)))


async def start_in_scope_async(
    workflow: Workflow,
    start: Callable[[Workflow], Awaitable[R]],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> R:
    """`start_in_scope` for `start_async`."""
    try:
        return await start(workflow)
    except LockHeld as error:
        wait = _wait_for(workflow, error, logger)
        if wait is None:
            raise
    assert workflow.lock is not None
    return await start(workflow.copy(lock=dataclasses.replace(workflow.lock, wait=wait)))


def _wait_for(
    workflow: Workflow, error: LockHeld, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> float | None:
    scope = current_scope()
    if (
        scope is None
        or workflow.lock is None
        or not workflow.workflow_id.startswith(f"{scope.scope}/")
    ):
        return None
    wait = max(0.0, error.expires_at + workflow.lock.clock_skew - time.time())
    logger.warning(
        "%s is still leased by %s, an earlier runner of this checkpoint scope on another host "
        "(this is %s), whose process cannot be proven gone: waiting up to %.0fs for its lease "
        "to expire",
        workflow.workflow_id,
        error.holder,
        socket.gethostname(),
        wait,
    )
    return wait + workflow.lock.poll


# -- opening a scope -------------------------------------------------------------------------


def take_scope_lease(
    store: CheckpointStore,
    scope: str,
    config: LeaseConfig,
    flow_run_id: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Lease:
    """Hold the scope for this flow run, or refuse it with `ResumeKeyInUse`.

    A holder on this host whose process is gone is taken over at once (by the core's lease).
    A holder whose flow run Prefect reports as ended, on another host, cannot be proven gone
    (it may still be writing), so its lease is waited out, and the wait is logged. A holder
    whose flow run is still running, or cannot be looked up, refuses this run.
    """
    # the owner names the flow run, so a refused run can say which run holds the key
    lease = workflow_lease(scope, store, config, owner=flow_run_id or None)
    try:
        lease.acquire()
        return lease
    except LockHeld:
        pass
    holder = lease_holder(scope, store, config.clock_skew)
    if holder is None:  # expired or released since: take it normally
        lease.acquire()
        return lease
    state = _flow_run_state(holder.owner)
    where = f"{holder.host} pid {holder.pid}"
    if holder.owner != flow_run_id and state not in _GONE:
        described = f"flow run {holder.owner}" if state else f"runner {holder.owner}"
        raise ResumeKeyInUse(
            f"the checkpoint scope {scope} is in use by {described} ({state or 'state unknown'})"
            f" on {where}; this flow run is refused so that two runs never interleave on one "
            "resume key: run it again once that run has ended (or cancel that run)",
            where,
            holder.expires_at,
        )
    wait = max(0.0, holder.expires_at + config.clock_skew - time.time())
    reason = (
        "an earlier attempt of this flow run"
        if holder.owner == flow_run_id
        else f"flow run {holder.owner}, which Prefect reports {state},"
    )
    logger.warning(
        "the checkpoint scope %s is still leased by %s on %s; that host is not this one (%s), so "
        "its process cannot be proven gone: waiting up to %.0fs for its lease to expire",
        scope,
        reason,
        where,
        socket.gethostname(),
        wait,
    )
    waiting = dataclasses.replace(config, wait=wait + config.poll)
    lease = workflow_lease(scope, store, waiting, owner=flow_run_id)
    lease.acquire()
    return lease


def _flow_run_state(owner: str) -> str | None:
    """The state type of the flow run named by a lease owner (None if it cannot be told)."""
    try:
        flow_run_id = uuid.UUID(owner)
    except ValueError:
        return None
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:  # no such run, or no API: the holder cannot be proven gone
        return None
    return None if state is None else str(state.type.value)


def rerun_request(
    store: CheckpointStore, scope: str, rerun_from: str | None, flow_run_id: str
) -> tuple[str | None, bool, float]:
    """(rerun from, rerun everything, requested at) for this attempt.

    A `rerun_from` parameter becomes the scope's request on the run's first attempt, and its
    retries find their own request again; otherwise a request left by `python -m dotflow_prefect
    rerun` (or the Airflow-style `request_next_start`) applies.
    """
    me = f"prefect flow run {flow_run_id}"
    pending: NextStartRequest | None = peek_next_start(scope, store)
    if rerun_from is not None and (
        pending is None or pending.requested_by != me or pending.rerun_from != rerun_from
    ):
        request_next_start(scope, store, rerun_from=rerun_from, requested_by=me)
        pending = peek_next_start(scope, store)
    if pending is None:
        return None, False, 0.0
    return pending.rerun_from, pending.start_over, pending.requested_at
