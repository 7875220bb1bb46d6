"""`TaskEngine`: the one owner of a step's lifecycle, retry loop and checkpoint commit.

Every execution mode hands each step to a `TaskEngine`; none keeps its own copy of this logic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ._action import AnyAction
from ._errors import (
    PERMANENT_ERRORS,
    StepTimeout,
    WorkflowCancelled,
    error_message,
    error_text,
)
from ._format import Attempt
from ._status import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    NOT_STARTED,
    RETRY,
    TRANSITIONS,
    Status,
    check_transition,
)
from ._timeout import in_process, in_thread
from .retry import fast_retry_wait, is_retryable, retry_delay
from .tracing import Tracer

logger = logging.getLogger("dotflow_providers")

Commit = Callable[["StepRecord"], None]
#: Runs one attempt somewhere else (a worker process); returns the output or raises.
AttemptRunner = Callable[[AnyAction, dict[str, Any]], Any]


@dataclasses.dataclass(slots=True, eq=False, init=False)
class StepRecord:
    """What happened to one step of a run (one is built per step and start)."""

    index: int
    name: str
    workflow_id: str = ""
    status: Status = NOT_STARTED
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    error: str | None = None
    error_type: str | None = None
    output: Any = None
    restored: bool = False
    #: False when the step failed with an error its policy never retries (a permanent failure)
    retryable: bool = True
    #: the error of its rollback (or compensation), if that failed too
    rollback_error: str | None = None
    #: it was running when a previous runner died, and runs again now
    interrupted: bool = False
    #: completed, then undone by its compensation (`start(compensate=True)`)
    compensated: bool = False
    #: the checksum of its committed (or restored) output: what steps after it received
    checksum: str | None = None
    #: every attempt: (started_at, finished_at, error type, error message); the error fields
    #: are None for the attempt that succeeded. Empty for a step that succeeded at once.
    history: Sequence[Attempt] = ()
    #: a map step's progress: items_done, items_failed, items_total (None for other steps)
    items: dict[str, int] | None = None
    exception: BaseException | None = dataclasses.field(default=None, repr=False)

    def __init__(self, index: int, name: str, workflow_id: str = "") -> None:
        # by hand, not generated: three arguments, every other field at its default
        self.index = index
        self.name = name
        self.workflow_id = workflow_id
        self.status = NOT_STARTED
        self.attempts = 0
        self.started_at = self.finished_at = self.duration = None
        self.error = self.error_type = self.output = self.rollback_error = None
        self.restored = self.interrupted = self.compensated = False
        self.retryable = True
        self.checksum = None
        self.history = ()
        self.items = None
        self.exception = None

    def set_status(self, status: Status) -> None:
        if status not in TRANSITIONS[self.status]:
            check_transition(self.status, status)  # raises InvalidTransition with the message
        self.status = status

    def summary(self) -> dict[str, Any]:
        """JSON-safe facts about the step (no output), for logs, XComs and tables."""
        facts = {
            "index": self.index,
            "name": self.name,
            "status": self.status.value,
            "attempts": self.attempts,
            "duration": self.duration,
            "error": self.error,
            "retryable": self.retryable,
            "rollback_error": self.rollback_error,
            "restored": self.restored,
            "interrupted": self.interrupted,
            "compensated": self.compensated,
            "history": [list(attempt) for attempt in self.history],
        }
        if self.items is not None:
            facts.update(self.items)
        return facts


class CancelToken:
    """A flag the hot path reads as a plain attribute, and an event to wait on.

    `threading.Event.is_set()` is a Python-level call; every step checks for cancellation
    several times, so the engine reads `requested` instead.
    """

    __slots__ = ("_event", "before_retry", "requested")

    def __init__(self) -> None:
        self.requested = False
        self._event = threading.Event()
        #: called before every retry attempt; raises (e.g. `LockLost`) when none may start
        self.before_retry: Callable[[], None] | None = None

    def set(self) -> None:
        self.requested = True
        self._event.set()

    def is_set(self) -> bool:
        return self.requested

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def _sleep(cancel: CancelToken | None, delay: float) -> None:
    if cancel is None:
        time.sleep(delay)
    elif cancel.wait(delay):
        raise WorkflowCancelled("the run was cancelled while waiting to retry")


class StepLifecycle:
    """What both engines share: transitions, timing, error capture, tracer calls and every
    retry decision. The sync and async engines only add how to call, sleep and commit."""

    __slots__ = (
        "_attempt_at",
        "_skipped",
        "cancel",
        "commit",
        "record",
        "runner",
        "step",
        "tracer",
    )

    def __init__(
        self,
        step: AnyAction,
        record: StepRecord,
        commit: Any = None,
        tracer: Tracer | None = None,
        cancel: CancelToken | None = None,
        runner: AttemptRunner | None = None,
    ) -> None:
        self.step = step
        self.runner = runner
        self.record = record
        self.commit = commit
        self.tracer = tracer
        self.cancel = cancel
        self._attempt_at = 0.0
        #: seconds of waits `fast_retries` skipped (they count as elapsed: see `fast_retry_wait`)
        self._skipped = 0.0

    def _begin(self) -> StepLifecycle:
        record = self.record
        if record.status is not NOT_STARTED:
            check_transition(record.status, IN_PROGRESS)
        record.status = IN_PROGRESS
        record.started_at = time.time()
        if self.tracer is not None:
            self.tracer.step_started(record)
        return self

    def _end(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Record how the step ended; True when the exception (if any) is absorbed."""
        record = self.record
        finished = record.finished_at
        if finished is None:
            finished = record.finished_at = time.time()
        # wall-clock times, as recorded in checkpoints; a clock stepped back never gives < 0
        duration = finished - (record.started_at or finished)
        record.duration = duration if duration > 0.0 else 0.0
        if exc is not None:
            self._failed(exc)
        if self.tracer is not None:
            self.tracer.step_finished(record)
        # Exceptions are recorded, not raised; cancellation and interpreter exits go on.
        return exc is None or isinstance(exc, Exception)

    def _failed(self, exc: BaseException) -> None:
        """Record the error a step ended with (cancelled or failed), and roll it back."""
        record = self.record
        if self.step.guard is not None and not isinstance(exc, Exception):
            # interrupted (cancelled, KeyboardInterrupt): the attempt has no outcome, so a
            # circuit breaker's trial slot is given back
            self.step.guard.abandon_attempt()
        cancelled = (
            isinstance(exc, (WorkflowCancelled, asyncio.CancelledError))
            or not isinstance(exc, Exception)
            or (self.cancel is not None and self.cancel.requested)
        )
        record.set_status(CANCELLED if cancelled else FAILED)
        record.retryable = not isinstance(exc, PERMANENT_ERRORS) and is_retryable(
            self.step.policy, exc
        )
        record.exception = exc
        record.error_type = type(exc).__name__
        record.error = error_text(exc)
        log = logger.warning if cancelled else logger.error
        log(
            "step %s %s after %d attempt(s): %s",
            record.name,
            record.status.value,
            record.attempts,
            record.error,
            extra={
                "workflow_id": record.workflow_id,
                "step": record.name,
                "attempt": record.attempts,
                "status": record.status.value,
            },
        )
        if not cancelled and self.step.on_failure is not None:
            self._roll_back(exc)

    def _roll_back(self, error: BaseException) -> None:
        assert self.step.on_failure is not None
        try:
            self.step.on_failure(error)
        except Exception as failure:  # recorded next to the original error, never instead of it
            self.record.rollback_error = error_text(failure)
            logger.error(
                "rollback of step %s failed: %s (original error: %s)",
                self.record.name,
                self.record.rollback_error,
                self.record.error,
                extra={"step": self.record.name},
            )

    def _start_attempt(self) -> None:
        cancel = self.cancel
        record = self.record
        if cancel is not None:
            if cancel.requested:
                raise WorkflowCancelled(f"the run was cancelled before step {record.name!r}")
            if record.attempts and cancel.before_retry is not None:
                cancel.before_retry()  # a retry is new work: the run must still own its lease
        record.attempts += 1
        # the first attempt starts with the step; later ones read the clock (for the history)
        self._attempt_at = time.time() if record.attempts > 1 else (record.started_at or 0.0)

    def _time_limit(self) -> tuple[float | None, bool]:
        """How long the next attempt may run: its `timeout`, or less when the policy's
        `deadline` (counted from the step's start) ends sooner; and whether the deadline set it.
        `StepTimeout` when the deadline has passed already."""
        step = self.step
        timeout, deadline = step.timeout, step.policy.deadline
        if deadline is None:
            return timeout, False
        started = self.record.started_at
        left = deadline - (time.time() - started) if started is not None else deadline
        if left <= 0:
            raise StepTimeout(f"step {step.name!r} used up its deadline of {deadline}s")
        if timeout is None or left < timeout:
            return left, True
        return timeout, False

    def _past_deadline(self, error: StepTimeout) -> StepTimeout:
        """The error of an attempt stopped because the step's deadline ended."""
        return StepTimeout(
            f"step {self.step.name!r} ran past its deadline of {self.step.policy.deadline}s "
            f"({error})"
        )

    def _admit(self) -> None:
        """Let a guard (circuit breaker) refuse the attempt; counts as a failed attempt."""
        if self.step.guard is not None:
            self.step.guard.before_attempt()

    def _attempt_failed(self, error: Exception) -> float | None:
        """Ask the policy about a failed attempt: the wait before the next one, or None."""
        record, step = self.record, self.step
        now = time.time()
        attempt = (self._attempt_at, now, type(error).__name__, error_message(error)[:2000])
        record.history = [*record.history, attempt]
        if step.guard is not None:
            step.guard.after_attempt(error)
        if isinstance(error, PERMANENT_ERRORS):
            delay = None  # no retry can fix it (an output that cannot come back, a bad argument)
        else:
            elapsed = max(now - (record.started_at or now), 0.0) + self._skipped
            delay, skipped = fast_retry_wait(
                retry_delay(step.policy, record.attempts, error, elapsed), record.attempts
            )
            self._skipped += skipped
        if delay is not None:
            logger.warning(
                "step %s attempt %d failed (%s: %s); retrying in %.3fs",
                record.name,
                record.attempts,
                type(error).__name__,
                error,
                delay,
                extra={
                    "workflow_id": record.workflow_id,
                    "step": record.name,
                    "attempt": record.attempts,
                    "delay": delay,
                },
            )
        if self.tracer is not None:
            self.tracer.attempt_failed(record, error, delay)
        if delay is not None:
            record.set_status(RETRY)
        return delay

    def _attempt_succeeded(self, output: Any) -> None:
        """Keep an attempt's output (not yet committed)."""
        if self.step.guard is not None:
            self.step.guard.after_attempt(None)
        cancel = self.cancel
        if cancel is not None and cancel.requested:
            # a step that returns after its run was cancelled may have stopped early on purpose:
            # its output is not trusted, so nothing is committed
            raise WorkflowCancelled(f"the run was cancelled while step {self.record.name!r} ran")
        record = self.record
        record.output = output
        record.finished_at = time.time()
        if record.history:  # attempts failed before: keep the successful one beside them
            record.history = [*record.history, (self._attempt_at, record.finished_at, None, None)]


