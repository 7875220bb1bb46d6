"""The engines that run one step, and the record of what happened to it.

Workflows use them for you; they are public for tests and for building new execution modes.
"""

from ._async import AsyncTaskEngine
from ._engine import StepLifecycle, StepRecord, TaskEngine

__all__ = ["AsyncTaskEngine", "StepLifecycle", "StepRecord", "TaskEngine"]
