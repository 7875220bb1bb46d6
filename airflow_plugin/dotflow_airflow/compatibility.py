"""Every import from Airflow, in one place: the Task SDK (`airflow.sdk`) of Airflow 3.3, and
(imported when first called, so workers never load them) the API server's pieces the plugin's
checkpoint page uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Protocol

from airflow.listeners import hookimpl  # the listener's hooks (pluggy markers)
from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink, Context

# `redact` masks what was registered so in any text: what the task's log lines go through
# (`airflow.sdk.log` imports it from here, without exporting it)
from airflow.sdk._shared.secrets_masker import redact

# The Task SDK's TaskFlow machinery, as Airflow's own @task.bash uses it (for @task.dotflow)
from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.configuration import conf
from airflow.sdk.definitions.context import context_merge
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

# Masks a value in the task's logs and the supervisor's (the Task SDK's own function for that)
from airflow.sdk.log import mask_secret

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


def try_after_clear(
    try_number: int,
    max_tries: int,
    retries: int,
    previous: tuple[int, int] | None,
    recorded: bool = True,
) -> bool:
    """`first_try_after_clear`, told exactly where the task's earlier try recorded `previous =
    (try_number, max_tries)` (in the task state store, `recorded`): a clear sets `max_tries` anew
    from the retries of the DAG version it clears on, a retry never changes it. Where the record
    cannot tell (the same `max_tries`: a retry, or a clear on a version with fewer retries) the
    formula decides, which is exact unless the DAG file was edited since, mixing that version's
    retries with this worker's. A try after the first that finds no record while records are
    kept starts over: every try writes one, and only a success clears it (`[state_store]
    clear_on_success`), or it expired. Every doubt is settled on the side of starting over: a
    clear taken for a retry would restore what must run again.
    """
    if previous is not None and previous[0] < try_number:
        return max_tries != previous[1] or first_try_after_clear(try_number, max_tries, retries)
    if previous is None and recorded and try_number > 1:
        return True
    return first_try_after_clear(try_number, max_tries, retries)


# --- API server only (the plugin's checkpoint page) ---------------------------------------------
# Imported inside functions: the operator imports this module in every worker, which needs none
# of the API server, its database models or its auth manager.


class SignedInUser(Protocol):
    """What the page needs of Airflow's `BaseUser`."""

    def get_name(self) -> str: ...


def get_user_dependency() -> Callable[..., Any]:
    """The FastAPI dependency Airflow's own routes use to find the signed-in user (a bearer
    token, else the UI's session cookie), so the page inside the UI's iframe is signed in."""
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def dag_access_dependency(method: Literal["GET", "PUT"]) -> Callable[..., None]:
    """Airflow's own access rule for a task instance of the DAG in the path: `GET` to read,
    `PUT` to edit (what the UI's task-instance pages and actions require)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    rule: Callable[..., None] = requires_access_dag(method, DagAccessEntity.TASK_INSTANCE)
    return rule


def may_edit_task_instances(user: SignedInUser, dag_id: str) -> bool:
    """Whether `user` may edit task instances of `dag_id` (the auth manager's own answer,
    team-scoped DAGs included), to show or hide the page's actions."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.models.dag import DagModel

    return bool(
        get_auth_manager().is_authorized_dag(
            method="PUT",
            access_entity=DagAccessEntity.TASK_INSTANCE,
            details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
            user=user,
        )
    )


def task_instance_state(dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
    """The task instance's state ("" when it has none yet), or None when it does not exist."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.execute(
            select(TaskInstance.state).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        ).first()
    return None if found is None else str(found[0] or "")


def task_instance_xcom(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    """The XCom `key` of one task instance (None when it has none), read as Airflow's own
    REST route reads it: the row from the metadata database, its JSON value decoded."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row: Any = session.scalars(
            XComModel.get_many(
                run_id=run_id,
                key=key,
                dag_ids=dag_id,
                task_ids=task_id,
                map_indexes=map_index,
                limit=1,
            )
        ).first()
        if row is None:
            return None
        value = row.value
    try:
        return json.loads(value) if isinstance(value, (str, bytes)) else value
    except ValueError:
        return value


class ServerTaskState:
    """One task instance's task state store, as the API server reaches it.

    Through `airflow.state.get_state_backend()`, the configured backend that Airflow's own
    CLI and execution API use (a custom `[state_store] backend` included); values are JSON
    text, as the workers' `context["task_state_store"]` writes them.
    """

    def __init__(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> None:
        from airflow.state import TaskScope, get_state_backend

        self._scope = TaskScope(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
        self._backend = get_state_backend()

    def get(self, key: str, default: Any = None) -> Any:
        raw = self._backend.get(self._scope, key)
        return default if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        self._backend.set(self._scope, key, json.dumps(value))


def redact_text(text: str) -> str:
    """`text` with every secret this task registered (connection passwords, masked variables)
    replaced by `***`, as Airflow masks the task's log: what the engine keeps of step errors
    (XComs, checkpoints, the Checkpoints tab) goes through it too."""
    return str(redact(text))


__all__ = [
    "AirflowFailException",
    "AirflowNotFoundException",
    "DecoratedOperator",
    "RetryDecision",
    "RetryPolicy",
    "TaskDecorator",
    "context_merge",
    "determine_kwargs",
    "hookimpl",
    "mask_secret",
    "redact_text",
    "task_decorator_factory",
    "AirflowPlugin",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "Context",
    "ServerTaskState",
    "SignedInUser",
    "dag_access_dependency",
    "first_try_after_clear",
    "try_after_clear",
    "get_user_dependency",
    "may_edit_task_instances",
    "state_store_limit",
    "task_instance_state",
    "task_instance_xcom",
]