class TaskEngine(StepLifecycle):
    """Runs one step: status transitions, timing, error capture, retries and the commit.

    `run(kwargs)` does all of it; or use the engine as a context manager around
    `execute_with_retry`:

        with TaskEngine(step, record, commit=...) as engine:
            engine.execute_with_retry(kwargs)

    On leaving, the record holds the final status; an `Exception` from the step is recorded
    on it (FAILED) and not re-raised, so strategies only decide what runs next.
    """

    __slots__ = ()
    commit: Commit | None

    # the shared lifecycle methods are the context manager itself
    __enter__ = StepLifecycle._begin
    __exit__ = StepLifecycle._end

    def run(self, kwargs: dict[str, Any], failed: Exception | None = None) -> None:
        """The step's whole lifecycle (what `with engine: engine.execute_with_retry(kwargs)`
        does). `failed`: the step has begun and its first attempt failed with this error
        (`run_plain` hands such a step over here)."""
        if failed is None:
            self._begin()
        try:
            self.execute_with_retry(kwargs, failed)
        except BaseException as exc:
            if not self._end(type(exc), exc, exc.__traceback__):
                raise
            return
        self._end(None, None, None)

    def _call(self, kwargs: dict[str, Any]) -> Any:
        step = self.step
        timeout, by_deadline = self._time_limit()
        try:
            if timeout is not None and step.timeout_mode == "process":
                # The Action (not its raw function) is what pickles by reference into the child.
                return in_process(call_step, {"step": step, "kwargs": kwargs}, timeout, step.name)
            if self.runner is not None:
                return self.runner(step, kwargs)
            if timeout is not None:
                return in_thread(call_step, {"step": step, "kwargs": kwargs}, timeout, step.name)
        except StepTimeout as error:
            if by_deadline:
                raise self._past_deadline(error) from None
            raise
        return asyncio.run(step.func(**kwargs)) if step.is_async else step.func(**kwargs)

    def execute_with_retry(self, kwargs: dict[str, Any], failed: Exception | None = None) -> Any:
        """Call the step until it succeeds or its policy gives up; commit the success once.
        `failed`: the error of a first attempt already made."""
        record = self.record
        if failed is not None:
            self._attempt_at = record.started_at or 0.0
        output = self._retry(kwargs, failed)
        if self.commit is not None:
            self.commit(record)
        record.status = COMPLETED  # IN_PROGRESS -> COMPLETED, always allowed
        return output

    def _retry(self, kwargs: dict[str, Any], failed: Exception | None) -> Any:
        """Attempts until one succeeds (its output kept, not committed) or the policy gives up
        (the last error raised); `failed` is the error of an attempt already made."""
        while True:
            if failed is not None:
                delay = self._attempt_failed(failed)
                if delay is None:
                    raise failed
                if delay > 0:
                    _sleep(self.cancel, delay)
                self.record.set_status(IN_PROGRESS)
            self._start_attempt()
            try:
                self._admit()
                output = self._call(kwargs)
            except Exception as error:
                failed = error
                continue
            self._attempt_succeeded(output)
            return output


