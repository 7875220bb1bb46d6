"""`Run`: one execution of a workflow, its status, its steps and its output."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ._engine import CancelToken, StepRecord
from ._errors import WorkflowCancelled, WorkflowFailed
from ._status import Status


class Run:
    """One execution of a workflow: its status, its steps and its output."""

    def __init__(self, workflow_id: str, steps: list[StepRecord], mode: str) -> None:
        self.workflow_id = workflow_id
        self.steps = steps
        self.mode = mode
        self.status = Status.NOT_STARTED
        self.started_at = time.time()
        self.duration: float | None = None
        self.cancel_event = CancelToken()
        self._finished = threading.Event()
        self._cancel_hooks: list[Callable[[], None]] = []

    @property
    def output(self) -> Any:
        """The output of the last step, or None if it did not complete."""
        last = self.steps[-1]
        return last.output if last.status is Status.COMPLETED else None

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run has finished (or `timeout` seconds passed); returns the run."""
        self._finished.wait(timeout)
        return self

    def cancel(self) -> None:
        """Ask the run to stop: no further step or attempt starts, waits are cut short.

        A step running in a thread finishes its current attempt (threads cannot be killed) and
        its output is not committed; a `timeout_mode="process"` attempt is not waited for
        further, and async steps are cancelled at once. Stages see `self.cancelled`. The same
        happens when another process calls `dotflow_providers.cancel` for this run.
        """
        self.cancel_event.set()
        for hook in self._cancel_hooks:
            hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call `hook` (from any thread) when the run is cancelled."""
        self._cancel_hooks.append(hook)
        if self.cancel_event.is_set():
            hook()

    def forget_cancel(self, hook: Callable[[], None]) -> None:
        if hook in self._cancel_hooks:
            self._cancel_hooks.remove(hook)

    def raise_for_status(self) -> Run:
        """Return the run if it completed, else raise `WorkflowFailed` or `WorkflowCancelled`."""
        if self.status is Status.COMPLETED:
            return self
        if self.status is Status.CANCELLED:
            raise WorkflowCancelled(f"workflow {self.workflow_id!r} was cancelled")
        failed = self.failed_step
        if failed is None:
            raise WorkflowFailed(f"workflow {self.workflow_id!r} ended {self.status.value}")
        raise WorkflowFailed(
            f"workflow {self.workflow_id!r} failed at step {failed.name!r} after "
            f"{failed.attempts} attempt(s): {failed.error}"
        ) from failed.exception

    @property
    def failed_step(self) -> StepRecord | None:
        """The first step that failed, if any."""
        return next((s for s in self.steps if s.status is Status.FAILED), None)

    def summary(self) -> dict[str, Any]:
        """JSON-safe facts about the run (step outputs left out)."""
        return {
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "mode": self.mode,
            "duration": self.duration,
            "steps": [step.summary() for step in self.steps],
        }

    def settle(self) -> None:
        """Set the run's status from its steps' (once every step has ended)."""
        statuses = {step.status for step in self.steps}
        if statuses == {Status.COMPLETED}:
            self.status = Status.COMPLETED
        elif Status.CANCELLED in statuses:
            self.status = Status.CANCELLED
        else:
            self.status = Status.FAILED
        self.duration = time.time() - self.started_at

    def finished(self) -> None:
        """Wake up whoever waits for the run (called once its lease is released)."""
        self._finished.set()

    def __repr__(self) -> str:
        return f"<Run {self.workflow_id!r} {self.status.value} steps={len(self.steps)}>"
