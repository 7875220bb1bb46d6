"""Compensation, saga style: undo completed steps newest first and forget their checkpoints.

One algorithm for both callers: a run that fails with `start(compensate=True)` undoes its chain
(`Execution.compensate_chain`), and `Workflow.compensate` undoes a finished run's steps, in any
process, from the outputs committed in the store. A compensation runs at least once: it is
called before its step's checkpoint is forgotten, so a crash between the two calls it again on
the next compensation, and compensations should be idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import error_text
from ._status import Status

if TYPE_CHECKING:
    from ._action import AnyAction
    from ._engine import StepRecord

logger = logging.getLogger("dotflow_providers")


@dataclasses.dataclass
class Compensation:
    """What `Workflow.compensate` did: every step of the workflow, the undone ones marked.

    A step that had a checkpoint (valid for the definition now or not) is COMPLETED in `steps`;
    `compensated` marks the ones whose compensation ran (their checkpoints are gone, so the next
    start runs them again), and `rollback_error` the one whose compensation failed.
    """

    workflow_id: str
    steps: list[StepRecord]

    @property
    def compensated(self) -> list[str]:
        """The names of the undone steps, in the order they were undone (newest first)."""
        return [step.name for step in reversed(self.steps) if step.compensated]

    def summary(self) -> dict[str, Any]:
        """JSON-safe facts (outputs left out), as `Run.summary()`."""
        return {
            "workflow_id": self.workflow_id,
            "compensated": self.compensated,
            "steps": [step.summary() for step in self.steps],
        }


def compensation_order(
    indices: Iterable[int], records: Sequence[StepRecord], steps: Sequence[AnyAction]
) -> list[int]:
    """Which of `indices` to undo, newest first: the completed steps that have a compensation
    and were not undone yet."""
    return [
        index
        for index in sorted(set(indices), reverse=True)
        if records[index].status is Status.COMPLETED
        and not records[index].compensated
        and steps[index].compensate is not None
    ]


def undo(
    indices: Iterable[int],
    records: Sequence[StepRecord],
    steps: Sequence[AnyAction],
    error: BaseException,
    forget: Callable[[StepRecord], None],
) -> tuple[StepRecord, Exception] | None:
    """Undo the completed steps among `indices`, newest first, each step's checkpoint forgotten
    (`forget`) once its compensation returned.

    Stops at the first compensation that raises: its error is recorded on the step
    (`rollback_error`, beside whatever error the step or run has) and returned with it; that
    step and the older ones keep their checkpoints, since their work was not undone.
    """
    for index in compensation_order(indices, records, steps):
        record, compensate = records[index], steps[index].compensate
        assert compensate is not None
        try:
            compensate(record.output, error)
        except Exception as failure:  # reported beside the original error, never instead of it
            record.rollback_error = error_text(failure)
            logger.error(
                "compensation of step %s failed: %s (compensating for: %s: %s); it and the "
                "steps before it keep their checkpoints",
                record.name,
                record.rollback_error,
                type(error).__name__,
                error,
                extra={"workflow_id": record.workflow_id, "step": record.name},
            )
            return record, failure
        record.compensated = True
        forget(record)
    return None


__all__ = ["Compensation", "compensation_order", "undo"]
