"""dotflow-providers: run workflow steps with retries, timeouts and durable checkpoints."""

import logging as _logging

from ._action import Action, Context, action
from ._async import AsyncTaskEngine
from ._engine import StepRecord, TaskEngine
from ._errors import (
    CheckpointError,
    CircuitOpen,
    ConfigurationError,
    CorruptCheckpoint,
    DotflowError,
    InputChanged,
    InterruptedStage,
    InvalidPolicy,
    InvalidStep,
    InvalidWorkflowId,
    LockHeld,
    LockLost,
    PreconditionFailed,
    StepTimeout,
    StoreError,
    UnknownMode,
    UnknownStoreURL,
    UnsupportedCheckpointFormat,
    WorkflowCancelled,
    WorkflowDefinitionChanged,
    WorkflowFailed,
)
from ._inspect import inspect_workflow
from ._lease import LeaseConfig
from ._loader import load_workflow
from ._progress import Progress
from ._stages import Stage, StagedTask, cancel, dump_stages
from ._status import InvalidTransition, Status
from ._workflow import Run, Workflow
from .retry import CircuitBreaker, ExponentialBackoff, FixedRetry, RetryPolicy
from .storage import CheckpointStore, FileStore, MemoryStore, store_from_url
from .tracing import Tracer

# A library leaves output to the application: configure "dotflow_providers" to see retries.
_logging.getLogger("dotflow_providers").addHandler(_logging.NullHandler())

__all__ = [
    "Action",
    "AsyncTaskEngine",
    "CheckpointError",
    "CheckpointStore",
    "CircuitBreaker",
    "CircuitOpen",
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
    "LeaseConfig",
    "LockHeld",
    "LockLost",
    "MemoryStore",
    "PreconditionFailed",
    "Progress",
    "RetryPolicy",
    "Run",
    "Stage",
    "StagedTask",
    "Status",
    "StepRecord",
    "StepTimeout",
    "StoreError",
    "TaskEngine",
    "Tracer",
    "UnknownMode",
    "UnknownStoreURL",
    "UnsupportedCheckpointFormat",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowDefinitionChanged",
    "WorkflowFailed",
    "action",
    "cancel",
    "dump_stages",
    "inspect_workflow",
    "load_workflow",
    "store_from_url",
]
