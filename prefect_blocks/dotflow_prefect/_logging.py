"""The engine's lines in the Prefect run's logs (the UI and API), without extra settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

from dotflow_providers import Status
from dotflow_providers.tracing import Tracer

if TYPE_CHECKING:
    from dotflow_providers import Run
    from dotflow_providers.engine import StepRecord


class RunLogHandler(logging.Handler):
    """Sends `dotflow_providers` warnings and errors (a lease taken over, a step that was
    interrupted, a failed rollback) to the logs of the Prefect run they happen in.

    Records made outside a run (a lease heartbeat thread) stay with the usual handlers.
    """

    def emit(self, record: logging.LogRecord) -> None:
        context: Any = TaskRunContext.get() or FlowRunContext.get()
        # attempts and step outcomes (records with an `attempt`) are `RunLogTracer`'s lines
        if context is None or hasattr(record, "attempt"):
            return
        try:
            get_run_logger(context).log(record.levelno, record.getMessage())
        except Exception:  # a log line must never fail the step that wrote it
            self.handleError(record)


def forward_engine_logs() -> None:
    """Install `RunLogHandler` once (unless PREFECT_LOGGING_EXTRA_LOGGERS already sends them)."""
    if "dotflow_providers" in str(PREFECT_LOGGING_EXTRA_LOGGERS.value() or ""):
        return
    engine_logger = logging.getLogger("dotflow_providers")
    if not any(isinstance(h, RunLogHandler) for h in engine_logger.handlers):
        engine_logger.addHandler(RunLogHandler(logging.WARNING))


class RunLogTracer(Tracer):
    """Step lines on the run logger: restored and completed at INFO, failures at ERROR."""

    def __init__(self, logger: logging.LoggerAdapter[Any] | logging.Logger) -> None:
        self.logger = logger

    def workflow_started(self, run: Run) -> None:
        for step in run.steps:
            if step.restored:
                self.logger.info(
                    "step %s restored from its checkpoint (completed in %d attempt(s))",
                    step.name,
                    step.attempts,
                )

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        if delay is not None:
            self.logger.warning(
                "step %s attempt %d failed (%s: %s); retrying in %.2fs",
                step.name,
                step.attempts,
                type(error).__name__,
                error,
                delay,
            )

    def step_finished(self, step: StepRecord) -> None:
        if step.status is Status.COMPLETED:
            self.logger.info("step %s completed, attempt %d", step.name, step.attempts)
        elif step.status is Status.FAILED:
            self.logger.error(
                "step %s failed after %d attempt(s): %s", step.name, step.attempts, step.error
            )
        else:
            self.logger.warning("step %s %s", step.name, step.status.value)

    def workflow_finished(self, run: Run) -> None:
        level = logging.INFO if run.status is Status.COMPLETED else logging.ERROR
        self.logger.log(level, "workflow %s %s", run.workflow_id, run.status.value)
