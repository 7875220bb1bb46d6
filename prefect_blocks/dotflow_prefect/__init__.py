"""dotflow-providers for Prefect: checkpoint-store and retry-policy blocks, task helpers.

Registered through the `prefect.collections` entry point, so
`prefect block register -m dotflow_prefect` registers the blocks.
"""

from .blocks import (
    CheckpointStoreBlock,
    DotflowFileStore,
    DotflowGCSStore,
    DotflowRetryPolicy,
    DotflowS3Store,
)
from .tasks import default_store, dotflow_task, run_workflow, steps_markdown

__all__ = [
    "CheckpointStoreBlock",
    "DotflowFileStore",
    "DotflowGCSStore",
    "DotflowRetryPolicy",
    "DotflowS3Store",
    "default_store",
    "dotflow_task",
    "run_workflow",
    "steps_markdown",
]
