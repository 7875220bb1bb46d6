"""Every import from Airflow, in one place: the Task SDK (`airflow.sdk`) of Airflow 3.3."""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, Context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

try:  # the plugin base class moved into the Task SDK; older 3.x keep it in core
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - depends on the Airflow version
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment,no-redef,unused-ignore]


def state_store_limit() -> int:
    """`[state_store] max_value_storage_bytes`: the largest value the task state store keeps."""
    return int(conf.getint("state_store", "max_value_storage_bytes", fallback=65535))


__all__ = [
    "AirflowFailException",
    "AirflowPlugin",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "Context",
    "state_store_limit",
]
