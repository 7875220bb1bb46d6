"""The lines a DotflowOperator writes in its task log: one per restored run, step and failure.

Airflow 3 task loggers are structlog loggers, which render every keyword as `key=value` and
would print a stdlib `extra={...}` dict raw; `TaskLog` passes fields as keywords instead. The
engine's own warnings (a lease taken over, a step interrupted by a dead runner) go to the
`dotflow_providers` logger: `engine_warnings_to` forwards them for the duration of a try.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dotflow_providers import Status, Tracer

if TYPE_CHECKING:
    from dotflow_providers import Run
    from dotflow_providers.engine import StepRecord

#: fields of the engine's log records worth showing; the workflow id is said once per try
FIELDS = ("step", "attempt", "delay", "status", "lock", "epoch")
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class TaskLog:
    """A task logger that shows structured fields as `key=value`, never as an `extra` dump."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        fields = {k: v for k, v in (kwargs.pop("extra", None) or {}).items() if k in FIELDS}
        fields |= {k: v for k, v in kwargs.items() if k != "exc_info"}
        exc_info = kwargs.get("exc_info")
        if isinstance(self.logger, logging.Logger | logging.LoggerAdapter):
            self.logger.log(level, msg, *args, extra=fields, exc_info=exc_info)
            return
        method = getattr(self.logger, _LEVELS.get(level, "info"))
        if exc_info is not None:
            fields["exc_info"] = exc_info
        method(msg, *args, **fields)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)


class TryLog:
    """One try's task log: nothing is written before its first line, which says what the try
    restored; lines noted earlier (a clear, a request from the Checkpoints tab, an engine
    warning raised while the run was being prepared) follow it."""

    def __init__(self, log: TaskLog) -> None:
        self.log = log
        self._opened = False
        self._pending: list[tuple[int, str, tuple[Any, ...], dict[str, Any]]] = []

    def first_line(self, msg: str, *args: Any) -> None:
        self.log.log(logging.INFO, msg, *args)
        self._opened = True
        self.flush()

    def note(self, level: int, msg: str, *args: Any, **fields: Any) -> None:
        if self._opened:
            self.log.log(level, msg, *args, **fields)
        else:
            self._pending.append((level, msg, args, fields))

    def flush(self) -> None:
        """Write what is pending (at the end of a try that never got to its first step)."""
        pending, self._pending = self._pending, []
        for level, msg, args, fields in pending:
            self.log.log(level, msg, *args, **fields)


class _EngineWarnings(logging.Handler):
    def __init__(self, log: TryLog) -> None:
        super().__init__(logging.WARNING)
        self.try_log = log

    def emit(self, record: logging.LogRecord) -> None:
        # attempts and step outcomes (records with an `attempt`) are TaskLogTracer's lines
        if hasattr(record, "attempt"):
            return
        try:
            fields = {k: getattr(record, k) for k in FIELDS if hasattr(record, k)}
            self.try_log.note(record.levelno, "dotflow: %s", record.getMessage(), **fields)
        except Exception:  # a log line must never fail the step that wrote it
            self.handleError(record)


@contextlib.contextmanager
def engine_warnings_to(log: TryLog) -> Iterator[None]:
    """Send the engine's warnings and errors to the task log (once) while the block runs.

    The engine logger stops propagating meanwhile: Airflow routes every stdlib logger to the
    task log, so the engine's own line for a failed step would repeat the task's.
    """
    engine = logging.getLogger("dotflow_providers")
    handler = _EngineWarnings(log)
    propagate = engine.propagate
    engine.addHandler(handler)
    engine.propagate = False
    try:
        yield
    finally:
        engine.removeHandler(handler)
        engine.propagate = propagate


class TaskLogTracer(Tracer):
    """Step lines on the task log: what was restored first, retries as warnings, and one error
    line (with its traceback) per step that failed for good."""

    def __init__(self, log: TryLog, store_url: str, try_number: int, mode: str) -> None:
        self.log = log
        self.store_url = store_url
        self.try_number = try_number
        self.mode = mode

    def workflow_started(self, run: Run) -> None:
        total = len(run.steps)
        restored = sum(1 for step in run.steps if step.restored)
        where = f"workflow {run.workflow_id}, try {self.try_number}, {self.mode} mode"
        if restored:
            self.log.first_line(
                "dotflow: resuming: %d of %d steps restored from %s (%s)",
                restored,
                total,
                self.store_url,
                where,
            )
        else:
            self.log.first_line(
                "dotflow: starting: %d steps, checkpoints in %s (%s)", total, self.store_url, where
            )

    def attempt_failed(self, step: StepRecord, error: BaseException, delay: float | None) -> None:
        if delay is not None:
            self.log.note(
                logging.WARNING,
                "dotflow: step %s attempt %d failed (%s: %s); retrying in %.2fs",
                step.name,
                step.attempts,
                type(error).__name__,
                error,
                delay,
                step=step.name,
                attempt=step.attempts,
            )

    def step_finished(self, step: StepRecord) -> None:
        if step.status is Status.COMPLETED:
            self.log.note(
                logging.INFO,
                "dotflow: step %s completed, attempt %d",
                step.name,
                step.attempts,
                step=step.name,
                attempt=step.attempts,
            )
        elif step.status is Status.FAILED:
            self.log.note(
                logging.ERROR,
                "dotflow: step %s failed after %d attempt(s): %s",
                step.name,
                step.attempts,
                step.error,
                step=step.name,
                attempt=step.attempts,
                exc_info=step.exception,
            )
        else:
            self.log.note(logging.WARNING, "dotflow: step %s %s", step.name, step.status.value)

    def workflow_finished(self, run: Run) -> None:
        if run.status is Status.COMPLETED:
            restored = sum(1 for step in run.steps if step.restored)
            self.log.note(
                logging.INFO,
                "dotflow: workflow completed: %d steps, %d of them restored",
                len(run.steps),
                restored,
            )
