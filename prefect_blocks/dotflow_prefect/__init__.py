"""dotflow-providers for Prefect: checkpoint-store and retry-policy blocks, task helpers.

Registered through the `prefect.collections` entry point, so
`prefect block register -m dotflow_prefect` registers the blocks.
"""

from dotflow_providers.integration import PERMANENT_ERRORS

from ._identity import CheckpointKey, UndigestableArgument
from .blocks import (
    CheckpointStoreBlock,
    DotflowFileStore,
    DotflowGCSStore,
    DotflowRetryPolicy,
    DotflowS3Store,
)
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
    "UndigestableArgument",
    "default_store",
    "dotflow_task",
    "run_workflow",
    "steps_markdown",
]