def run_plain(
    step: AnyAction,
    record: StepRecord,
    kwargs: dict[str, Any],
    commit: Commit | None,
    cancel: CancelToken,
) -> None:
    """`TaskEngine(step, record, commit, None, cancel).run(kwargs)` for a `plain` step (no
    guard, time limit, deadline or coroutine) run here with no tracer: the same lifecycle, its
    success path in this one frame with no engine built. Anything else (a failed first attempt,
    a cancel, a commit that fails) goes to a `TaskEngine` at the point where it happened.
    `_async._run_chain` does the same for coroutine steps; both use the `plain_*` helpers below."""
    if record.status is not NOT_STARTED or cancel.requested:
        TaskEngine(step, record, commit, None, cancel).run(kwargs)
        return
    started = plain_begin(record)
    try:
        output = step.func(**kwargs)
    except Exception as error:
        TaskEngine(step, record, commit, None, cancel).run(kwargs, failed=error)
        return
    try:
        finished = plain_output(step, record, output, cancel)
        if commit is not None:
            commit(record)
    except BaseException as exc:
        if not TaskEngine(step, record, commit, None, cancel)._end(type(exc), exc, None):
            raise
        return
    plain_completed(record, started, finished)


def plain_begin(record: StepRecord) -> float:
    """`_begin` and `_start_attempt` for a plain step's first attempt; its start time."""
    record.status = IN_PROGRESS
    record.attempts = 1
    started: float = time.time()
    record.started_at = started
    return started


def plain_output(step: AnyAction, record: StepRecord, output: Any, cancel: CancelToken) -> float:
    """`_attempt_succeeded` for a plain step: keep its output; the time it finished."""
    if cancel.requested:  # nothing is committed for a step that returns after a cancel
        raise WorkflowCancelled(f"the run was cancelled while step {step.name!r} ran")
    record.output = output
    finished: float = time.time()
    record.finished_at = finished
    return finished


def plain_completed(record: StepRecord, started: float, finished: float) -> None:
    """`_end` of a plain step whose output is committed."""
    record.status = COMPLETED
    duration = finished - started
    record.duration = duration if duration > 0.0 else 0.0


def call_step(step: AnyAction, kwargs: dict[str, Any]) -> Any:
    """One plain call of a step, driving a coroutine function to completion."""
    if step.is_async:
        return asyncio.run(step.func(**kwargs))
    return step.func(**kwargs)
