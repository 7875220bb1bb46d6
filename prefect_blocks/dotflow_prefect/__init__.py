"""dotflow-providers for Prefect: a durable flow decorator, task helpers, store and retry blocks.

Registered through the `prefect.collections` entry point, so
`prefect block register -m dotflow_prefect` registers the blocks.
"""

from dotflow_providers.integration import PERMANENT_ERRORS

from ._identity import CheckpointKey, UndigestableArgument
from ._scope import ResumeKeyInUse, current_scope
from .blocks import (
    CheckpointStoreBlock,
    DotflowFileStore,
    DotflowGCSStore,
    DotflowRetryPolicy,
    DotflowS3Store,
)
from .flows import dotflow_flow
from .tasks import (
    DotflowTask,
    default_store,
    dotflow_task,
    run_workflow,
    steps_markdown,
)

__all__ = [
    "PERMANENT_ERRORS",
    "CheckpointKey",
    "CheckpointStoreBlock",
    "DotflowFileStore",
    "DotflowGCSStore",
    "DotflowRetryPolicy",
    "DotflowS3Store",
    "DotflowTask",
    "ResumeKeyInUse",
    "UndigestableArgument",
    "current_scope",
    "default_store",
    "dotflow_flow",
    "dotflow_task",
    "run_workflow",
    "steps_markdown",
]
