"""Hooks that observe runs, steps and retry decisions (adapters and OpenTelemetry use them)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._engine import StepRecord
    from ._run import Run


class Tracer:
    """Subclass and override what you need; every hook is a no-op by default.

    Hooks run on the engine's thread, so keep them quick and never raise from them.
    """

    def workflow_started(self, run: Run) -> None:
        """A run is about to execute its first pending step."""

    def workflow_finished(self, run: Run) -> None:
        """A run ended; `run.status` says how."""

    def step_started(self, step: StepRecord) -> None:
        """A step's first attempt is about to run."""

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        """An attempt failed; `delay` is the wait before the next one, or None for no retry."""

    def step_finished(self, step: StepRecord) -> None:
        """A step ended; `step.status` says how."""


class Tracers(Tracer):
    """Several tracers as one (a user's OpenTelemetry tracer and an adapter's log lines)."""

    def __init__(self, *tracers: Tracer | None) -> None:
        self.tracers = [t for t in tracers if t is not None]

    def workflow_started(self, run: Run) -> None:
        for tracer in self.tracers:
            tracer.workflow_started(run)

    def workflow_finished(self, run: Run) -> None:
        for tracer in self.tracers:
            tracer.workflow_finished(run)

    def step_started(self, step: StepRecord) -> None:
        for tracer in self.tracers:
            tracer.step_started(step)

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        for tracer in self.tracers:
            tracer.attempt_failed(step, error, delay)

    def step_finished(self, step: StepRecord) -> None:
        for tracer in self.tracers:
            tracer.step_finished(step)


class TaskLogger(Protocol):
    """What a tracer needs of a logger: the stdlib's, or an orchestrator's task logger."""

    def log(self, level: int, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...


class LoggingTracer(Tracer):
    """Runs, steps and retry decisions as log records with `workflow_id`, `step`, `attempt`,
    `delay` and `status` fields.

    The engine turns one on at DEBUG when the `dotflow_providers` logger is at DEBUG; the
    adapters use one at INFO, with retries, on their orchestrator's task logger.
    """

    def __init__(
        self,
        logger: TaskLogger | None = None,
        level: int = logging.DEBUG,
        *,
        starts: bool = True,
        retries: bool = False,
    ) -> None:
        self.logger: TaskLogger = logger or logging.getLogger("dotflow_providers")
        self.level, self.starts, self.retries = level, starts, retries

    def workflow_started(self, run: Run) -> None:
        if self.starts:
            self.logger.log(
                self.level,
                "workflow %s started (%d steps, %s)",
                run.workflow_id,
                len(run.steps),
                run.mode,
                extra={"workflow_id": run.workflow_id, "status": run.status.value},
            )

    def workflow_finished(self, run: Run) -> None:
        self.logger.log(
            self.level,
            "workflow %s %s",
            run.workflow_id,
            run.status.value,
            extra={"workflow_id": run.workflow_id, "status": run.status.value},
        )

    def _step(self, step: StepRecord) -> None:
        note = " (restored)" if step.restored else f": {step.error}" if step.error else ""
        self.logger.log(
            self.level,
            "step %s %s, attempt %d%s",
            step.name,
            step.status.value,
            step.attempts,
            note,
            extra={
                "workflow_id": step.workflow_id,
                "step": step.name,
                "attempt": step.attempts,
                "status": step.status.value,
            },
        )

    def step_started(self, step: StepRecord) -> None:
        if self.starts:
            self._step(step)

    def step_finished(self, step: StepRecord) -> None:
        self._step(step)

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        if self.retries and delay is not None:
            self.logger.warning(
                "step %s attempt %d failed (%s: %s); retrying in %.2fs",
                step.name,
                step.attempts,
                type(error).__name__,
                error,
                delay,
                extra={
                    "workflow_id": step.workflow_id,
                    "step": step.name,
                    "attempt": step.attempts,
                    "delay": delay,
                },
            )
