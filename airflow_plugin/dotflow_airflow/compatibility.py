"""Every import from Airflow, in one place: the Task SDK (`airflow.sdk`) of Airflow 3.3."""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, Context

# The Task SDK's TaskFlow machinery, as Airflow's own @task.bash uses it (for @task.dotflow)
from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.configuration import conf
from airflow.sdk.definitions.context import context_merge
from airflow.sdk.exceptions import AirflowFailException

try:  # the plugin base class moved into the Task SDK; older 3.x keep it in core
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # pragma: no cover - depends on the Airflow version
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment,no-redef,unused-ignore]


try:  # AIP-105 retry policies (a task asks Airflow to retry later): Airflow 3.3 and later
    from airflow.sdk import RetryDecision, RetryPolicy
except ImportError:  # pragma: no cover - depends on the Airflow version
    RetryPolicy = None  # type: ignore[assignment,misc]
    RetryDecision = None  # type: ignore[assignment,misc]


def state_store_limit() -> int:
    """`[state_store] max_value_storage_bytes`: the largest value the task state store keeps
    (0: no limit)."""
    return int(conf.getint("state_store", "max_value_storage_bytes", fallback=65535))


def first_try_after_clear(try_number: int, max_tries: int, retries: int) -> bool:
    """Whether this try of a task instance is the first one after a Clear (not a retry).

    Clearing a finished task instance (UI, REST `clearTaskInstances`, `airflow tasks clear`)
    sets `max_tries = try_number + retries` (`clear_task_instances` in core), while a retry
    leaves `max_tries` alone. So the first try of the current budget is
    `max_tries - retries + 1`: the formula the Task SDK itself uses to find the first try
    since the last clear (`RuntimeTaskInstance.get_first_reschedule_date`). `try_number` and
    `max_tries` are public fields of the Task SDK's `RuntimeTaskInstance`. The dag run's
    `clear_number` would not do: it counts clears of any task of the run, and stays raised
    for this task's later retries. A task's very first try is not "after a clear".
    """
    return try_number > 1 and try_number == max_tries - retries + 1


__all__ = [
    "AirflowFailException",
    "DecoratedOperator",
    "RetryDecision",
    "RetryPolicy",
    "TaskDecorator",
    "context_merge",
    "determine_kwargs",
    "task_decorator_factory",
    "AirflowPlugin",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "Context",
    "first_try_after_clear",
    "state_store_limit",
]
