"""Every error the engine raises: one base class, one name per thing that can go wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._compensation import Compensation

#: what every error message the engine keeps goes through (see `redact_errors`)
_redactor: list[Callable[[str], str]] = []


def redact_errors(redact: Callable[[str], str] | None) -> None:
    """Pass every error message the engine keeps (a step's `error` and `rollback_error`, its
    attempt history, failure records, checkpoints, and so the summaries orchestrators show)
    through `redact`: a secret masker, such as Airflow's, which the Airflow adapter installs in
    its workers. `None` removes it. Exceptions keep their own text; only what is kept changes."""
    _redactor[:] = [] if redact is None else [redact]


def error_message(error: BaseException) -> str:
    """`str(error)` as the engine keeps it (through the installed redactor)."""
    text = str(error)
    for redact in _redactor:
        text = redact(text)
    return text


def error_text(error: BaseException) -> str:
    """`Type: message` of an error as the engine keeps it (through the installed redactor)."""
    return f"{type(error).__name__}: {error_message(error)}"


class DotflowError(Exception):
    """Base class of every error raised by dotflow-providers."""


class ConfigurationError(DotflowError, ValueError):
    """An argument given to the engine is invalid; the message names it and the fix."""


class UnknownMode(ConfigurationError):
    """`Workflow.start` was given an execution mode that does not exist."""


class InvalidPolicy(ConfigurationError):
    """A retry policy was built with impossible parameters."""


class InvalidStep(ConfigurationError):
    """Something added to a workflow cannot run as a step."""


class InvalidWorkflowId(ConfigurationError):
    """A workflow id cannot be used as a checkpoint key prefix."""


class KeyTooLong(InvalidWorkflowId):
    """A workflow id (with a step name) makes a key longer than the store takes."""


class UnknownStoreURL(ConfigurationError):
    """`store_from_url` was given a URL whose scheme it does not know."""


class InvalidTransition(DotflowError):
    """A status change that the transition table forbids (a bug, or a corrupt record)."""


class StepTimeout(DotflowError, TimeoutError):
    """A step attempt ran longer than its `timeout`."""


class CircuitOpen(DotflowError):
    """A circuit breaker is open, so the step was failed fast without being called."""


class CheckpointError(DotflowError):
    """A checkpoint could not be written or read."""


class CorruptCheckpoint(CheckpointError):
    """A stored checkpoint is unreadable (truncated, not JSON or not a checkpoint)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(
            f"checkpoint {key!r} is corrupt ({reason}); inspect or delete it, or reset the "
            "workflow (`dotflow-providers reset ID --store URL`, or workflow.reset()) to run it "
            "from the start"
        )


class FolderAtKey(CorruptCheckpoint):
    """A `FileStore` has a folder where a document's key points (a workflow id can name it)."""


class UnsupportedCheckpointFormat(CheckpointError):
    """A checkpoint was written by a newer, incompatible dotflow-providers."""


class WorkflowDefinitionChanged(DotflowError):
    """The steps of a workflow differ from those its checkpoints were written for."""


class InputChanged(DotflowError):
    """The initial contexts differ from those the checkpoints were written for."""


class WorkflowFailed(DotflowError):
    """Raised by `Run.raise_for_status()` when a run did not complete."""


class MapFailed(DotflowError):
    """Some items of a map step failed for good; the committed ones are kept."""


class WorkflowCancelled(DotflowError):
    """The workflow was cancelled."""


class RolledBack(DotflowError):
    """Given to compensations as the error when `Workflow.compensate` is called without one:
    the workflow's completed work is undone on request (an enclosing transaction rolled back)."""


class CompensationFailed(DotflowError):
    """A compensation raised while `Workflow.compensate` undid a workflow's completed steps.

    `step` is the step whose compensation failed (its `__cause__` is that failure), `compensation`
    what was done before it, `original` the error the compensation was for. That step and the
    older ones keep their checkpoints, so calling `compensate` again resumes at that step.
    """

    def __init__(
        self, message: str, step: str, compensation: Compensation, original: BaseException
    ) -> None:
        self.step = step
        self.compensation = compensation
        self.original = original
        super().__init__(message)


class StoreError(DotflowError):
    """A checkpoint store could not complete an operation."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key exists (create-only) or changed (compare-and-swap)."""

    def __init__(self, key: str, detail: str = "") -> None:
        self.key = key
        super().__init__(f"conditional write to {key!r} failed{': ' + detail if detail else ''}")


class UnreadableDocument(StoreError, CheckpointError):
    """A stored document cannot be decrypted: its key is missing, or it was altered. No retry
    can fix that; the message says which key is needed."""


class LockHeld(DotflowError):
    """Another runner holds the lease on this workflow id."""

    def __init__(self, workflow_key: str, holder: str, expires_at: float) -> None:
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(
            f"{workflow_key} is held by {holder} until {expires_at:.3f} (unix time); wait for it "
            "to finish, pass a lock wait, or stop that runner"
        )


class LockLost(DotflowError):
    """This runner's lease was taken over (it stalled past its TTL); it must stop."""


class NotRunning(DotflowError):
    """A cancel request named a workflow that no runner holds."""


class InterruptedStage(DotflowError):
    """A step was running when its runner died, and `strict_recovery` asks to stop here."""


#: Failures that no retry, by the engine or by an orchestrator, can fix: the adapters fail
#: their task or flow run without consuming retries.
PERMANENT_ERRORS: tuple[type[DotflowError], ...] = (
    CheckpointError,
    ConfigurationError,
    WorkflowDefinitionChanged,
    InputChanged,
    InterruptedStage,  # strict recovery: an operator decides, not a retry
)
