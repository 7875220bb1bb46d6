"""OpenTelemetry tracing: `pip install 'dotflow-providers[otel]'`.

    from dotflow_providers.instrumentation.otel import OpenTelemetryTracer
    Workflow("sales", tracer=OpenTelemetryTracer())

One span per workflow run, one per step (its child), one per attempt (the step's child); a
failed attempt's span records the error and a `dotflow.retry` event with the chosen delay (or
`dotflow.give_up`). Spans go to whatever tracer provider the application configured.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ..tracing import Tracer

if TYPE_CHECKING:
    from .._engine import StepRecord
    from .._run import Run


class OpenTelemetryTracer(Tracer):
    """Emits OpenTelemetry spans for runs, steps and attempts."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._tracer = trace.get_tracer("dotflow_providers", tracer_provider=tracer_provider)
        self._lock = threading.Lock()
        self._runs: dict[int, Span] = {}
        self._steps: dict[tuple[int, int], Span] = {}
        self._attempts: dict[tuple[int, int], Span] = {}
        self._owner: dict[int, int] = {}  # id(step record) -> id(run)

    def workflow_started(self, run: Run) -> None:
        span = self._tracer.start_span(
            f"dotflow.workflow {run.workflow_id}",
            attributes={
                "dotflow.workflow_id": run.workflow_id,
                "dotflow.mode": run.mode,
                "dotflow.steps": len(run.steps),
            },
        )
        with self._lock:
            self._runs[id(run)] = span
            for step in run.steps:
                self._owner[id(step)] = id(run)

    def _attempt(self, key: tuple[int, int], step: StepRecord) -> None:
        parent = self._steps[key]
        self._attempts[key] = self._tracer.start_span(
            f"dotflow.attempt {step.name}#{step.attempts + 1}",
            context=trace.set_span_in_context(parent),
            attributes={"dotflow.step": step.name, "dotflow.attempt": step.attempts + 1},
        )

    def step_started(self, step: StepRecord) -> None:
        with self._lock:
            run = self._owner.get(id(step), 0)
            parent = self._runs.get(run)
            context = trace.set_span_in_context(parent) if parent is not None else None
            key = (run, step.index)
            self._steps[key] = self._tracer.start_span(
                f"dotflow.step {step.name}",
                context=context,
                attributes={"dotflow.step": step.name, "dotflow.index": step.index},
            )
            self._attempt(key, step)

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        with self._lock:
            key = (self._owner.get(id(step), 0), step.index)
            span = self._attempts.pop(key, None)
            if span is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                if delay is None:
                    span.add_event("dotflow.give_up", {"dotflow.attempt": step.attempts})
                else:
                    span.add_event(
                        "dotflow.retry", {"dotflow.attempt": step.attempts, "dotflow.delay": delay}
                    )
                span.end()
            if delay is not None and key in self._steps:
                self._attempt(key, step)

    def step_finished(self, step: StepRecord) -> None:
        with self._lock:
            key = (self._owner.get(id(step), 0), step.index)
            attempt = self._attempts.pop(key, None)
            if attempt is not None:
                attempt.end()
            span = self._steps.pop(key, None)
        if span is None:
            return
        span.set_attribute("dotflow.status", step.status.value)
        span.set_attribute("dotflow.attempts", step.attempts)
        if step.error:
            span.set_status(Status(StatusCode.ERROR, step.error))
        span.end()

    def workflow_finished(self, run: Run) -> None:
        with self._lock:
            span = self._runs.pop(id(run), None)
            for step in run.steps:
                self._owner.pop(id(step), None)
        if span is None:
            return
        span.set_attribute("dotflow.status", run.status.value)
        if run.status.value != "COMPLETED":
            span.set_status(Status(StatusCode.ERROR, run.status.value))
        span.end()
