"""What the engine tells Airflow about retrying a failed try (Airflow 3.3 retry policies, AIP-105).

A try that stops at a failed step ends one of three ways:

- **fail now** (`AirflowFailException`, no retry policy consulted): the step's error is one its
  policy never retries, or a permanent engine error, or the step's `deadline` would pass
  before Airflow's next try could start;
- **retry, but not before** a delay: the step's circuit breaker is open, so Airflow's next try
  waits at least the breaker's `reset_after` (through `DotflowRetryPolicy`, which turns the
  delay carried by `WorkflowTryFailed` into a `RetryDecision`);
- **Airflow's own retry** (its `retries`, `retry_delay`): everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dotflow_providers import WorkflowFailed

from ..compatibility import RetryDecision, RetryPolicy

#: task state store key of the deadline anchors: step name -> first attempt (unix time)
DEADLINES = "dotflow-deadlines"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How Airflow should treat a failed try: fail now, or retry no earlier than `delay` s."""

    fail: bool
    #: the least wait before the next try, in seconds; None leaves it to Airflow's retry_delay
    delay: float | None
    reason: str


def decide(
    *,
    step: str,
    retryable: bool,
    airflow_delay: float,
    now: float,
    breaker_open: bool = False,
    reset_after: float = 0.0,
    deadline: float | None = None,
    first_attempt: float | None = None,
) -> Verdict:
    """The verdict on a try that failed at `step` (a pure function: tests call it directly).

    `airflow_delay` is the task's `retry_delay` in seconds; `first_attempt` is when the step's
    first attempt started, over every try of the task instance, and `deadline` its policy's
    budget in seconds from then.
    """
    if not retryable:
        return Verdict(True, None, f"step {step!r} failed with an error its policy never retries")
    delay = max(airflow_delay, reset_after) if breaker_open else None
    if deadline is not None and first_attempt is not None:
        ends = first_attempt + deadline
        next_try = now + (airflow_delay if delay is None else delay)
        if not next_try < ends:
            left = max(ends - now, 0.0)
            return Verdict(
                True,
                None,
                f"step {step!r} has {left:.1f}s left of its {deadline:g}s deadline, less than "
                f"the {next_try - now:.1f}s before Airflow's next try",
            )
    if delay is not None:
        return Verdict(
            False,
            delay,
            f"step {step!r}: its circuit breaker is open; next try in {delay:.1f}s, once the "
            f"breaker lets a trial call through (reset_after={reset_after:g}s)",
        )
    return Verdict(False, None, "an Airflow retry resumes at this step")


def deadline_anchor(stored: Any, step: str, first_attempt: float) -> tuple[float, dict[str, Any]]:
    """The step's first attempt over every try, and the anchors to store back."""
    anchors: dict[str, float] = {}
    if isinstance(stored, dict):
        anchors = {
            k: float(v)
            for k, v in stored.items()
            if isinstance(k, str)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
        }
    anchor = min(anchors.get(step, first_attempt), first_attempt)
    return anchor, {**anchors, step: anchor}


class WorkflowTryFailed(WorkflowFailed):
    """A try stopped at a failed step; `retry_after` is the least wait before the next try."""

    def __init__(self, message: str, retry_after: float | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


if RetryPolicy is not None:

    class DotflowRetryPolicy(RetryPolicy):
        """Retries a `WorkflowTryFailed` no earlier than it says; asks `inner` (the task's own
        `retry_policy`, if any) about every other failure."""

        def __init__(self, inner: Any = None) -> None:
            self.inner = inner

        def evaluate(
            self,
            exception: BaseException,
            try_number: int,
            max_tries: int,
            context: Any = None,
        ) -> Any:
            if isinstance(exception, WorkflowTryFailed) and exception.retry_after is not None:
                return RetryDecision.retry(
                    timedelta(seconds=exception.retry_after), reason=exception.reason
                )
            if self.inner is not None:
                return self.inner.evaluate(exception, try_number, max_tries, context)
            return RetryDecision.default()

        def serialize(self) -> dict[str, Any]:
            # only a has_retry_policy flag is serialized (Airflow 3.3); the worker builds this
            return {"inner": None if self.inner is None else type(self.inner).__name__}

else:  # pragma: no cover - Airflow before 3.3 has no retry policies
    DotflowRetryPolicy = None  # type: ignore[assignment,misc]


def with_engine_policy(given: Any) -> Any:
    """The task's `retry_policy`: the engine's verdicts first, then the user's own policy."""
    if DotflowRetryPolicy is None or isinstance(given, DotflowRetryPolicy):
        return given
    return DotflowRetryPolicy(given)
