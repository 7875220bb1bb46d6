"""The dotflow Airflow provider: run dotflow-providers workflows as Airflow tasks.

Names are imported lazily: Airflow imports `dotflow_airflow.provider_info` while it is still
configuring itself, before the operator's own Airflow imports could succeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .decorators.dotflow import dotflow_task
    from .hooks.dotflow import DotflowHook
    from .operators.dotflow import DotflowOperator

__all__ = ["DotflowHook", "DotflowOperator", "dotflow_task"]


def __getattr__(name: str) -> Any:
    if name == "DotflowOperator":
        from .operators.dotflow import DotflowOperator

        return DotflowOperator
    if name == "DotflowHook":
        from .hooks.dotflow import DotflowHook

        return DotflowHook
    if name == "dotflow_task":
        from .decorators.dotflow import dotflow_task

        return dotflow_task
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
