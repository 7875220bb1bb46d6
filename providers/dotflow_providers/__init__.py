"""dotflow-providers: run workflow steps with retries, timeouts and durable checkpoints."""

import logging as _logging
from typing import Any as _Any

from ._action import Action, Context, action
from ._compensation import Compensation
from ._errors import (
    CheckpointError,
    CircuitOpen,
    CompensationFailed,
    ConfigurationError,
    CorruptCheckpoint,
    DotflowError,
    InputChanged,
    InterruptedStage,
    InvalidPolicy,
    InvalidStep,
    InvalidTransition,
    InvalidWorkflowId,
    KeyTooLong,
    LockHeld,
    LockLost,
    MapFailed,
    NotRunning,
    PreconditionFailed,
    RolledBack,
    StepTimeout,
    StoreError,
    UnknownMode,
    UnknownStoreURL,
    UnreadableDocument,
    UnsupportedCheckpointFormat,
    WorkflowCancelled,
    WorkflowDefinitionChanged,
    WorkflowFailed,
    redact_errors,
)
from ._inspect import inspect_workflow, list_workflows
from ._lease import LeaseConfig
from ._loader import load_workflow
from ._progress import Progress
from ._run import Run
from ._stages import Stage, dump_stages
from ._status import Status
from ._workflow import StagedTask, Workflow, cancel, clean_older_than, reset
from ._workflow import reset_checkpoints as reset_checkpoints  # deprecated: not in __all__
from .retry import CircuitBreaker, ExponentialBackoff, FixedRetry, RetryPolicy
from .storage import CheckpointStore, FileStore, MemoryStore, store_from_url
from .tracing import LoggingTracer, Tracer, Tracers

# A library leaves output to the application: configure "dotflow_providers" to see retries.
_logging.getLogger("dotflow_providers").addHandler(_logging.NullHandler())


def __getattr__(name: str) -> _Any:
    if name == "__version__":  # read once asked for: importing the package reads no metadata
        from importlib.metadata import version

        return version("dotflow-providers")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Action",
    "CheckpointError",
    "CheckpointStore",
    "CircuitBreaker",
    "CircuitOpen",
    "Compensation",
    "CompensationFailed",
    "ConfigurationError",
    "Context",
    "CorruptCheckpoint",
    "DotflowError",
    "ExponentialBackoff",
    "FileStore",
    "FixedRetry",
    "InputChanged",
    "InterruptedStage",
    "InvalidPolicy",
    "InvalidStep",
    "InvalidTransition",
    "InvalidWorkflowId",
    "KeyTooLong",
    "LeaseConfig",
    "LockHeld",
    "LockLost",
    "LoggingTracer",
    "MapFailed",
    "MemoryStore",
    "NotRunning",
    "PreconditionFailed",
    "Progress",
    "RetryPolicy",
    "RolledBack",
    "Run",
    "Stage",
    "StagedTask",
    "Status",
    "StepTimeout",
    "StoreError",
    "Tracer",
    "Tracers",
    "UnknownMode",
    "UnknownStoreURL",
    "UnreadableDocument",
    "UnsupportedCheckpointFormat",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowDefinitionChanged",
    "WorkflowFailed",
    "action",
    "cancel",
    "clean_older_than",
    "dump_stages",
    "inspect_workflow",
    "list_workflows",
    "load_workflow",
    "redact_errors",
    "reset",
    "store_from_url",
]
